"""LISTEN/NOTIFY wakeups for the Postgres queue.

A wakeup listens on a connection of its own (see
:mod:`~graphmesh.orchestrator.database.listen`) and is notified by
``graphmesh_jobs`` notifications whose payload, a queue name, the subscriber wants. If that
connection breaks (the database restarted), the wakeup fires and the worker finds work by
polling, as it always can, until the listener is back; then it fires again.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from graphmesh.orchestrator.database.listen import listen_forever, listening_connection
from graphmesh.orchestrator.wakeup import LocalWakeup


@asynccontextmanager
async def listen(
    conninfo: str, queues: Sequence[str], listen_sql: str
) -> AsyncIterator[LocalWakeup]:
    """A wakeup notified by enqueues on ``queues`` anywhere, for the block's duration."""
    wakeup = LocalWakeup(queues)

    def on_payload(queue: str) -> None:
        if queue in wakeup.queues:
            wakeup.notify()

    # Listening before we return: an enqueue after entry is never missed.
    connection = await listening_connection(conninfo, listen_sql)
    relay = asyncio.create_task(
        listen_forever(
            conninfo,
            listen_sql,
            on_payload,
            wakeup.notify,
            what="job queue",
            connection=connection,
        ),
        name="graphmesh-queue-listen",
    )
    try:
        yield wakeup
    finally:
        relay.cancel()
        await asyncio.gather(relay, return_exceptions=True)
