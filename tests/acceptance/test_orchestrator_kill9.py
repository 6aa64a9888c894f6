"""Kill -9 of an orchestrator loses nothing.

A real orchestrator process (``graphmesh serve orchestrator --store postgres``, running
tasks itself) gets a run of 30 tasks that each record their execution in a side table and
sleep briefly. Mid-run it is SIGKILLed; a second orchestrator process is started on the
same database. The run must complete, every task that had COMPLETED before the kill must
have run exactly once, and the event log must still count 1, 2, 3 ... without a gap.
"""

from __future__ import annotations

import asyncio
import signal

import pytest
from support.durable_tasks import create_executions_table, execution_counts
from support.orchestrator_process import (
    orchestrator_process,
    record_lattice,
    task_statuses,
    until_completed,
)

from graphmesh.client import Client
from graphmesh.orchestrator.runs.model import RunState

pytestmark = pytest.mark.slow

WIDTH, DEPTH = 3, 10  # 30 tasks; 3 run at a time


async def test_kill9_of_an_orchestrator_loses_nothing(postgres_dsn: str) -> None:
    dsn = postgres_dsn
    await create_executions_table(dsn)
    graph = record_lattice(dsn, width=WIDTH, depth=DEPTH, seconds=0.15)
    with orchestrator_process(dsn, concurrency=WIDTH) as (first, address):
        async with Client(address, timeout=10) as client:
            run = await client.submit(graph)
        await asyncio.wait_for(until_completed(dsn, run.run_id, 8), 60)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    # The rows are what the dead process committed: completed tasks are final.
    at_kill = await task_statuses(dsn, run.run_id)
    completed_before = {task for task, status in at_kill.items() if status == "COMPLETED"}
    assert 8 <= len(completed_before) < len(graph["tasks"])
    with orchestrator_process(dsn, concurrency=WIDTH) as (_, address):
        async with Client(address, timeout=10) as client:
            done = await asyncio.wait_for(client.wait(run.run_id), 60)
            events = [event async for event in client.watch(run.run_id)]
    assert done.status == RunState.COMPLETED, done.error
    counts = await execution_counts(dsn)
    assert {task: counts[task] for task in completed_before} == dict.fromkeys(completed_before, 1)
    assert set(counts) == {task["id"] for task in graph["tasks"]}
    assert [event.seq for event in events] == list(range(1, done.last_seq + 1))
