"""Kill -9 of an orchestrator loses nothing, and its tasks run again within seconds.

A real orchestrator process (``graphmesh serve orchestrator --store postgres``, running
tasks itself) gets a run of 30 tasks that each record their execution in a side table and
sleep briefly. Mid-run it is SIGKILLed; a second orchestrator process is started on the
same database. The run must complete, every task that had COMPLETED before the kill must
have run exactly once, and the event log must still count 1, 2, 3 ... without a gap.

With default settings (30 s leases), the task a killed orchestrator was running must run
again on a live one through the dead worker's session, before its lease ran out: its job's
history says ``worker_lost``, at a time its lease still held.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime

import pytest
from support.durable_tasks import create_executions_table, execution_counts, flow, record
from support.orchestrator_process import (
    attempts_of,
    executions_by,
    orchestrator_process,
    record_lattice,
    task_statuses,
    until_completed,
)

from graphmesh.client import Client
from graphmesh.orchestrator.runs.records import RunState

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


async def test_kill9_with_default_settings_runs_the_task_again_before_its_lease_ends(
    postgres_dsn: str,
) -> None:
    dsn = postgres_dsn
    await create_executions_table(dsn)
    graph = {
        "tasks": [record("first", dsn, seconds=0.1), record("long", dsn, seconds=4.0)],
        "dataflows": [flow("first", "long")],
    }
    with (
        orchestrator_process(dsn, lease_s=None) as (one, one_address),
        orchestrator_process(dsn, lease_s=None) as (two, two_address),
    ):
        async with Client(one_address, timeout=10) as client:
            run = await client.submit(graph)
        pid = await asyncio.wait_for(started_in(dsn, "long"), 60)
        victim, survivor = (one, two) if pid == one.pid else (two, one)
        held = await attempts_of(dsn, run.run_id, "long")
        victim.send_signal(signal.SIGKILL)
        assert victim.wait(timeout=10) == -signal.SIGKILL
        async with Client(two_address if victim is one else one_address, timeout=10) as client:
            done = await asyncio.wait_for(client.wait(run.run_id), 60)
    assert done.status == RunState.COMPLETED, done.error
    ran = [(task, by) for task, by, _ in await executions_by(dsn)]
    assert ran[1:] == [("long", victim.pid), ("long", survivor.pid)]
    job = await attempts_of(dsn, run.run_id, "long")
    (lost,) = job["history"]
    assert (job["attempt"], lost["attempt"], lost["error"]["kind"]) == (2, 1, "worker_lost")
    # Rescued through the dead worker's session: its lease (30 s, the default) still held.
    assert held["lease_until"] is not None
    assert datetime.fromisoformat(lost["ended_at"]) < held["lease_until"]


async def started_in(dsn: str, task_id: str) -> int:
    """Once ``task_id`` has started, the pid of the process it started in."""
    while True:
        for task, pid, _ in await executions_by(dsn):
            if task == task_id:
                return pid
        await asyncio.sleep(0.05)
