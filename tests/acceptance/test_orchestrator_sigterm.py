"""SIGTERM of an orchestrator with a WatchRun stream open: a prompt, clean handover.

Orchestrator A (``GRAPHMESH_GRACE_PERIOD`` 3 s, default leases) runs a run of three chains
of short tasks and one task longer than the grace period, while a client watches the run
on A and another waits for it (``Client.wait``) through a front that, like a load
balancer, sends new connections to the first replica that listens; orchestrator B runs
beside it. A is paused (SIGSTOP) for a snapshot of the jobs
running at that moment, then gets SIGTERM (and SIGCONT). A must start no task after
SIGTERM (whatever it runs after it, it had claimed before), end the watch with
UNAVAILABLE saying it is shutting down, hand the long task back (it runs again on B, and
its job counts no failure), and exit within its grace period. B finishes the run: every
task completes, each task completed before SIGTERM ran once, and the event log counts
1, 2, 3 ... without a gap. The waiting client resumes its watch on B after the last event
it saw and returns the completed run.
"""

from __future__ import annotations

import asyncio
import signal
from datetime import datetime
from typing import Any

import psycopg
import pytest
from support.durable_tasks import create_executions_table, execution_counts, flow, record
from support.failover import FailoverProxy
from support.orchestrator_process import (
    attempts_of,
    executions_by,
    orchestrator_process,
    task_statuses,
    until_completed,
)

from graphmesh.client import Client
from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.runs.records import RunState
from graphmesh.orchestrator.wire.errors import UnavailableError

pytestmark = pytest.mark.slow

GRACE_S = 3.0
CHAINS, LENGTH, STEP_S = 3, 15, 0.4
LONG_S = 8.0  # longer than the grace period: handed back, never finished by A
# After SIGSTOP, statements A sent before it stopped may still be running on the server:
# the snapshot waits this long so that they are in it.
SETTLE_S = 0.3


def chains_and_a_long_task(dsn: str) -> dict[str, Any]:
    tasks = [record("long", dsn, seconds=LONG_S)]
    flows = []
    for chain in range(CHAINS):
        tasks += [record(f"c{chain}_{i}", dsn, seconds=STEP_S) for i in range(LENGTH)]
        flows += [flow(f"c{chain}_{i - 1}", f"c{chain}_{i}") for i in range(1, LENGTH)]
    return {"tasks": tasks, "dataflows": flows}


async def test_sigterm_hands_the_run_over_within_the_grace_period(postgres_dsn: str) -> None:
    dsn = postgres_dsn
    await create_executions_table(dsn)
    graph = chains_and_a_long_task(dsn)
    env = {"GRAPHMESH_GRACE_PERIOD": str(GRACE_S)}
    with orchestrator_process(dsn, lease_s=None, concurrency=4, env=env) as (a, a_address):
        async with (
            Client(a_address, timeout=10) as client,
            FailoverProxy([a_address]) as front,
            Client(front.address, timeout=10) as via_front,
        ):
            run = await client.submit(graph)
            watching = asyncio.create_task(watch_until_broken(client, run.run_id))
            waiting = asyncio.create_task(via_front.wait(run.run_id))
            await asyncio.wait_for(until_completed(dsn, run.run_id, 3), 60)
            with orchestrator_process(dsn, lease_s=None, concurrency=4, env=env) as (_, b):
                front.targets.append(b)
                a.send_signal(signal.SIGSTOP)
                await asyncio.sleep(SETTLE_S)
                running, at_sigterm = await running_jobs(dsn, run.run_id)
                completed_before = await completed(dsn, run.run_id)
                a.send_signal(signal.SIGTERM)
                a.send_signal(signal.SIGCONT)
                # Within the grace period, or TimeoutExpired.
                assert await asyncio.to_thread(a.wait, GRACE_S) == 0
                broken = await asyncio.wait_for(watching, 10)
                async with Client(b, timeout=10) as other:
                    done = await asyncio.wait_for(other.wait(run.run_id), 90)
                    events = [event async for event in other.watch(run.run_id)]
                waited = await asyncio.wait_for(waiting, 30)
    assert "long" in running
    started_late = {
        task for task, pid, at in await executions_by(dsn) if pid == a.pid and at > at_sigterm
    }
    assert started_late <= running, "A started tasks after SIGTERM"
    assert isinstance(broken, UnavailableError) and "shutting down" in str(broken), broken
    assert done.status == RunState.COMPLETED, done.error
    assert (waited.status, waited.last_seq) == (RunState.COMPLETED, done.last_seq)
    ran_long = [pid for task, pid, _ in await executions_by(dsn) if task == "long"]
    assert ran_long[0] == a.pid and len(ran_long) == 2 and ran_long[1] != a.pid
    long_job = await attempts_of(dsn, run.run_id, "long")
    assert (long_job["attempt"], long_job["history"]) == (2, [])  # handed back: no failure
    counts = await execution_counts(dsn)
    assert {task: counts[task] for task in completed_before} == dict.fromkeys(completed_before, 1)
    assert set(counts) == {task["id"] for task in graph["tasks"]}
    assert [event.seq for event in events] == list(range(1, done.last_seq + 1))


async def watch_until_broken(client: Client, run_id: str) -> GraphmeshError | None:
    """Follow the run's events; the error that ended the watch, if one did."""
    try:
        async for _ in client.watch(run_id):
            pass
    except GraphmeshError as error:
        return error
    return None


async def running_jobs(dsn: str, run_id: str) -> tuple[set[str], datetime]:
    """The tasks whose jobs are running now (claimed, or started at enqueue), and the
    database's clock now (the clock the executions are recorded with)."""
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(
            "SELECT payload->>'task_id', clock_timestamp() FROM graphmesh_jobs"
            " WHERE status = 'running' AND payload->>'run_id' = %s",
            (run_id,),
        )
        rows = await cursor.fetchall()
        now = await (await connection.execute("SELECT clock_timestamp()")).fetchone()
    assert now is not None
    return {task for task, _ in rows}, now[0]


async def completed(dsn: str, run_id: str) -> set[str]:
    return {
        task for task, status in (await task_statuses(dsn, run_id)).items() if status == "COMPLETED"
    }
