"""LISTEN/NOTIFY wakeups for the Postgres queue.

A wakeup holds its own autocommit connection (a pooled one would be handed to other
work between notifications) and a task that relays ``graphmesh_jobs`` notifications whose
payload, a queue name, the subscriber wants. If that connection breaks (the database
restarted), the wakeup fires and the worker finds work by polling, as it always can, while
the relay connects again every :data:`RELISTEN_PAUSE_S` until it listens once more.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import psycopg

from graphmesh.orchestrator.queue._shared import LocalWakeup

log = logging.getLogger(__name__)
RELISTEN_PAUSE_S = 1.0
Connection = psycopg.AsyncConnection[object]


@asynccontextmanager
async def listen(
    conninfo: str, queues: Sequence[str], listen_sql: str
) -> AsyncIterator[LocalWakeup]:
    """A wakeup notified by enqueues on ``queues`` anywhere, for the block's duration."""
    wakeup = LocalWakeup(queues)
    connection = await _listening(conninfo, listen_sql)
    relay = asyncio.create_task(
        _relay(conninfo, listen_sql, connection, wakeup), name="graphmesh-queue-listen"
    )
    try:
        yield wakeup
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)


async def _listening(conninfo: str, listen_sql: str) -> Connection:
    """A new autocommit connection that LISTENs."""
    connection: Connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    try:
        await connection.execute(listen_sql)
    except BaseException:
        await connection.close()
        raise
    return connection


async def _relay(
    conninfo: str, listen_sql: str, connection: Connection, wakeup: LocalWakeup
) -> None:
    """Relay notifications; when the connection breaks, listen again on a new one."""
    while True:
        try:
            async with connection:  # closed when the relay stops or the connection broke
                async for notification in connection.notifies():
                    if notification.payload in wakeup.queues:
                        wakeup.notify()
        except psycopg.Error:
            log.warning("job queue LISTEN connection lost; idle workers poll until it is back")
        wakeup.notify()
        connection = await _reconnect(conninfo, listen_sql)
        wakeup.notify()  # jobs enqueued while nobody listened


async def _reconnect(conninfo: str, listen_sql: str) -> Connection:
    while True:
        await asyncio.sleep(RELISTEN_PAUSE_S)
        try:
            return await _listening(conninfo, listen_sql)
        except psycopg.Error as error:
            log.debug("job queue LISTEN reconnect failed: %s", error)
