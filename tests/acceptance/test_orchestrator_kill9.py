"""Kill -9 of an orchestrator loses nothing.

A real orchestrator process (``graphmesh serve orchestrator --store postgres``, running
tasks itself) gets a run of 30 tasks that each record their execution in a side table and
sleep briefly. Mid-run it is SIGKILLed; a second orchestrator process is started on the
same database. The run must complete, every task that had COMPLETED before the kill must
have run exactly once, and the event log must still count 1, 2, 3 ... without a gap.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from support.durable_tasks import create_executions_table, execution_counts, flow, record

from graphmesh.client import Client
from graphmesh.orchestrator.runs.model import RunState

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parent.parent
WIDTH, DEPTH = 3, 10  # 30 tasks; 3 run at a time
LEASE_S = 2.0  # how long the dead process's tasks wait before they run elsewhere


@contextmanager
def orchestrator(dsn: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A started orchestrator process and its address; stopped (SIGTERM) on exit."""
    command = [str(Path(sys.executable).parent / "graphmesh"), "serve", "orchestrator"]
    env = {
        **os.environ,
        "GRAPHMESH_DATABASE_URL": dsn,
        "GRAPHMESH_TASK_MODULES": "support.durable_tasks",
        "GRAPHMESH_WORKER_LEASE_S": str(LEASE_S),
        "GRAPHMESH_WORKER_CONCURRENCY": str(WIDTH),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
    }
    process = subprocess.Popen(
        [*command, "--store", "postgres", "--listen", "127.0.0.1:0", "--no-auth"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert "listening on" in line, line
        yield process, line.split("listening on ")[1].split()[0]
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


def lattice(dsn: str) -> dict[str, Any]:
    tasks = [
        record(f"t{layer}_{i}", dsn, seconds=0.15, value=i)
        for layer in range(DEPTH)
        for i in range(WIDTH)
    ]
    flows = [
        flow(f"t{layer - 1}_{source}", f"t{layer}_{i}")
        for layer in range(1, DEPTH)
        for i in range(WIDTH)
        for source in sorted({i, (i + 1) % WIDTH})
    ]
    return {"tasks": tasks, "dataflows": flows}


async def task_statuses(dsn: str, run_id: str) -> dict[str, str]:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(
            "SELECT task_id, status FROM graphmesh_run_tasks WHERE run_id = %s", (run_id,)
        )
        return {task: status for task, status in await cursor.fetchall()}


async def until_completed(dsn: str, run_id: str, count: int) -> None:
    while True:
        statuses = await task_statuses(dsn, run_id)
        if sum(status == "COMPLETED" for status in statuses.values()) >= count:
            return
        await asyncio.sleep(0.05)


async def test_kill9_of_an_orchestrator_loses_nothing(postgres_dsn: str) -> None:
    dsn = postgres_dsn
    await create_executions_table(dsn)
    graph = lattice(dsn)
    with orchestrator(dsn) as (first, address):
        async with Client(address, timeout=10) as client:
            run = await client.submit(graph)
        await asyncio.wait_for(until_completed(dsn, run.run_id, 8), 60)
        first.send_signal(signal.SIGKILL)
        assert first.wait(timeout=10) == -signal.SIGKILL
    # The rows are what the dead process committed: completed tasks are final.
    at_kill = await task_statuses(dsn, run.run_id)
    completed_before = {task for task, status in at_kill.items() if status == "COMPLETED"}
    assert 8 <= len(completed_before) < len(graph["tasks"])
    with orchestrator(dsn) as (_, address):
        async with Client(address, timeout=10) as client:
            done = await asyncio.wait_for(client.wait(run.run_id), 60)
            events = [event async for event in client.watch(run.run_id)]
    assert done.status == RunState.COMPLETED, done.error
    counts = await execution_counts(dsn)
    assert {task: counts[task] for task in completed_before} == dict.fromkeys(completed_before, 1)
    assert set(counts) == {task["id"] for task in graph["tasks"]}
    assert [event.seq for event in events] == list(range(1, done.last_seq + 1))
