"""SQL kept in ``.sql`` files: named queries and ordered migrations, for every part that owns
a schema (the engine's storage, the shared limiters).

A part keeps one folder per dialect. ``NNNN_name.sql`` files are its migrations, applied once
each, in version order, and recorded in the part's own bookkeeping table; every other ``.sql``
file holds named queries, each started by a ``-- name: <query_name>`` line. The migrators take
the bookkeeping statements from the part's queries by these names: ``lock_migrations``
(Postgres only), ``create_migrations_table``, ``applied_migrations`` and ``record_migration``.
So two parts on one database each keep their own history, and neither knows the other.

All pending migrations run in one transaction: a failure leaves the schema as it was.
Concurrent migrators are safe: on Postgres they queue on the part's transaction-scoped
advisory lock, on SQLite on the database write lock (``BEGIN IMMEDIATE``); the second one
then finds nothing to do.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources.abc import Traversable
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import psycopg

MIGRATION_FILE = re.compile(r"^(?P<version>\d{4})_(?P<name>\w+)\.sql$")
_QUERY_HEADER = re.compile(r"^-- name: (?P<name>\w+)[ \t]*$", re.MULTILINE)


@dataclass(frozen=True, kw_only=True)
class Migration:
    """One migration file: ``0001_storage.sql`` is version 1, name ``storage``."""

    version: int
    name: str
    sql: str


def parse_queries(text: str) -> dict[str, str]:
    """Split a named-queries file into ``{name: sql}``; text before the first header is ignored."""
    headers = list(_QUERY_HEADER.finditer(text))
    queries: dict[str, str] = {}
    for header, following in zip(headers, [*headers[1:], None], strict=True):
        end = len(text) if following is None else following.start()
        name = header["name"]
        if name in queries:
            raise ValueError(f"query {name!r} is defined twice")
        queries[name] = text[header.end() : end].strip().removesuffix(";").strip()
    return queries


def load_queries(folder: Traversable) -> Mapping[str, str]:
    """Every named query of ``folder``, from all its non-migration ``.sql`` files."""
    queries: dict[str, str] = {}
    for entry in sorted(folder.iterdir(), key=lambda entry: entry.name):
        if not entry.name.endswith(".sql") or MIGRATION_FILE.match(entry.name):
            continue
        for name, sql in parse_queries(entry.read_text(encoding="utf-8")).items():
            if name in queries:
                raise ValueError(f"query {name!r} of {folder.name} is defined twice")
            queries[name] = sql
    return MappingProxyType(queries)


def load_migrations(folder: Traversable) -> tuple[Migration, ...]:
    """Every migration of ``folder`` in version order; versions must run 1, 2, 3 ..."""
    migrations = []
    for entry in folder.iterdir():
        match = MIGRATION_FILE.match(entry.name)
        if match:
            sql = entry.read_text(encoding="utf-8")
            migrations.append(Migration(version=int(match["version"]), name=match["name"], sql=sql))
    migrations.sort(key=lambda migration: migration.version)
    versions = [migration.version for migration in migrations]
    if versions != list(range(1, len(versions) + 1)):
        raise ValueError(
            f"{folder.name} migration versions must be 1..n without gaps, got {versions}"
        )
    return tuple(migrations)


def pending(migrations: Sequence[Migration], applied: set[int]) -> list[Migration]:
    """The migrations not yet applied, in order."""
    return [migration for migration in migrations if migration.version not in applied]


async def migrate_postgres(
    connection: psycopg.AsyncConnection[Any],
    migrations: Sequence[Migration],
    queries: Mapping[str, str],
) -> list[Migration]:
    """Apply the pending ``migrations``, bookkept by ``queries``; returns those applied."""
    async with connection.transaction():
        await connection.execute(queries["lock_migrations"])
        await connection.execute(queries["create_migrations_table"])
        cursor = await connection.execute(queries["applied_migrations"])
        due = pending(migrations, {row[0] for row in await cursor.fetchall()})
        for migration in due:
            # No parameters: psycopg sends the file as one simple query, many statements.
            await connection.execute(migration.sql)
            await connection.execute(queries["record_migration"], _record(migration))
    return due


def migrate_sqlite(
    connection: sqlite3.Connection,
    migrations: Sequence[Migration],
    queries: Mapping[str, str],
) -> list[Migration]:
    """Apply the pending ``migrations``, bookkept by ``queries``; returns those applied.
    ``connection`` must be in autocommit mode (``isolation_level=None``) so that this
    function owns the transaction."""
    if connection.in_transaction:
        raise RuntimeError("migrate_sqlite needs a connection with no open transaction")
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(queries["create_migrations_table"])
        applied = {row[0] for row in connection.execute(queries["applied_migrations"])}
        due = pending(migrations, applied)
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
