"""The SQLite outbox: ``graphmesh_run_events`` of the embedded mode's database.

One relay per database (the embedded mode is one process). A round reads the unpublished
events without holding a transaction, since SQLite has a single writer and publishing can
take as long as the bus's timeout, then stamps the accepted ones in a short write
transaction. Two relays on one file would publish some events twice at the same time;
the bus drops the copies (JetStream ``Nats-Msg-Id``), so even that only costs work.
Writers in this process call :meth:`SqliteOutbox.notify`; other writers are found by polling.
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Self

from graphmesh.orchestrator.database.sql import SQLITE_QUERIES as QUERIES
from graphmesh.orchestrator.runs.durable.rows import event_record
from graphmesh.orchestrator.runs.records import RunEventRecord
from graphmesh.orchestrator.storage.sqlite import SqliteConnection
from graphmesh.orchestrator.wakeup import LocalWakeup


class SqliteClaim:
    """Events read for one round; stamps commit at once, each call its own transaction."""

    def __init__(self, connection: SqliteConnection, events: Sequence[RunEventRecord]) -> None:
        self._connection = connection
        self._events = tuple(events)

    @property
    def events(self) -> Sequence[RunEventRecord]:
        return self._events

    async def mark_published(self, events: Sequence[RunEventRecord]) -> None:
        params = [{"run_id": event.run_id, "seq": event.seq} for event in events]
        await self._connection.call(lambda db: _stamp(db, params))


class SqliteOutbox:
    """An :class:`~graphmesh.orchestrator.events.outbox.Outbox` on a
    :class:`~graphmesh.orchestrator.storage.sqlite.SqliteConnection`."""

    def __init__(self, connection: SqliteConnection, *, owns_connection: bool = False) -> None:
        self._connection = connection
        self._owns_connection = owns_connection
        self._wakeup = LocalWakeup()

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path | str) -> AsyncIterator[Self]:
        """An outbox on the database file at ``path`` (created and migrated), closed on exit."""
        outbox = cls(await SqliteConnection.open(path), owns_connection=True)
        try:
            yield outbox
        finally:
            await outbox.close()

    async def close(self) -> None:
        """Close the connection if this outbox opened it."""
        if self._owns_connection:
            await self._connection.close()

    def notify(self) -> None:
        """Wake this process's relay: events were just committed."""
        self._wakeup.notify()

    @asynccontextmanager
    async def claim(self, *, max_runs: int, max_per_run: int) -> AsyncIterator[SqliteClaim]:
        """The first unpublished events of up to ``max_runs`` runs (no lock is held)."""
        params = {"max_runs": max_runs, "max_per_run": max_per_run}
        rows = await self._connection.fetch("unpublished_run_events", params)
        yield SqliteClaim(self._connection, [event_record(row) for row in rows])

    @asynccontextmanager
    async def wakeups(self) -> AsyncIterator[LocalWakeup]:
        """The wakeup :meth:`notify` sets."""
        yield self._wakeup


def _stamp(db: sqlite3.Connection, params: list[dict[str, object]]) -> None:
    db.execute("BEGIN IMMEDIATE")
    try:
        db.executemany(QUERIES["mark_run_event_published"], params)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
