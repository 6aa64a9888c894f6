"""Worker sessions on Postgres: each one a session-level advisory lock.

A worker's session is a row of ``graphmesh_job_sessions`` and the advisory lock
(:data:`SESSION_LOCKS`, its id), held by a connection of its own for as long as the
session lasts. When the worker's process dies (``kill -9``, out of memory), its connection
ends and Postgres releases the lock at once: maintenance in any process finds the lock
free and rescues the session's attempts (see ``PostgresJobQueue.maintain``), seconds
later instead of a lease later. A network partition leaves the server holding the lock
until it notices the connection is gone; the attempts' leases cover that case, as before.

If the connection breaks while the process lives (the server restarted, a network blip),
the keeper connects again every :data:`RECONNECT_PAUSE_S` and takes the same lock, and
the row again if maintenance took the session for dead meanwhile. Maintenance waits a
while before it believes a lock is gone for good (``sessions.GoneSessions``), and after
a server start every lock is gone for a moment: then it believes none.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import psycopg
from psycopg.rows import TupleRow

from graphmesh.orchestrator.database.sql import POSTGRES_QUERIES as QUERIES
from graphmesh.orchestrator.queue.base import WorkerSession
from graphmesh.orchestrator.queue.sessions import this_process

# The advisory lock namespace (first key) of worker sessions: "GMWS" as a 32-bit integer.
SESSION_LOCKS = 1_196_250_963
RECONNECT_PAUSE_S = 0.25
CONNECT_TIMEOUT_S = 5
Connection = psycopg.AsyncConnection[TupleRow]
log = logging.getLogger(__name__)


@asynccontextmanager
async def hold_session(conninfo: str) -> AsyncIterator[WorkerSession]:
    """A worker session on the database at ``conninfo``, held until the block ends."""
    keeper = _SessionKeeper(conninfo)
    session = await keeper.open()
    keeping = asyncio.create_task(keeper.keep(), name="graphmesh-worker-session")
    try:
        yield session
    finally:
        keeping.cancel()
        await asyncio.gather(keeping, return_exceptions=True)
        await keeper.close()


class _SessionKeeper:
    """One session's connection: opened, taken again after it breaks, closed."""

    def __init__(self, conninfo: str) -> None:
        self._conninfo = conninfo
        self._connection: Connection | None = None
        self._id = 0

    def _params(self) -> dict[str, object]:
        return {**this_process(), "id": self._id, "namespace": SESSION_LOCKS}

    async def open(self) -> WorkerSession:
        connection = await _connect(self._conninfo)
        try:
            cursor = await connection.execute(QUERIES["open_session"], self._params())
            row = await cursor.fetchone()
        except BaseException:
            await connection.close()
            raise
        assert row is not None
        self._connection, self._id = connection, int(row[0])
        return WorkerSession(id=self._id)

    async def keep(self) -> None:
        """Wait on the connection (it never gets a notification: reading only notices
        that it broke); take the session again on a new one whenever it does."""
        while True:
            assert self._connection is not None
            with contextlib.suppress(psycopg.Error):
                async for _ in self._connection.notifies():
                    pass
            log.warning("worker session %d lost its connection; taking it again", self._id)
            await self._connection.close()
            self._connection = await self._resume()
            log.info("worker session %d is held again", self._id)

    async def _resume(self) -> Connection:
        while True:
            await asyncio.sleep(RECONNECT_PAUSE_S)
            try:
                connection = await _connect(self._conninfo)
            except psycopg.Error:
                continue
            try:
                await connection.execute(QUERIES["resume_session"], self._params())
            except psycopg.Error:
                await connection.close()
                continue
            return connection

    async def close(self) -> None:
        """End the session: its row goes, and closing the connection frees its lock."""
        connection = self._connection
        if connection is None:
            return
        with contextlib.suppress(psycopg.Error):
            await connection.execute(QUERIES["end_session"], {"id": self._id})
        await connection.close()


async def _connect(conninfo: str) -> Connection:
    return await psycopg.AsyncConnection.connect(
        conninfo, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
    )
