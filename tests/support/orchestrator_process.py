"""Real orchestrator processes for the acceptance tests, and what they check in the database.

:func:`orchestrator_process` starts ``graphmesh serve orchestrator --store postgres`` (it
runs tasks itself, with the task types of :mod:`support.durable_tasks`) on a free loopback
port and yields the process and its address; :func:`record_lattice` is a graph of
:class:`~support.durable_tasks.RecordTask` tasks that record each execution.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import psycopg

from support.durable_tasks import EXECUTIONS, flow, record

TESTS = Path(__file__).resolve().parent.parent


@contextmanager
def orchestrator_process(
    dsn: str,
    *,
    lease_s: float | None = 2.0,
    concurrency: int = 3,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """A started orchestrator process and its address; stopped (SIGTERM) on exit.

    ``lease_s``: the tasks' leases (``None``: the default); ``concurrency``: tasks at once;
    ``env``: more environment (e.g. ``GRAPHMESH_NATS_URL``, ``GRAPHMESH_GRACE_PERIOD``).
    """
    command = [str(Path(sys.executable).parent / "graphmesh"), "serve", "orchestrator"]
    lease = {} if lease_s is None else {"GRAPHMESH_WORKER_LEASE_S": str(lease_s)}
    environment = {
        **os.environ,
        "GRAPHMESH_DATABASE_URL": dsn,
        "GRAPHMESH_TASK_MODULES": "support.durable_tasks",
        **lease,
        "GRAPHMESH_WORKER_CONCURRENCY": str(concurrency),
        "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]),
        **(env or {}),
    }
    process = subprocess.Popen(
        [*command, "--store", "postgres", "--listen", "127.0.0.1:0", "--no-auth"],
        env=environment,
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


def record_lattice(dsn: str, *, width: int, depth: int, seconds: float) -> dict[str, Any]:
    """Graph JSON: ``depth`` layers of ``width`` recording tasks that each sleep ``seconds``,
    every task fed by two tasks of the layer above."""
    tasks = [
        record(f"t{layer}_{i}", dsn, seconds=seconds, value=i)
        for layer in range(depth)
        for i in range(width)
    ]
    flows = [
        flow(f"t{layer - 1}_{source}", f"t{layer}_{i}")
        for layer in range(1, depth)
        for i in range(width)
        for source in sorted({i, (i + 1) % width})
    ]
    return {"tasks": tasks, "dataflows": flows}


async def task_statuses(dsn: str, run_id: str) -> dict[str, str]:
    """Every task of the run and its status, as committed."""
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(
            "SELECT task_id, status FROM graphmesh_run_tasks WHERE run_id = %s", (run_id,)
        )
        return {task: status for task, status in await cursor.fetchall()}


async def attempts_of(dsn: str, run_id: str, task_id: str) -> dict[str, Any]:
    """The job of one task of the run: its ``attempt``, ``started_at``, ``lease_until``
    and ``history`` (failed attempts, as stored)."""
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(
            "SELECT attempt, started_at, lease_until, history FROM graphmesh_jobs"
            " WHERE idempotency_key = %s",
            (f"{run_id}:{task_id}",),
        )
        row = await cursor.fetchone()
    assert row is not None, f"no job for task {task_id}"
    attempt, started_at, lease_until, history = row
    return {
        "attempt": attempt,
        "started_at": started_at,
        "lease_until": lease_until,
        "history": history,
    }


async def executions_by(dsn: str) -> list[tuple[str, int, datetime]]:
    """Every recorded execution: (task id, pid, when), in order."""
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(f"SELECT task_id, pid, at FROM {EXECUTIONS} ORDER BY at")
        return [(task, pid, at) for task, pid, at in await cursor.fetchall()]


async def until_completed(dsn: str, run_id: str, count: int) -> None:
    """Return once at least ``count`` tasks of the run have COMPLETED."""
    while True:
        statuses = await task_statuses(dsn, run_id)
        if sum(status == "COMPLETED" for status in statuses.values()) >= count:
            return
        await asyncio.sleep(0.05)
