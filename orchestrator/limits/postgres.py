"""The Postgres limit store: limits global across every process sharing the database.

Each operation but ``clear`` is one statement. A take calls ``graphmesh_limiter_take`` (migration
``0003_limits.sql``), which locks the key's row before reading the clock, so two processes
never grant the same slot; all times come from the database clock.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

from psycopg.rows import TupleRow

from graphmesh.orchestrator.limits.store import Taken
from graphmesh.orchestrator.storage.postgres import Pool, open_pool
from graphmesh.orchestrator.storage.sql import POSTGRES_QUERIES as QUERIES


class PostgresLimitStore:
    """Permits and blocks in ``graphmesh_limiter_*`` tables, on a shared pool."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @classmethod
    @asynccontextmanager
    async def open(cls, dsn: str, *, max_size: int = 4) -> AsyncIterator[Self]:
        """Yield a store with its own pool on ``dsn`` (migrated), closed on exit."""
        async with open_pool(dsn, max_size=max_size) as pool:
            yield cls(pool)

    async def take(self, *, limiter: str, key: str, limit: int, hold: float, token: str) -> Taken:
        """Grant ``token`` if fewer than ``limit`` permits are live and the key is unblocked."""
        params = {"limiter": limiter, "key": key, "limit": limit, "hold": hold, "token": token}
        granted, at, until = (await self._fetch("limiter_take", params))[0]
        return Taken(granted=granted, at=at, until=until)

    async def drop(self, *, limiter: str, key: str, token: str) -> None:
        """Delete a permit, if it exists."""
        await self._fetch("limiter_drop_permit", {"limiter": limiter, "key": key, "token": token})

    async def extend(self, *, limiter: str, key: str, token: str, hold: float) -> float | None:
        """Push a live permit's expiry to ``hold`` seconds from now."""
        params = {"limiter": limiter, "key": key, "token": token, "hold": hold}
        rows = await self._fetch("limiter_extend_permit", params)
        return float(rows[0][0]) if rows else None

    async def next_available(self, *, limiter: str, key: str, limit: int) -> float:
        """When ``take`` could next grant; now if it could now."""
        params = {"limiter": limiter, "key": key, "offset": limit - 1}
        return float((await self._fetch("limiter_next_available", params))[0][0])

    async def block(self, *, limiter: str, key: str, until: float) -> None:
        """Grant nothing before ``until`` (keeping a later block)."""
        await self._fetch("limiter_block", {"limiter": limiter, "key": key, "until": until})

    async def clear(self, *, limiter: str, key: str) -> None:
        """Forget the key."""
        params = {"limiter": limiter, "key": key}
        async with self._pool.connection() as connection, connection.transaction():
            for query in ("limiter_unblock_key", "limiter_clear_permits"):
                await connection.execute(QUERIES[query], params)

    async def _fetch(self, query: str, params: dict[str, Any]) -> list[TupleRow]:
        async with self._pool.connection() as connection:
            cursor = await connection.execute(QUERIES[query], params)
            return await cursor.fetchall() if cursor.description else []
