"""LISTEN/NOTIFY wakeups for the Postgres queue.

A wakeup holds its own autocommit connection (a pooled one would be handed to other
work between notifications) and a task that relays ``graphmesh_jobs`` notifications whose
payload, a queue name, the subscriber wants. If that connection breaks, the wakeup fires
once and stops relaying; the worker then finds work by polling, as it always can.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg

from graphmesh.orchestrator.queue._shared import LocalWakeup

log = logging.getLogger(__name__)


@asynccontextmanager
async def listen(
    conninfo: str, queues: Sequence[str], listen_sql: str
) -> AsyncIterator[LocalWakeup]:
    """A wakeup notified by enqueues on ``queues`` anywhere, for the block's duration."""
    wakeup = LocalWakeup(queues)
    connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    try:
        await connection.execute(listen_sql)
        relay = asyncio.create_task(_relay(connection, wakeup), name="graphmesh-queue-listen")
        try:
            yield wakeup
        finally:
            relay.cancel()
            await asyncio.gather(relay, return_exceptions=True)
    finally:
        await connection.close()


async def _relay(connection: psycopg.AsyncConnection[object], wakeup: LocalWakeup) -> None:
    try:
        async for notification in connection.notifies():
            if notification.payload in wakeup.queues:
                wakeup.notify()
    except psycopg.Error:
        log.warning("job queue LISTEN connection lost; idle workers fall back to polling")
        wakeup.notify()
