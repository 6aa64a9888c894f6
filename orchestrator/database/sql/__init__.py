"""The SQL of the Postgres and SQLite backends, one folder per dialect.

Each folder holds ordered migrations (``0001_storage.sql``, ``0002_...``), applied by
:mod:`graphmesh.orchestrator.database.migrations`, and named-query files: every other
``*.sql`` file, where a ``-- name: <query_name>`` line starts each query. The queries are
parsed once, at import, into :data:`POSTGRES_QUERIES` and :data:`SQLITE_QUERIES`.
Postgres queries take ``%(param)s`` placeholders (psycopg), SQLite ones ``:param``.
The file format and the migrators are shared with the limiters (:mod:`graphmesh.sqlfiles`).
"""

from __future__ import annotations

from collections.abc import Mapping
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Literal

from graphmesh import sqlfiles
from graphmesh.sqlfiles import MIGRATION_FILE, parse_queries

Dialect = Literal["postgres", "sqlite"]

__all__ = [
    "MIGRATION_FILE",
    "POSTGRES_QUERIES",
    "SQLITE_QUERIES",
    "Dialect",
    "dialect_folder",
    "load_queries",
    "parse_queries",
]


def dialect_folder(dialect: Dialect) -> Traversable:
    """The folder holding ``dialect``'s SQL files."""
    return files(__name__) / dialect


def load_queries(dialect: Dialect) -> Mapping[str, str]:
    """Every named query of ``dialect``, from all its non-migration ``.sql`` files."""
    return sqlfiles.load_queries(dialect_folder(dialect))


POSTGRES_QUERIES = load_queries("postgres")
SQLITE_QUERIES = load_queries("sqlite")
