"""Applies the ordered SQL migrations of a dialect and records them.

Every ``NNNN_name.sql`` file in the dialect's folder (see
:mod:`graphmesh.orchestrator.storage.sql`) is one migration, applied once, in version
order, and recorded in ``graphmesh_migrations (version, name, applied_at)``. All pending
migrations run in one transaction: a failure leaves the schema as it was. Concurrent
migrators are safe: on Postgres they queue on a transaction-scoped advisory lock, on SQLite
on the database write lock (``BEGIN IMMEDIATE``); the second one then finds nothing to do.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import psycopg

from graphmesh.orchestrator.storage.sql import (
    MIGRATION_FILE,
    POSTGRES_QUERIES,
    SQLITE_QUERIES,
    Dialect,
    dialect_folder,
)


@dataclass(frozen=True, kw_only=True)
class Migration:
    """One migration file: ``0001_storage.sql`` is version 1, name ``storage``."""

    version: int
    name: str
    sql: str


def load_migrations(dialect: Dialect) -> tuple[Migration, ...]:
    """Every migration of ``dialect`` in version order; versions must run 1, 2, 3 ..."""
    migrations = []
    for entry in dialect_folder(dialect).iterdir():
        match = MIGRATION_FILE.match(entry.name)
        if match:
            sql = entry.read_text(encoding="utf-8")
            migrations.append(Migration(version=int(match["version"]), name=match["name"], sql=sql))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(f"{dialect} migration versions must be 1..n without gaps, got {versions}")
    return tuple(migrations)


def pending(migrations: Sequence[Migration], applied: set[int]) -> list[Migration]:
    """The migrations not yet applied, in order."""
    return [migration for migration in migrations if migration.version not in applied]


async def migrate_postgres(
    connection: psycopg.AsyncConnection[Any], migrations: Sequence[Migration] | None = None
) -> list[Migration]:
    """Apply pending Postgres migrations (by default every file of the folder); returns
    those applied, empty if none were due."""
    queries = POSTGRES_QUERIES
    known = load_migrations("postgres") if migrations is None else migrations
    async with connection.transaction():
        await connection.execute(queries["lock_migrations"])
        await connection.execute(queries["create_migrations_table"])
        cursor = await connection.execute(queries["applied_migrations"])
        due = pending(known, {row[0] for row in await cursor.fetchall()})
        for migration in due:
            # No parameters: psycopg sends the file as one simple query, many statements.
            await connection.execute(migration.sql)
            await connection.execute(queries["record_migration"], _record(migration))
    return due


def migrate_sqlite(
    connection: sqlite3.Connection, migrations: Sequence[Migration] | None = None
) -> list[Migration]:
    """Apply pending SQLite migrations (by default every file of the folder); returns those
    applied. ``connection`` must be in autocommit mode (``isolation_level=None``) so that
    this function owns the transaction."""
    known = load_migrations("sqlite") if migrations is None else migrations
    if connection.in_transaction:
        raise RuntimeError("migrate_sqlite needs a connection with no open transaction")
    queries = SQLITE_QUERIES
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(queries["create_migrations_table"])
        applied = {row[0] for row in connection.execute(queries["applied_migrations"])}
        due = pending(known, applied)
        for migration in due:
            for statement in split_sqlite_script(migration.sql):
                connection.execute(statement)
            connection.execute(queries["record_migration"], _record(migration))
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return due


def split_sqlite_script(script: str) -> list[str]:
    """Split a script into statements; ``executescript`` would commit our transaction."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    leftover = [line for line in current.splitlines() if line.strip()]
    if any(not line.lstrip().startswith("--") for line in leftover):
        raise ValueError(f"incomplete SQL statement at the end of a migration: {current!r}")
    return statements


def _record(migration: Migration) -> dict[str, Any]:
    return {"version": migration.version, "name": migration.name}
