"""Listening and the run store across a Postgres restart (a throwaway server of the test's own).

:func:`listen_forever` is what the job queue, the run stores and the outbox relay wake on:
across an immediate stop and a start of the server it reports the gap, listens again, and
delivers what is sent afterwards. The run store reports the outage as StoreUnavailableError
(the API's UNAVAILABLE) and works again once the server is back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import psycopg
import pytest
from support.postgres import RestartablePostgres

from graphmesh.orchestrator.database.listen import listen_forever, listening_connection
from graphmesh.orchestrator.runs.durable.postgres import PostgresRunStore
from graphmesh.orchestrator.runs.records import StoreUnavailableError

pytestmark = pytest.mark.slow
LISTEN = "LISTEN gm_test_channel"


async def notify(dsn: str, payload: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        await connection.execute("SELECT pg_notify('gm_test_channel', %s)", (payload,))


async def until(condition: Callable[[], bool], what: str) -> None:
    for _ in range(400):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting until {what}")


async def test_listening_resumes_after_the_server_restarts() -> None:
    payloads: list[str] = []
    gaps: list[int] = []
    with RestartablePostgres() as server:
        first = await listening_connection(server.dsn, LISTEN)
        listener = asyncio.create_task(
            listen_forever(
                server.dsn,
                LISTEN,
                payloads.append,
                lambda: gaps.append(len(payloads)),
                what="test",
                connection=first,
                pause_s=0.1,
            )
        )
        try:
            await notify(server.dsn, "before")
            await until(lambda: payloads == ["before"], "the first notification arrives")
            server.stop(mode="immediate")
            await until(lambda: len(gaps) >= 1, "the loss is reported")
            await asyncio.sleep(0.5)  # reconnects fail while the server is down
            server.start()
            await until(lambda: len(gaps) >= 2, "listening again is reported")
            await notify(server.dsn, "after")
            await until(lambda: payloads == ["before", "after"], "a later notification arrives")
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)
    assert gaps == [1, 1]


async def test_the_run_store_says_unavailable_while_the_server_is_down() -> None:
    with RestartablePostgres() as server:
        async with PostgresRunStore.open(server.dsn) as store:
            assert await store.fetch("run_exists", {"run_id": "r", "tenant": "t"}) == []
            server.stop(mode="immediate")
            with pytest.raises(StoreUnavailableError, match="runs database is unavailable"):
                await store.fetch("run_exists", {"run_id": "r", "tenant": "t"})
            with pytest.raises(StoreUnavailableError):
                async with store.transaction() as tx:
                    await tx.fetch("lock_runs", {"run_ids": ["r"]})
            server.start()
            # The pool drops broken connections and makes new ones.
            for _ in range(100):
                try:
                    rows = await store.fetch("run_exists", {"run_id": "r", "tenant": "t"})
                    break
                except StoreUnavailableError:
                    await asyncio.sleep(0.1)
            assert rows == []
