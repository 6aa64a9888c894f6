"""A Postgres outage under the durable runs: calls fail fast, and work resumes at once.

The runs live on a Postgres server of the test's own (``RestartablePostgres``), stopped in
``immediate`` mode as a crash would stop it. During the outage a call must not wait on the
connection pool (psycopg_pool alone waits up to 30 s for a connection): GetRun answers
UNAVAILABLE (reason STORE_UNAVAILABLE) well inside a 5 s deadline, retries of the SDK's
channel included. After the server is back, reads work again within a short deadline
whatever the outage's length (psycopg_pool alone reconnects with a doubling backoff: 7-10
s after a 20 s outage).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest
from support.durable_tasks import CollectTask
from support.postgres import RestartablePostgres

from graphmesh.client import Client
from graphmesh.orchestrator.api.server import OrchestratorServer
from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService
from graphmesh.orchestrator.runs.records import RunFilter, RunRecord, StoreUnavailableError
from graphmesh.orchestrator.storage.memory import MemoryGraphRepository
from graphmesh.orchestrator.storage.postgres import PostgresGraphRepository

TENANT = "acme"
GRAPH = {"tasks": [{"id": "a", "type": CollectTask.type}], "dataflows": []}
DEADLINE_S = 5.0  # a call during the outage: its answer must come before this
RESUME_S = 3.0  # after the outage: reads work again within this


async def test_get_run_answers_unavailable_during_an_outage() -> None:
    with RestartablePostgres() as server:
        async with (
            PostgresRunService.open(server.dsn, run_tasks=False) as runs,
            MemoryGraphRepository.open() as graphs,
            OrchestratorServer(runs, graphs, tokens=None, grace_period=0) as served,
            Client(served.target, timeout=DEADLINE_S) as client,
        ):
            run = await client.submit(GRAPH)
            await asyncio.to_thread(server.stop, "immediate")
            # STORE_UNAVAILABLE, not DEADLINE_EXCEEDED: the server did not hang on its pool.
            with pytest.raises(StoreUnavailableError):
                await client.get(run.run_id)
            with pytest.raises(StoreUnavailableError):
                await anext(aiter(client.runs()))
            await asyncio.to_thread(server.start)
            again = await read_within(lambda: client.get(run.run_id), RESUME_S)
    assert again.run_id == run.run_id


async def test_saved_graphs_answer_unavailable_during_an_outage() -> None:
    with RestartablePostgres() as server:
        async with (
            PostgresRunService.open(server.dsn, run_tasks=False) as runs,
            PostgresGraphRepository.open(server.dsn) as graphs,
            OrchestratorServer(runs, graphs, tokens=None, grace_period=0) as served,
            Client(served.target, timeout=DEADLINE_S) as client,
        ):
            saved = await client.save_graph(GRAPH, name="outage")
            await asyncio.to_thread(server.stop, "immediate")
            # STORE_UNAVAILABLE, never INTERNAL: the graph repository says what happened.
            with pytest.raises(StoreUnavailableError):
                await client.get_graph(saved.graph_id)
            await asyncio.to_thread(server.start)


@pytest.mark.parametrize(
    "down_s", [pytest.param(2.0, id="2s"), pytest.param(20.0, id="20s", marks=pytest.mark.slow)]
)
async def test_reads_work_again_moments_after_an_outage_of_any_length(down_s: float) -> None:
    with RestartablePostgres() as server:
        async with PostgresRunService.open(server.dsn, run_tasks=False) as runs:
            run = await runs.create_run(graph=GRAPH, inputs={}, tenant=TENANT)
            await asyncio.to_thread(server.stop, "immediate")
            for _ in range(3):  # the first read meets the outage, the next ones know it
                async with asyncio.timeout(DEADLINE_S):
                    with pytest.raises(StoreUnavailableError):
                        await runs.get_run(run.run_id, tenant=TENANT)
            await asyncio.sleep(down_s)  # the outage's length, not a wait for a result
            await asyncio.to_thread(server.start)
            again = await read_within(lambda: runs.get_run(run.run_id, tenant=TENANT), RESUME_S)
            listed = await runs.list_runs(RunFilter(tenant=TENANT))
    assert again.run_id == run.run_id
    assert [found.run_id for found in listed.items] == [run.run_id]


async def read_within(read: Callable[[], Awaitable[RunRecord]], seconds: float) -> RunRecord:
    """The first read that succeeds, trying until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                return await read()
        except StoreUnavailableError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
