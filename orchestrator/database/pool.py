"""A connection pool that fails fast while its database is unreachable and is whole again
moments after the database answers.

psycopg_pool alone serves an outage badly: a caller waits in ``getconn`` until its timeout
(30 s) while the pool retries its lost connections with a backoff that doubles each time
(1 s, 2 s, 4 s ... up to minutes) and that cannot be configured, so after a 40 s outage
the first connection came back 21 s after the database did. :class:`PostgresPool` wraps a
psycopg_pool pool and watches for the first sign of an outage: a connection that broke in
use, a connection request that failed, or a connection the pool could not make (its own
reconnect attempts give up after :data:`RECONNECT_TIMEOUT_S` and report here). It then
asks the database itself, with one connect:

- it answers (one connection was dropped, or the server restarted quickly): the pool
  checks its idle connections, replacing the dead ones at once, and goes on;
- it does not: the pool is *down*. It is closed (callers waiting in it fail at once),
  every request fails at once with :class:`DatabaseUnavailableError`, and a probe
  connects every :data:`PROBE_INTERVAL_S`; the first probe that connects opens a fresh
  pool, so work resumes within about that interval of the database answering, however
  long the outage was.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Coroutine
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Protocol, Self

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolClosed

Connection = psycopg.AsyncConnection[TupleRow]
Pool = AsyncConnectionPool[Connection]
PROBE_INTERVAL_S = 0.2
PROBE_CONNECT_TIMEOUT_S = 2  # libpq's smallest
RECONNECT_TIMEOUT_S = 0.2
OPEN_TIMEOUT_S = 5.0
log = logging.getLogger(__name__)


class ConnectionSource(Protocol):
    """Where the Postgres backends get connections: a :class:`PostgresPool`, or a plain
    ``psycopg_pool`` pool (which waits out an outage instead of failing fast)."""

    @property
    def conninfo(self) -> Any: ...

    def connection(self) -> AbstractAsyncContextManager[Connection]: ...


class DatabaseUnavailableError(psycopg.OperationalError):
    """The database did not answer the last probe: requests fail at once until it does."""


class PostgresPool:
    """Pooled connections to the database at ``conninfo`` (see the module docs).

    ``min_size``/``max_size``/``kwargs`` are those of ``psycopg_pool.AsyncConnectionPool``;
    :meth:`connection` is its ``connection()``. Open it with ``async with
    PostgresPool.open(conninfo) as pool``.
    """

    def __init__(
        self,
        conninfo: str,
        *,
        min_size: int = 1,
        max_size: int = 4,
        kwargs: dict[str, Any] | None = None,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        self._conninfo = conninfo
        self._sizes = (min_size, max_size)
        self._kwargs = kwargs
        self._probe_interval_s = probe_interval_s
        self._pool: Pool | None = None  # None while the database is down
        self._closed = False
        self._checking: asyncio.Task[None] | None = None
        self._reopening: asyncio.Task[None] | None = None
        self._background: set[asyncio.Future[Any]] = set()

    @classmethod
    @asynccontextmanager
    async def open(cls, conninfo: str, **options: Any) -> AsyncIterator[Self]:
        """An open pool (its ``min_size`` connections made), closed on exit."""
        pool = cls(conninfo, **options)
        await pool._open_first()
        try:
            yield pool
        finally:
            await pool.close()

    @property
    def conninfo(self) -> str:
        return self._conninfo

    @property
    def available(self) -> bool:
        """Whether requests are served (``False`` while the database is down)."""
        return self._pool is not None

    async def _open_first(self) -> None:
        pool = self._new_pool()
        await pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
        self._pool = pool

    def _new_pool(self) -> Pool:
        min_size, max_size = self._sizes
        return AsyncConnectionPool(
            self._conninfo,
            min_size=min_size,
            max_size=max_size,
            kwargs=self._kwargs,
            open=False,
            reconnect_timeout=RECONNECT_TIMEOUT_S,
            reconnect_failed=self._reconnect_failed,
        )

    async def close(self) -> None:
        """Close the pool and stop probing; requests fail from now on."""
        self._closed = True
        pool, self._pool = self._pool, None
        if self._reopening is not None:
            self._reopening.cancel()
        pending = [*self._background, *filter(None, [self._checking, self._reopening])]
        await asyncio.gather(*pending, return_exceptions=True)
        if pool is not None:
            await pool.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Connection]:
        """A pooled connection; fails at once (:class:`DatabaseUnavailableError`) while the
        database is down. A failure that may mean an outage starts a check."""
        pool = self._pool
        if pool is None:
            if self._closed:
                raise PoolClosed("the connection pool is closed")
            raise DatabaseUnavailableError(f"the database is unreachable ({self._where()})")
        connection: Connection | None = None
        try:
            async with pool.connection() as connection:
                yield connection
        except psycopg.OperationalError:
            if connection is None or connection.broken or connection.closed:
                await self._suspect(pool)
            raise

    def _where(self) -> str:
        params = psycopg.conninfo.conninfo_to_dict(self._conninfo)
        return f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}"

    def _reconnect_failed(self, pool: Pool) -> None:
        """psycopg_pool gave up making a connection: check the database (the pool's own
        workers call this; the check runs on its own)."""
        self._spawn(self._suspect(pool))

    async def _suspect(self, pool: Pool) -> None:
        """Check the database (once, whoever else suspects it meanwhile) unless ``pool``
        was retired already."""
        if pool is not self._pool:
            return
        if self._checking is None or self._checking.done():
            self._checking = asyncio.create_task(self._check(pool), name="graphmesh-pg-check")
        await asyncio.shield(self._checking)

    async def _check(self, pool: Pool) -> None:
        if await self._answers():
            await pool.check()  # dead idle connections go, new ones come at once
        elif pool is self._pool:
            where = self._where()
            log.warning("the database at %s is unreachable; failing fast until it answers", where)
            self._pool = None
            self._spawn(pool.close())  # callers waiting in it fail now
            self._reopening = asyncio.create_task(self._reopen(), name="graphmesh-pg-probe")

    async def _reopen(self) -> None:
        """Probe until the database answers, then serve from a fresh pool."""
        while not self._closed:
            await asyncio.sleep(self._probe_interval_s)
            if not await self._answers():
                continue
            pool = self._new_pool()
            try:
                await pool.open(wait=True, timeout=OPEN_TIMEOUT_S)
            except psycopg.Error:
                continue  # it closed itself; the database went away again
            if self._closed:
                await pool.close()
                return
            self._pool = pool
            log.warning("the database at %s answers again", self._where())
            return

    async def _answers(self) -> bool:
        """Whether a new connection to the database can be made and used, now."""
        try:
            async with await psycopg.AsyncConnection.connect(
                self._conninfo, autocommit=True, connect_timeout=PROBE_CONNECT_TIMEOUT_S
            ) as probe:
                await probe.execute("SELECT 1")
        except psycopg.Error:
            return False
        return True

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
