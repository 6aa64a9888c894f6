"""Postgres SQL of the limiters (a package so that wheels carry the files)."""
