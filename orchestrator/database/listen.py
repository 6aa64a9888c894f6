"""``LISTEN`` that outlives a database restart, for every part that waits on notifications.

The job queue (enqueues), the run stores (run status changes) and the outbox relay (new
events) each hold an autocommit connection of their own (a pooled one would be handed to
other work between notifications) and run :func:`listen_forever` in a task. When the
connection breaks, ``on_gap`` is called, since notifications may be missed until it is
back; the loop then connects again every ``pause_s`` and calls ``on_gap`` once more after
it listens again, for what was sent meanwhile. Waiters therefore poll during the gap and
wake at once when it closes.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import psycopg

log = logging.getLogger(__name__)
Connection = psycopg.AsyncConnection[object]
RELISTEN_PAUSE_S = 0.25


async def listening_connection(conninfo: str, listen_sql: str) -> Connection:
    """A new autocommit connection that has run ``listen_sql`` (``LISTEN channel``)."""
    connection: Connection = await psycopg.AsyncConnection.connect(conninfo, autocommit=True)
    try:
        await connection.execute(listen_sql)
    except BaseException:
        await connection.close()
        raise
    return connection


async def listen_forever(
    conninfo: str,
    listen_sql: str,
    on_payload: Callable[[str], None],
    on_gap: Callable[[], None],
    *,
    what: str,
    connection: Connection | None = None,
    pause_s: float = RELISTEN_PAUSE_S,
) -> None:
    """Pass every notification's payload to ``on_payload`` until cancelled, listening
    again after each loss (see the module docs). ``connection``: one already listening,
    so that nothing sent after the caller's setup is missed; ``what`` names the listener
    in the log."""
    while True:
        if connection is None:
            connection = await _reconnect(conninfo, listen_sql, pause_s)
            on_gap()  # whatever was sent while nobody listened
        try:
            async with connection:  # closed when cancelled, or once it broke
                async for notification in connection.notifies():
                    on_payload(notification.payload)
        except psycopg.Error as error:
            log.warning("%s: LISTEN connection lost (%s); polling until it is back", what, error)
        connection = None
        on_gap()


async def _reconnect(conninfo: str, listen_sql: str, pause_s: float) -> Connection:
    while True:
        try:
            return await listening_connection(conninfo, listen_sql)
        except psycopg.Error as error:
            log.debug("LISTEN reconnect failed: %s", error)
        await asyncio.sleep(pause_s)
