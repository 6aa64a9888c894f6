"""The limiter tables' own migrations (``graphmesh.limits``) on real Postgres and SQLite.

A gateway migrates them on a database without the engine's schema; the engine and the
limiters migrate one database in either order; replaying is a no-op; concurrent migrators
apply each migration once; both dialects build the same tables; and a database whose
limiter tables came from the engine's old migration 0003 is adopted with its permits.
"""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from dataclasses import replace
from pathlib import Path

import psycopg
import pytest
from test_migrations import (
    connect_sqlite,
    migrate_postgres_database,
    migrate_sqlite_database,
    postgres_schema,
    sqlite_schema,
)

from graphmesh.limits import RateLimiter
from graphmesh.limits import postgres as limits_postgres
from graphmesh.limits import sqlite as limits_sqlite
from graphmesh.limits.postgres import PostgresLimitStore
from graphmesh.limits.sql import POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS
from graphmesh.limits.sqlite import SqliteLimitStore
from graphmesh.orchestrator.database.migrations import (
    load_migrations,
    migrate_postgres,
    migrate_sqlite,
)
from graphmesh.orchestrator.database.sql import Dialect
from graphmesh.sqlfiles import Migration

LIMITER_TABLES = {
    "graphmesh_limiter_migrations",
    "graphmesh_limiter_keys",
    "graphmesh_limiter_permits",
}
LEGACY = Path(__file__).resolve().parents[1] / "support" / "legacy_sql"


def versions(migrations: list[Migration] | tuple[Migration, ...]) -> list[tuple[int, str]]:
    return [(migration.version, migration.name) for migration in migrations]


async def migrate_limiters_postgres(dsn: str) -> list[Migration]:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        return await limits_postgres.migrate(connection)


def migrate_limiters_sqlite(path: Path) -> list[Migration]:
    connection = connect_sqlite(path)
    try:
        return limits_sqlite.migrate(connection)
    finally:
        connection.close()


def legacy_engine_migrations(dialect: Dialect) -> list[Migration]:
    """The engine's migrations as they were when 0003 created the limiter tables."""
    legacy_sql = (LEGACY / f"{dialect}_0003_limits.sql").read_text(encoding="utf-8")
    return [
        replace(migration, sql=legacy_sql) if migration.version == 3 else migration
        for migration in load_migrations(dialect)
    ]


def test_both_dialects_have_the_same_limiter_migrations() -> None:
    assert versions(POSTGRES_MIGRATIONS) == versions(SQLITE_MIGRATIONS)


async def test_postgres_limiters_need_no_engine_schema(postgres_dsn: str) -> None:
    applied = await migrate_limiters_postgres(postgres_dsn)
    assert versions(applied) == versions(POSTGRES_MIGRATIONS)
    assert await migrate_limiters_postgres(postgres_dsn) == []
    columns, _ = await postgres_schema(postgres_dsn)
    assert set(columns) == LIMITER_TABLES


def test_sqlite_limiters_need_no_engine_schema(sqlite_path: Path) -> None:
    assert versions(migrate_limiters_sqlite(sqlite_path)) == versions(SQLITE_MIGRATIONS)
    assert migrate_limiters_sqlite(sqlite_path) == []
    columns, _ = sqlite_schema(sqlite_path)
    assert set(columns) == LIMITER_TABLES


@pytest.mark.parametrize("limiters_first", [True, False])
async def test_engine_and_limiters_share_a_postgres_database_in_either_order(
    postgres_dsn: str, limiters_first: bool
) -> None:
    steps = [migrate_limiters_postgres, migrate_postgres_database]
    for step in steps if limiters_first else reversed(steps):
        await step(postgres_dsn)
    columns, _ = await postgres_schema(postgres_dsn)
    assert LIMITER_TABLES <= set(columns)
    assert "graphmesh_jobs" in columns


@pytest.mark.parametrize("limiters_first", [True, False])
def test_engine_and_limiters_share_a_sqlite_database_in_either_order(
    sqlite_path: Path, limiters_first: bool
) -> None:
    steps = [migrate_limiters_sqlite, migrate_sqlite_database]
    for step in steps if limiters_first else reversed(steps):
        step(sqlite_path)
    columns, _ = sqlite_schema(sqlite_path)
    assert LIMITER_TABLES <= set(columns)
    assert "graphmesh_jobs" in columns


async def test_concurrent_postgres_limiter_migrations_apply_each_once(postgres_dsn: str) -> None:
    results = await asyncio.gather(*(migrate_limiters_postgres(postgres_dsn) for _ in range(4)))
    applied = sorted((m.version, m.name) for result in results for m in result)
    assert applied == versions(POSTGRES_MIGRATIONS)


async def test_dialects_build_the_same_limiter_tables(postgres_dsn: str, sqlite_path: Path) -> None:
    await migrate_limiters_postgres(postgres_dsn)
    migrate_limiters_sqlite(sqlite_path)
    assert await postgres_schema(postgres_dsn) == sqlite_schema(sqlite_path)


async def test_postgres_tables_of_the_old_engine_migration_are_adopted(postgres_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as db:
        await migrate_postgres(db, legacy_engine_migrations("postgres"))
        # A permit granted by the old take function, still live when the gateway arrives.
        await db.execute(
            "SELECT * FROM graphmesh_limiter_take('rpm', 'openai', 1, 60, %s)",
            (uuid.uuid4().hex,),
        )
    async with PostgresLimitStore.open(postgres_dsn) as store:
        limiter = RateLimiter(store, name="rpm", limit=1, window=60)
        assert not (await limiter.try_acquire("openai")).granted
        assert (await limiter.try_acquire("hf")).granted


async def test_sqlite_tables_of_the_old_engine_migration_are_adopted(sqlite_path: Path) -> None:
    connection = connect_sqlite(sqlite_path)
    try:
        migrate_sqlite(connection, legacy_engine_migrations("sqlite"))
        connection.execute(
            "INSERT INTO graphmesh_limiter_permits VALUES (?, 'rpm', 'openai', ?, ?)",
            (uuid.uuid4().hex, 0.0, 4e9),
        )
    finally:
        connection.close()
    async with SqliteLimitStore.open(sqlite_path) as store:
        limiter = RateLimiter(store, name="rpm", limit=1, window=60)
        assert not (await limiter.try_acquire("openai")).granted
        assert (await limiter.try_acquire("hf")).granted


def test_a_failing_sqlite_limiter_migration_leaves_nothing(sqlite_path: Path) -> None:
    broken = Migration(version=len(SQLITE_MIGRATIONS) + 1, name="broken", sql="NOT SQL;")
    connection = connect_sqlite(sqlite_path)
    try:
        with pytest.raises(sqlite3.OperationalError):
            limits_sqlite.sqlfiles.migrate_sqlite(
                connection, [*SQLITE_MIGRATIONS, broken], limits_sqlite.QUERIES
            )
    finally:
        connection.close()
    columns, _ = sqlite_schema(sqlite_path)
    assert columns == {}
