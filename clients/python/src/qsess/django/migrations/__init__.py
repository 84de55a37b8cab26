"""Migrations of the qsess app: unmanaged models only, the tables belong to qsess-syncd."""
