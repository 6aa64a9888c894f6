"""The Postgres outbox: ``graphmesh_run_events`` shared by every orchestrator replica.

Each relay round runs in one transaction on a pooled connection: the claim locks the head
event of each run it takes (``FOR UPDATE SKIP LOCKED``; see ``claim_run_events`` in
``database/sql/postgres/events_queries.sql``), so replicas relay disjoint sets of runs, and
the ``published_at`` stamps commit with it. Writers wake the relays with
:func:`notify_run_events` in the transaction that writes events; relays ``LISTEN`` on a
connection of their own (again after a database restart) and poll as well, so a lost
notification only delays an event.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Self

import psycopg
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool

from graphmesh.orchestrator.database.listen import listen_forever, listening_connection
from graphmesh.orchestrator.database.migrations import migrate_postgres
from graphmesh.orchestrator.database.sql import POSTGRES_QUERIES as QUERIES
from graphmesh.orchestrator.runs.durable.rows import event_record
from graphmesh.orchestrator.runs.records import RunEventRecord
from graphmesh.orchestrator.wakeup import LocalWakeup

Connection = psycopg.AsyncConnection[TupleRow]
Pool = AsyncConnectionPool[Connection]
CHANNEL = "graphmesh_run_events"
LISTEN_SQL = QUERIES["listen_run_events"]
NOTIFY_SQL = QUERIES["notify_run_events"]
"""``SELECT pg_notify('graphmesh_run_events', '')``: run it in a transaction that writes events."""

log = logging.getLogger(__name__)


async def notify_run_events(connection: psycopg.AsyncConnection[Any]) -> None:
    """Wake the relays once ``connection``'s current transaction commits (call it in the
    transaction that inserts into ``graphmesh_run_events``)."""
    await connection.execute(NOTIFY_SQL)


class PostgresClaim:
    """Events claimed in an open transaction; stamps join that transaction."""

    def __init__(self, connection: Connection, events: Sequence[RunEventRecord]) -> None:
        self._connection = connection
        self._events = tuple(events)

    @property
    def events(self) -> Sequence[RunEventRecord]:
        return self._events

    async def mark_published(self, events: Sequence[RunEventRecord]) -> None:
        params = {"run_ids": [e.run_id for e in events], "seqs": [e.seq for e in events]}
        await self._connection.execute(QUERIES["mark_run_events_published"], params)


class PostgresOutbox:
    """An :class:`~graphmesh.orchestrator.events.outbox.Outbox` on a connection pool (its
    owner closes it). Notifications are received on a connection of our own, opened with
    ``listen_conninfo`` (by default the pool's)."""

    def __init__(self, pool: Pool, *, listen_conninfo: str | None = None) -> None:
        self._pool = pool
        conninfo = pool.conninfo if isinstance(pool.conninfo, str) else None
        self._listen_conninfo = listen_conninfo or conninfo

    @classmethod
    @asynccontextmanager
    async def open(cls, dsn: str, *, max_size: int = 2) -> AsyncIterator[Self]:
        """An outbox with its own pool on ``dsn`` (migrated first), closed on exit."""
        pool: Pool = AsyncConnectionPool(dsn, min_size=1, max_size=max_size, open=False)
        await pool.open(wait=True)
        try:
            async with pool.connection() as connection:
                await migrate_postgres(connection)
            yield cls(pool)
        finally:
            await pool.close()

    @asynccontextmanager
    async def claim(self, *, max_runs: int, max_per_run: int) -> AsyncIterator[PostgresClaim]:
        """Claim runs for one round (see the module docstring); commits on exit."""
        params = {"max_runs": max_runs, "max_per_run": max_per_run}
        async with self._pool.connection() as connection, connection.transaction():
            cursor = await connection.execute(QUERIES["claim_run_events"], params)
            events = [event_record(row) for row in await cursor.fetchall()]
            yield PostgresClaim(connection, events)

    @asynccontextmanager
    async def wakeups(self) -> AsyncIterator[LocalWakeup]:
        """A wakeup notified by :func:`notify_run_events` from any process (and whenever
        notifications may have been missed: see
        :mod:`~graphmesh.orchestrator.database.listen`)."""
        wakeup = LocalWakeup()
        if self._listen_conninfo is None:
            yield wakeup
            return
        try:
            connection = await listening_connection(self._listen_conninfo, LISTEN_SQL)
        except psycopg.Error as error:
            log.warning("cannot LISTEN for run events yet (%s); the relay polls meanwhile", error)
            connection = None
        listener = asyncio.create_task(
            listen_forever(
                self._listen_conninfo,
                LISTEN_SQL,
                lambda _payload: wakeup.notify(),
                wakeup.notify,
                what="outbox relay",
                connection=connection,
            ),
            name="graphmesh-outbox-listen",
        )
        try:
            yield wakeup
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
