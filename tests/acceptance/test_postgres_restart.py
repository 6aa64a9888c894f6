"""A Postgres restart mid-run is survived: the run completes in the same process.

A real orchestrator process (``graphmesh serve orchestrator --store postgres``, running
tasks itself) keeps its runs on a Postgres server of the test's own (never the shared one)
and gets a run of 30 tasks that each record their execution and sleep briefly. The records
go to a side table on the shared server, which stays up: like real tasks (model calls),
these do not need the orchestrator's database, so only the engine meets the outage. Mid-run
the server is stopped in ``immediate`` mode, as a crash would stop it, and stays down for a
few seconds: claims, heartbeats, commits and LISTEN connections fail meanwhile. Once it is
started again, the same orchestrator process must complete the run, every task that had
COMPLETED before the stop must have run exactly once, and the event log must still count
1, 2, 3 ... without a gap.
"""

from __future__ import annotations

import asyncio

import pytest
from support.durable_tasks import create_executions_table, execution_counts
from support.orchestrator_process import (
    orchestrator_process,
    record_lattice,
    task_statuses,
    until_completed,
)
from support.postgres import RestartablePostgres

from graphmesh.client import Client
from graphmesh.orchestrator.runs.records import RunState

pytestmark = pytest.mark.slow

WIDTH, DEPTH = 3, 10  # 30 tasks; 3 run at a time
DOWN_S = 3.0  # longer than a heartbeat interval and the LISTEN reconnect pause


async def test_a_postgres_restart_mid_run_is_survived(postgres_dsn: str) -> None:
    records = postgres_dsn
    await create_executions_table(records)
    with RestartablePostgres() as server:
        dsn = server.dsn
        graph = record_lattice(records, width=WIDTH, depth=DEPTH, seconds=0.15)
        with orchestrator_process(dsn, concurrency=WIDTH) as (process, address):
            async with Client(address, timeout=10) as client:
                run = await client.submit(graph)
                await asyncio.wait_for(until_completed(dsn, run.run_id, 6), 60)
                at_stop = await task_statuses(dsn, run.run_id)
                await asyncio.to_thread(server.stop, "immediate")
                await asyncio.sleep(DOWN_S)
                assert process.poll() is None, "the orchestrator exited while Postgres was down"
                await asyncio.to_thread(server.start)
                try:
                    done = await asyncio.wait_for(client.wait(run.run_id), 90)
                except TimeoutError:
                    statuses = await task_statuses(dsn, run.run_id)
                    pytest.fail(f"the run did not complete; its tasks: {statuses}")
                events = [event async for event in client.watch(run.run_id)]
            assert process.poll() is None, "the orchestrator exited after Postgres came back"
        completed_before = {task for task, status in at_stop.items() if status == "COMPLETED"}
        assert 6 <= len(completed_before) < len(graph["tasks"])
        assert done.status == RunState.COMPLETED, done.error
        statuses = await task_statuses(dsn, run.run_id)
        assert statuses == dict.fromkeys(statuses, "COMPLETED")
        assert set(statuses) == {task["id"] for task in graph["tasks"]}
        counts = await execution_counts(records)
        assert {task: counts[task] for task in completed_before} == dict.fromkeys(
            completed_before, 1
        )
        assert set(counts) == set(statuses)
        assert [event.seq for event in events] == list(range(1, done.last_seq + 1))
