"""The SQLite limit store: the embedded mode's limiters, shared by every process using the
same database file.

A take runs inside ``BEGIN IMMEDIATE``, which holds the database write lock, and reads the
clock only once it holds it: takes are atomic and ordered across connections and processes.
"""

from __future__ import annotations

import math
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from graphmesh.orchestrator.limits.store import Taken
from graphmesh.orchestrator.storage.sql import SQLITE_QUERIES as QUERIES
from graphmesh.orchestrator.storage.sqlite import SqliteConnection

T = TypeVar("T")


class SqliteLimitStore:
    """Permits and blocks in ``graphmesh_limiter_*`` tables of one SQLite database."""

    def __init__(self, connection: SqliteConnection) -> None:
        self._db = connection

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path | str) -> AsyncIterator[Self]:
        """Yield a store on the database file at ``path`` (created and migrated)."""
        store = cls(await SqliteConnection.open(path))
        try:
            yield store
        finally:
            await store.close()

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        await self._db.close()

    async def take(self, *, limiter: str, key: str, limit: int, hold: float, token: str) -> Taken:
        """Grant ``token`` if fewer than ``limit`` permits are live and the key is unblocked."""
        scope = {"limiter": limiter, "key": key}

        def take(db: sqlite3.Connection) -> Taken:
            now = time.time()
            next_at = _next_slot(db, scope, limit, now)
            if next_at > now:
                return Taken(granted=False, at=now, until=next_at)
            row = {**scope, "token": token, "granted_at": now, "expires_at": now + hold}
            db.execute(QUERIES["limiter_insert_permit"], row)
            return Taken(granted=True, at=now, until=now + hold)

        return await self._write(take)

    async def drop(self, *, limiter: str, key: str, token: str) -> None:
        """Delete a permit, if it exists."""
        await self._db.execute(
            "limiter_drop_permit", {"limiter": limiter, "key": key, "token": token}
        )

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

    async def next_available(self, *, limiter: str, key: str, limit: int) -> float:
        """When ``take`` could next grant; now if it could now."""

        def next_available(db: sqlite3.Connection) -> float:
            now = time.time()
            return max(now, _next_slot(db, {"limiter": limiter, "key": key}, limit, now))

        return await self._write(next_available)

    async def block(self, *, limiter: str, key: str, until: float) -> None:
        """Grant nothing before ``until`` (keeping a later block)."""
        await self._db.execute("limiter_block", {"limiter": limiter, "key": key, "until": until})

    async def clear(self, *, limiter: str, key: str) -> None:
        """Forget the key."""
        scope = {"limiter": limiter, "key": key}

        def clear(db: sqlite3.Connection) -> None:
            db.execute(QUERIES["limiter_clear_permits"], scope)
            db.execute(QUERIES["limiter_clear_key"], scope)

        await self._write(clear)

    async def _write(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function`` in a write transaction on the connection's thread."""

        def in_transaction(db: sqlite3.Connection) -> T:
            with _immediate(db):
                return function(db)

        return await self._db.call(in_transaction)


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


def _next_slot(db: sqlite3.Connection, scope: dict[str, Any], limit: int, now: float) -> float:
    """Drop the key's expired permits, then compute when a take could next grant: after
    the block, and after the limit-th latest live expiry (see ``store.next_slot``)."""
    db.execute(QUERIES["limiter_drop_expired"], {**scope, "now": now})
    blocked = db.execute(QUERIES["limiter_blocked_until"], scope).fetchone()
    nth = db.execute(
        QUERIES["limiter_nth_latest_expiry"], {**scope, "now": now, "offset": limit - 1}
    ).fetchone()
    times = [row[0] for row in (blocked, nth) if row is not None and row[0] is not None]
    return max(times, default=-math.inf)
