"""The Postgres limit store: limits global across every process sharing the database.

Each operation but ``clear`` is one statement. A take calls ``graphmesh_limiter_take``
(``sql/postgres/0002_permit_costs.sql``), which locks the key's row before reading the clock,
so two processes never grant the same slot; all times come from the database clock.

The limiter tables have a migration history of their own (``graphmesh_limiter_migrations``),
so a gateway can use a database that holds nothing else, and an engine database that got the
tables from the engine's old migration 0003 is adopted as it is. A database that cannot be
reached raises :class:`~graphmesh.limits.store.LimitStoreUnavailable`: limiters fail closed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any, Self, TypeVar

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from graphmesh import sqlfiles
from graphmesh.limits.sql import POSTGRES_MIGRATIONS
from graphmesh.limits.sql import POSTGRES_QUERIES as QUERIES
from graphmesh.limits.store import LimitStoreUnavailable, Take, Taken
from graphmesh.sqlfiles import Migration

Pool = AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]
T = TypeVar("T")

UNREACHABLE = "the limiter database cannot be reached"


async def migrate(connection: psycopg.AsyncConnection[Any]) -> list[Migration]:
    """Apply the limiters' pending migrations; returns those applied."""
    return await sqlfiles.migrate_postgres(connection, POSTGRES_MIGRATIONS, QUERIES)


@contextmanager
def _fail_closed() -> Iterator[None]:
    """Connection failures (and a pool that found no connection in time) become
    :class:`LimitStoreUnavailable`; SQL errors stay what they are, as bugs."""
    try:
        yield
    except psycopg.OperationalError as error:
        raise LimitStoreUnavailable(UNREACHABLE) from error


class PostgresLimitStore:
    """Permits and blocks in ``graphmesh_limiter_*`` tables, on a pool (its owner closes it;
    the tables must exist: :meth:`open` or :func:`migrate` makes them)."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @classmethod
    @asynccontextmanager
    async def open(
        cls, dsn: str, *, max_size: int = 4, pool_timeout: float = 5.0
    ) -> AsyncIterator[Self]:
        """Yield a store with its own pool on ``dsn`` (migrated), closed on exit.
        ``pool_timeout`` bounds how long any operation waits for a connection before it
        fails closed."""
        pool: Pool = AsyncConnectionPool(
            dsn, min_size=1, max_size=max_size, timeout=pool_timeout, open=False
        )
        try:
            with _fail_closed():
                await pool.open(wait=True, timeout=pool_timeout)
                async with pool.connection() as connection:
                    await migrate(connection)
            yield cls(pool)
        finally:
            await pool.close()

    async def take(
        self, *, limiter: str, key: str, limit: int, hold: float, token: str, cost: int = 1
    ) -> Taken:
        """Grant ``token`` if the live permits leave room for ``cost`` and the key is unblocked."""
        params = {"limiter": limiter, "key": key, "limit": limit, "hold": hold, "token": token}
        granted, at, until = (await self._fetch("limiter_take", {**params, "cost": cost}))[0]
        return Taken(granted=granted, at=at, until=until)

    async def take_all(self, *, key: str, takes: Sequence[Take]) -> list[Taken]:
        """Every permit of ``takes``, or the first refusal and none: one function call."""
        params = {
            "key": key,
            "limiters": [take.limiter for take in takes],
            "limits": [take.limit for take in takes],
            "holds": [take.hold for take in takes],
            "tokens": [take.token for take in takes],
            "costs": [take.cost for take in takes],
        }
        rows = await self._fetch("limiter_take_all", params)
        return [Taken(granted=granted, at=at, until=until) for granted, at, until in rows]

    async def drop(self, *, limiter: str, key: str, token: str) -> None:
        """Delete a permit, if it exists."""
        await self._fetch("limiter_drop_permit", {"limiter": limiter, "key": key, "token": token})

    async def extend(self, *, limiter: str, key: str, token: str, hold: float) -> float | None:
        """Push a live permit's expiry to ``hold`` seconds from now."""
        params = {"limiter": limiter, "key": key, "token": token, "hold": hold}
        rows = await self._fetch("limiter_extend_permit", params)
        return float(rows[0][0]) if rows else None

    async def charge(self, *, limiter: str, key: str, token: str, cost: int) -> bool:
        """Make a live permit cost ``cost``."""
        params = {"limiter": limiter, "key": key, "token": token, "cost": cost}
        return bool(await self._fetch("limiter_charge_permit", params))

    async def next_available(self, *, limiter: str, key: str, limit: int) -> float:
        """When ``take`` could next grant; now if it could now."""
        params = {"limiter": limiter, "key": key, "limit": limit}
        return float((await self._fetch("limiter_next_available", params))[0][0])

    async def block(self, *, limiter: str, key: str, until: float) -> None:
        """Grant nothing before ``until`` (keeping a later block)."""
        await self._fetch("limiter_block", {"limiter": limiter, "key": key, "until": until})

    async def clear(self, *, limiter: str, key: str) -> None:
        """Forget the key."""
        params = {"limiter": limiter, "key": key}

        async def clear(connection: psycopg.AsyncConnection[TupleRow]) -> None:
            async with connection.transaction():
                for query in ("limiter_unblock_key", "limiter_clear_permits"):
                    await connection.execute(QUERIES[query], params)

        await self._with_connection(clear)

    async def _fetch(self, query: str, params: dict[str, Any]) -> list[TupleRow]:
        async def fetch(connection: psycopg.AsyncConnection[TupleRow]) -> list[TupleRow]:
            cursor = await connection.execute(QUERIES[query], params)
            return await cursor.fetchall() if cursor.description else []

        return await self._with_connection(fetch)

    async def _with_connection(
        self, work: Callable[[psycopg.AsyncConnection[TupleRow]], Awaitable[T]]
    ) -> T:
        with _fail_closed():
            async with self._pool.connection() as connection:
                return await work(connection)
