"""The SQLite limit store: the embedded mode's limiters, shared by every process using the
same database file.

A take runs inside ``BEGIN IMMEDIATE``, which holds the database write lock, and reads the
clock only once it holds it: takes are atomic and ordered across connections and processes.
The connection lives on one worker thread of its own, so no call blocks the event loop. The
limiter tables have their own migration history (see :mod:`graphmesh.limits.sql`).
"""

from __future__ import annotations

import asyncio
import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from graphmesh import sqlfiles
from graphmesh.limits.sql import SQLITE_MIGRATIONS
from graphmesh.limits.sql import SQLITE_QUERIES as QUERIES
from graphmesh.limits.store import Take, Taken
from graphmesh.sqlfiles import Migration

T = TypeVar("T")


def migrate(connection: sqlite3.Connection) -> list[Migration]:
    """Apply the limiters' pending migrations (``connection`` in autocommit mode)."""
    return sqlfiles.migrate_sqlite(connection, SQLITE_MIGRATIONS, QUERIES)


def connect(path: Path | str) -> sqlite3.Connection:
    """A migrated connection in autocommit mode (we issue BEGIN ourselves), in WAL mode."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute("PRAGMA synchronous = NORMAL")
        migrate(connection)
    except BaseException:
        connection.close()
        raise
    return connection


class SqliteLimitStore:
    """Permits and blocks in ``graphmesh_limiter_*`` tables of one SQLite database."""

    def __init__(self, executor: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self._executor = executor
        self._connection = connection

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path | str) -> AsyncIterator[Self]:
        """Yield a store on the database file at ``path`` (created and migrated)."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphmesh-limits")
        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, connect, path)
            store = cls(executor, connection)
            try:
                yield store
            finally:
                await store._call(lambda db: db.close())
        finally:
            executor.shutdown(wait=True)

    async def take(
        self, *, limiter: str, key: str, limit: int, hold: float, token: str, cost: int = 1
    ) -> Taken:
        """Grant ``token`` if the live permits leave room for ``cost`` and the key is unblocked."""
        scope = {"limiter": limiter, "key": key}

        def take(db: sqlite3.Connection) -> Taken:
            now = time.time()
            next_at = _next_slot(db, scope, limit, cost, now)
            if next_at > now:
                return Taken(granted=False, at=now, until=next_at)
            take = Take(limiter=limiter, limit=limit, hold=hold, token=token, cost=cost)
            _insert(db, key, take, now)
            return Taken(granted=True, at=now, until=now + hold)

        return await self._write(take)

    async def take_all(self, *, key: str, takes: Sequence[Take]) -> list[Taken]:
        """Every permit of ``takes``, or the first refusal and none: one transaction."""

        def take_all(db: sqlite3.Connection) -> list[Taken]:
            now = time.time()
            for take in takes:
                scope = {"limiter": take.limiter, "key": key}
                next_at = _next_slot(db, scope, take.limit, take.cost, now)
                if next_at > now:
                    return [Taken(granted=False, at=now, until=next_at)]
            for take in takes:
                _insert(db, key, take, now)
            return [Taken(granted=True, at=now, until=now + take.hold) for take in takes]

        return await self._write(take_all)

    async def drop(self, *, limiter: str, key: str, token: str) -> None:
        """Delete a permit, if it exists."""
        params = {"limiter": limiter, "key": key, "token": token}
        await self._call(lambda db: db.execute(QUERIES["limiter_drop_permit"], params))

    async def extend(self, *, limiter: str, key: str, token: str, hold: float) -> float | None:
        """Push a live permit's expiry to ``hold`` seconds from now."""

        def extend(db: sqlite3.Connection) -> float | None:
            now = time.time()
            params = {"limiter": limiter, "key": key, "token": token, "now": now}
            cursor = db.execute(
                QUERIES["limiter_extend_permit"], {**params, "expires_at": now + hold}
            )
            return now + hold if cursor.rowcount else None

        return await self._write(extend)

    async def charge(self, *, limiter: str, key: str, token: str, cost: int) -> bool:
        """Make a live permit cost ``cost``."""
        params = {"limiter": limiter, "key": key, "token": token, "cost": cost}

        def charge(db: sqlite3.Connection) -> bool:
            cursor = db.execute(QUERIES["limiter_charge_permit"], {**params, "now": time.time()})
            return cursor.rowcount > 0

        return await self._write(charge)

    async def next_available(self, *, limiter: str, key: str, limit: int) -> float:
        """When ``take`` could next grant; now if it could now."""

        def next_available(db: sqlite3.Connection) -> float:
            now = time.time()
            return max(now, _next_slot(db, {"limiter": limiter, "key": key}, limit, 1, now))

        return await self._write(next_available)

    async def block(self, *, limiter: str, key: str, until: float) -> None:
        """Grant nothing before ``until`` (keeping a later block)."""
        params = {"limiter": limiter, "key": key, "until": until}
        await self._call(lambda db: db.execute(QUERIES["limiter_block"], params))

    async def clear(self, *, limiter: str, key: str) -> None:
        """Forget the key."""
        scope = {"limiter": limiter, "key": key}

        def clear(db: sqlite3.Connection) -> None:
            db.execute(QUERIES["limiter_clear_permits"], scope)
            db.execute(QUERIES["limiter_clear_key"], scope)

        await self._write(clear)

    async def _call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function(connection)`` on the connection's thread."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, self._connection)

    async def _write(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function`` in a write transaction on the connection's thread."""

        def in_transaction(db: sqlite3.Connection) -> T:
            with _immediate(db):
                return function(db)

        return await self._call(in_transaction)


@contextmanager
def _immediate(db: sqlite3.Connection) -> Iterator[None]:
    """A transaction holding the write lock from its start, committed unless it raises."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _insert(db: sqlite3.Connection, key: str, take: Take, now: float) -> None:
    permit = {"token": take.token, "granted_at": now, "expires_at": now + take.hold}
    params = {"limiter": take.limiter, "key": key, "cost": take.cost, **permit}
    db.execute(QUERIES["limiter_insert_permit"], params)


def _next_slot(
    db: sqlite3.Connection, scope: dict[str, Any], limit: int, cost: int, now: float
) -> float:
    """Drop the key's expired permits, then compute when a take of ``cost`` could next
    grant: after the block, and once the live permits leave room (see ``store.next_slot``)."""
    db.execute(QUERIES["limiter_drop_expired"], {**scope, "now": now})
    blocked = db.execute(QUERIES["limiter_blocked_until"], scope).fetchone()
    full = db.execute(
        QUERIES["limiter_full_until"], {**scope, "now": now, "limit": limit, "cost": cost}
    ).fetchone()
    times = [row[0] for row in (blocked, full) if row is not None and row[0] is not None]
    return max(times, default=-math.inf)
