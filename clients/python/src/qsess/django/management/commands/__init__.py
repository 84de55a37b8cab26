"""`qsess_import`."""
