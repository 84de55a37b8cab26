"""Management commands of the qsess Django app."""
