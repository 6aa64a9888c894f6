"""Applies the engine's ordered SQL migrations of a dialect and records them.

Every ``NNNN_name.sql`` file in the dialect's folder (see
:mod:`graphmesh.orchestrator.database.sql`) is one migration, applied once, in version
order, and recorded in ``graphmesh_migrations (version, name, applied_at)``. The migrators
themselves are shared (:mod:`graphmesh.sqlfiles`): all pending migrations run in one
transaction, and concurrent migrators are safe. The limiter tables are not the engine's:
:mod:`graphmesh.limits` migrates them with its own history.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from graphmesh import sqlfiles
from graphmesh.orchestrator.database.sql import (
    POSTGRES_QUERIES,
    SQLITE_QUERIES,
    Dialect,
    dialect_folder,
)
from graphmesh.sqlfiles import Migration, pending, split_sqlite_script

if TYPE_CHECKING:  # psycopg comes with the service extras; SQLite needs none of it
    import psycopg

__all__ = [
    "Migration",
    "load_migrations",
    "migrate_postgres",
    "migrate_sqlite",
    "pending",
    "split_sqlite_script",
]


def load_migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """Every migration of ``dialect`` in version order; versions must run 1, 2, 3 ..."""
    return sqlfiles.load_migrations(dialect_folder(dialect))


async def migrate_postgres(
    connection: psycopg.AsyncConnection[Any], migrations: Sequence[Migration] | None = None
) -> list[Migration]:
    """Apply pending Postgres migrations (by default every file of the folder); returns
    those applied, empty if none were due."""
    known = load_migrations("postgres") if migrations is None else migrations
    return await sqlfiles.migrate_postgres(connection, known, POSTGRES_QUERIES)


def migrate_sqlite(
    connection: sqlite3.Connection, migrations: Sequence[Migration] | None = None
) -> list[Migration]:
    """Apply pending SQLite migrations (by default every file of the folder); returns those
    applied. ``connection`` must be in autocommit mode (``isolation_level=None``) so that
    this function owns the transaction."""
    known = load_migrations("sqlite") if migrations is None else migrations
    return sqlfiles.migrate_sqlite(connection, known, SQLITE_QUERIES)
