"""The limiters' SQL, one folder per dialect: migrations recorded in
``graphmesh_limiter_migrations`` (a history of their own, apart from the engine's) and the
named queries of the stores. See :mod:`graphmesh.sqlfiles` for the file format."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Literal

from graphmesh.sqlfiles import load_migrations, load_queries

Dialect = Literal["postgres", "sqlite"]


def dialect_folder(dialect: Dialect) -> Traversable:
    """The folder holding ``dialect``'s limiter SQL files."""
    return files(__name__) / dialect


POSTGRES_QUERIES = load_queries(dialect_folder("postgres"))
SQLITE_QUERIES = load_queries(dialect_folder("sqlite"))
POSTGRES_MIGRATIONS = load_migrations(dialect_folder("postgres"))
SQLITE_MIGRATIONS = load_migrations(dialect_folder("sqlite"))
