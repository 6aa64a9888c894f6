"""Postgres SQL: migrations and named queries (a package so that wheels carry the files)."""
