"""Schema migrations on real Postgres and SQLite databases.

Replaying is a no-op, concurrent migrators never fail or apply twice, a failing migration
leaves nothing behind, and both dialects build the same tables, columns and indexes.
Work that adds migrations adds its tables to ``EXPECTED_TABLES``. The limiter tables are not
the engine's (``graphmesh.limits`` migrates them itself: ``test_limiter_migrations.py``).
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest

from graphmesh.orchestrator.database.migrations import (
    Migration,
    load_migrations,
    migrate_postgres,
    migrate_sqlite,
)
from graphmesh.orchestrator.database.sql import Dialect

EXPECTED_TABLES = {
    "graphmesh_migrations",
    "graphmesh_task_outputs",
    "graphmesh_task_graphs",
    "graphmesh_models",
    "graphmesh_task_models",
    "graphmesh_jobs",
    "graphmesh_job_sessions",
    "graphmesh_run_events",
    "graphmesh_runs",
    "graphmesh_run_tasks",
}
Schema = dict[str, set[str]]
# SQLite's foreign key checks need an index of their own on a WITHOUT ROWID parent table
# whose rows are big (see sqlite/0007_wakeups_and_run_keys.sql); Postgres uses its key.
SQLITE_ONLY_INDEXES = {"graphmesh_runs_id_idx"}

POSTGRES_COLUMNS = """
    SELECT table_name, column_name FROM information_schema.columns
    WHERE table_schema = current_schema()
"""
POSTGRES_INDEXES = """
    SELECT indexname FROM pg_indexes
    WHERE schemaname = current_schema() AND indexname NOT LIKE '%\\_pkey'
"""
SQLITE_INDEXES = """
    SELECT name FROM sqlite_master
    WHERE type = 'index' AND name NOT LIKE 'sqlite\\_autoindex%' ESCAPE '\\'
"""


def with_broken_last(dialect: Dialect) -> list[Migration]:
    """Every migration, then one that creates a table and fails on its next statement."""
    migrations = list(load_migrations(dialect))
    broken_sql = "CREATE TABLE graphmesh_half (x int);\nNOT SQL;"
    return [*migrations, Migration(version=len(migrations) + 1, name="broken", sql=broken_sql)]


def all_versions(dialect: Dialect) -> list[tuple[int, str]]:
    migrations = load_migrations(dialect)
    return [(migration.version, migration.name) for migration in migrations]


def connect_sqlite(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None, timeout=30.0, check_same_thread=False)


async def migrate_postgres_database(dsn: str) -> list[Migration]:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        return await migrate_postgres(connection)


def migrate_sqlite_database(path: Path) -> list[Migration]:
    connection = connect_sqlite(path)
    try:
        return migrate_sqlite(connection)
    finally:
        connection.close()


async def postgres_schema(dsn: str) -> tuple[Schema, set[str]]:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        columns: Schema = {}
        for table, column in await (await connection.execute(POSTGRES_COLUMNS)).fetchall():
            columns.setdefault(table, set()).add(column)
        indexes = {row[0] for row in await (await connection.execute(POSTGRES_INDEXES)).fetchall()}
    return columns, indexes


def sqlite_schema(path: Path) -> tuple[Schema, set[str]]:
    connection = connect_sqlite(path)
    try:
        tables = [
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        ]
        columns = {
            table: {row[1] for row in connection.execute(f"PRAGMA table_info({table})")}
            for table in tables
        }
        indexes = {row[0] for row in connection.execute(SQLITE_INDEXES)}
    finally:
        connection.close()
    return columns, indexes


async def recorded_postgres(dsn: str) -> list[tuple[int, str]]:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(
            "SELECT version, name FROM graphmesh_migrations ORDER BY 1"
        )
        return [(version, name) for version, name in await cursor.fetchall()]


def recorded_sqlite(path: Path) -> list[tuple[int, str]]:
    connection = connect_sqlite(path)
    try:
        rows = connection.execute("SELECT version, name FROM graphmesh_migrations ORDER BY 1")
        return [(version, name) for version, name in rows]
    finally:
        connection.close()


def test_both_dialects_have_the_same_migrations() -> None:
    postgres = all_versions("postgres")
    assert postgres == all_versions("sqlite")
    assert [version for version, _ in postgres] == list(range(1, len(postgres) + 1))


async def test_postgres_migrating_twice_is_a_noop(postgres_dsn: str) -> None:
    first = await migrate_postgres_database(postgres_dsn)
    second = await migrate_postgres_database(postgres_dsn)
    assert [(m.version, m.name) for m in first] == all_versions("postgres")
    assert second == []
    assert await recorded_postgres(postgres_dsn) == all_versions("postgres")


def test_sqlite_migrating_twice_is_a_noop(sqlite_path: Path) -> None:
    first = migrate_sqlite_database(sqlite_path)
    second = migrate_sqlite_database(sqlite_path)
    assert [(m.version, m.name) for m in first] == all_versions("sqlite")
    assert second == []
    assert recorded_sqlite(sqlite_path) == all_versions("sqlite")


async def test_concurrent_postgres_migrations_apply_each_once(postgres_dsn: str) -> None:
    connections = [await psycopg.AsyncConnection.connect(postgres_dsn) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate_postgres(c) for c in connections))
    finally:
        for connection in connections:
            await connection.close()
    applied = sorted((m.version, m.name) for result in results for m in result)
    assert applied == all_versions("postgres")
    assert await recorded_postgres(postgres_dsn) == all_versions("postgres")


def test_concurrent_sqlite_migrations_apply_each_once(sqlite_path: Path) -> None:
    start = threading.Barrier(4)

    def migrate() -> list[Migration]:
        connection = connect_sqlite(sqlite_path)
        try:
            start.wait()
            return migrate_sqlite(connection)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = [future.result() for future in [pool.submit(migrate) for _ in range(4)]]
    applied = sorted((m.version, m.name) for result in results for m in result)
    assert applied == all_versions("sqlite")
    assert recorded_sqlite(sqlite_path) == all_versions("sqlite")


async def test_a_failing_postgres_migration_leaves_nothing(postgres_dsn: str) -> None:
    migrations = with_broken_last("postgres")
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as connection:
        with pytest.raises(psycopg.errors.SyntaxError):
            await migrate_postgres(connection, migrations)
    columns, _ = await postgres_schema(postgres_dsn)
    assert columns == {}


def test_a_failing_sqlite_migration_leaves_nothing(sqlite_path: Path) -> None:
    migrations = with_broken_last("sqlite")
    connection = connect_sqlite(sqlite_path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            migrate_sqlite(connection, migrations)
        assert not connection.in_transaction
    finally:
        connection.close()
    columns, _ = sqlite_schema(sqlite_path)
    assert columns == {}


async def test_postgres_schema_has_exactly_the_expected_tables(postgres_dsn: str) -> None:
    await migrate_postgres_database(postgres_dsn)
    columns, _ = await postgres_schema(postgres_dsn)
    assert set(columns) == EXPECTED_TABLES


def test_sqlite_schema_has_exactly_the_expected_tables(sqlite_path: Path) -> None:
    migrate_sqlite_database(sqlite_path)
    columns, _ = sqlite_schema(sqlite_path)
    assert set(columns) == EXPECTED_TABLES


async def test_dialects_build_the_same_columns_and_indexes(
    postgres_dsn: str, sqlite_path: Path
) -> None:
    await migrate_postgres_database(postgres_dsn)
    migrate_sqlite_database(sqlite_path)
    sqlite_columns, sqlite_indexes = sqlite_schema(sqlite_path)
    assert SQLITE_ONLY_INDEXES <= sqlite_indexes
    assert await postgres_schema(postgres_dsn) == (
        sqlite_columns,
        sqlite_indexes - SQLITE_ONLY_INDEXES,
    )
