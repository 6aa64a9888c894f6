"""Recovery after kill -9 of a run worker process: how long until the run moves again.

Two worker processes (``python -m graphmesh.orchestrator.runs.durable_main``, one task at a
time each) run a chain of 60 tasks that record each execution in a side table and sleep
0.2 s, so exactly one task is in flight at any time. Three times, the process running it
is SIGKILLed and a replacement process started; ``seconds`` is the time from the kill to
the next TASK_COMPLETED of the run (the median of the three; ``max_seconds`` the worst).
The lost task is rescued by the survivor and runs again: with default settings
(``lease_s``, 30 s leases) once the survivor sees the dead worker's session end (target:
under 5 s); in the second run, with 2 s leases (``short_lease_*``, the figures this bench
gave before worker sessions), whichever comes first. ``reexecuted_completed_tasks`` counts
tasks that had completed before a kill and ran again afterwards (must be 0). Reference,
measured in the same run: ``normal_step_s``, the median time between two completions with
nobody killed.

The database is created and dropped here, on the server the test suite finds
(``tests/support/postgres.py``). Prints one JSON line.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and bench/queue.py would shadow the
# standard library's ``queue`` (which asyncio imports): drop the folder first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import asyncio
import json
import signal
import statistics
import subprocess
import time
from collections import Counter
from typing import Any

from support.durable_tasks import create_executions_table, executions, flow, record
from support.postgres import fresh_database, postgres_server

from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService
from graphmesh.orchestrator.runs.durable_main import DurableSettings
from graphmesh.orchestrator.runs.records import RunEventKind

TASKS = 60
TASK_S = 0.2
SHORT_LEASE_S = 2.0
KILLS = 3
TENANT = "bench"
TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests")


def start_worker(dsn: str, lease_s: float | None) -> subprocess.Popen[str]:
    """A worker process; ``lease_s`` ``None``: the default lease."""
    lease = {} if lease_s is None else {"GRAPHMESH_WORKER_LEASE_S": str(lease_s)}
    env = {
        **os.environ,
        "GRAPHMESH_DATABASE_URL": dsn,
        "GRAPHMESH_TASK_MODULES": "support.durable_tasks",
        **lease,
        "GRAPHMESH_WORKER_CONCURRENCY": "1",
        "PYTHONPATH": os.pathsep.join([TESTS, os.environ.get("PYTHONPATH", "")]),
    }
    command = [sys.executable, "-m", "graphmesh.orchestrator.runs.durable_main"]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if "started" not in line:
        raise RuntimeError(f"the worker process did not start: {line!r}")
    return process


def chain(dsn: str) -> dict[str, Any]:
    tasks = [record(f"t{i:02d}", dsn, seconds=TASK_S, value=i) for i in range(TASKS)]
    flows = [flow(f"t{i - 1:02d}", f"t{i:02d}") for i in range(1, TASKS)]
    return {"tasks": tasks, "dataflows": flows}


class Completions:
    """Follows the run's TASK_COMPLETED events, with the time each arrived."""

    def __init__(self, runs: PostgresRunService, run_id: str) -> None:
        self.times: list[float] = []
        self.tasks: list[str] = []
        self.changed = asyncio.Event()
        self.task = asyncio.create_task(self._follow(runs, run_id))

    async def _follow(self, runs: PostgresRunService, run_id: str) -> None:
        async for event in runs.watch_run(run_id, tenant=TENANT):
            if event.kind == RunEventKind.TASK_COMPLETED:
                self.times.append(time.perf_counter())
                self.tasks.append(event.task_id)
                self.changed.set()

    async def until_count(self, count: int) -> None:
        while len(self.times) < count:
            self.changed.clear()
            await self.changed.wait()


async def kill_current(dsn: str, workers: list[subprocess.Popen[str]]) -> float:
    """SIGKILL the worker that started the latest execution; the time of the kill."""
    pid = (await executions(dsn))[-1][2]
    victim = next(process for process in workers if process.pid == pid)
    victim.send_signal(signal.SIGKILL)
    killed_at = time.perf_counter()
    victim.wait()
    workers.remove(victim)
    return killed_at


async def run_counts(dsn: str) -> Counter[str]:
    return Counter(task for _, task, _, _ in await executions(dsn))


async def measure(dsn: str, lease_s: float | None) -> dict[str, Any]:
    await create_executions_table(dsn)
    workers = [start_worker(dsn, lease_s), start_worker(dsn, lease_s)]
    recoveries: list[float] = []
    # Per kill: the tasks completed by then, and how often each had run by then.
    snapshots: list[tuple[list[str], Counter[str]]] = []
    try:
        async with PostgresRunService.open(dsn, run_tasks=False) as runs:
            run = await runs.create_run(graph=chain(dsn), inputs={}, tenant=TENANT)
            seen = Completions(runs, run.run_id)
            for kill in range(KILLS):
                await seen.until_count(10 * (kill + 1))
                await asyncio.sleep(TASK_S / 2)  # mid-task
                before = len(seen.times)
                killed_at = await kill_current(dsn, workers)
                snapshots.append((list(seen.tasks), await run_counts(dsn)))
                workers.append(start_worker(dsn, lease_s))
                await seen.until_count(before + 1)
                recoveries.append(seen.times[before] - killed_at)
            await seen.until_count(TASKS)
            await seen.task
            ran = await run_counts(dsn)
    finally:
        for process in workers:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    steps = [later - earlier for earlier, later in zip(seen.times, seen.times[1:], strict=False)]
    return {
        "seconds": round(statistics.median(recoveries), 2),
        "max_seconds": round(max(recoveries), 2),
        "reexecuted_completed_tasks": sum(
            ran[task] - before[task] for done, before in snapshots for task in done
        ),
        "normal_step_s": round(statistics.median(steps), 3),
    }


def main() -> None:
    with postgres_server() as server:
        with fresh_database(server) as dsn:
            default = asyncio.run(measure(dsn, None))
        with fresh_database(server) as dsn:
            short = asyncio.run(measure(dsn, SHORT_LEASE_S))
    figures = {
        "bench": "recovery",
        **default,
        "lease_s": DurableSettings().worker_lease_s,
        **{f"short_lease_{name}": value for name, value in short.items()},
        "short_lease_s": SHORT_LEASE_S,
        "kills": KILLS,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
