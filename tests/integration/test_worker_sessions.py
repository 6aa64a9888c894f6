"""A worker process killed mid-attempt: its attempt is rescued through its session, long
before its lease ends, while a live worker's long attempt keeps its lease.

Two real processes claim one job each under a worker session, with 10-minute leases, and
wait. One is SIGKILLed. On Postgres its connection ends and with it the session's
advisory lock; on SQLite its pid is gone. The test's own queue then finds the session
gone at its next maintenance: the dead worker's attempt is rescued (history
``worker_lost``), the live one's is left running.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from support.queues import eventually, open_queue

from graphmesh.orchestrator.queue import (
    ErrorKind,
    Job,
    JobQueue,
    JobSpec,
    JobStatus,
    RetryPolicy,
)

LEASE_S = 600.0
CLAIMER = f"""
import asyncio, sys
from graphmesh.orchestrator.queue.postgres import PostgresJobQueue
from graphmesh.orchestrator.queue.sqlite import SqliteJobQueue

async def main(kind, where):
    opened = PostgresJobQueue.open(where) if kind == "postgres" else SqliteJobQueue.open(where)
    async with opened as queue, queue.session() as session:
        (job,) = await queue.claim(["default"], lease_s={LEASE_S}, session=session)
        print(job.id, flush=True)
        await asyncio.sleep(3600)

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@contextmanager
def claimer(kind: str, where: str) -> Iterator[tuple[subprocess.Popen[str], int]]:
    """A worker process holding one claimed job; its process and the job's id."""
    process = subprocess.Popen(
        [sys.executable, "-c", CLAIMER, kind, where], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.strip().isdigit(), f"the worker process did not claim: {line!r}"
        yield process, int(line)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)
        if process.stdout is not None:
            process.stdout.close()


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
async def test_a_killed_workers_attempt_is_rescued_and_a_live_ones_kept(
    kind: str, request: pytest.FixtureRequest
) -> None:
    where = str(request.getfixturevalue("postgres_dsn" if kind == "postgres" else "sqlite_path"))
    async with open_queue(kind, request) as queue:
        await queue.enqueue_many(
            [JobSpec(task="t", retry=RetryPolicy(initial_backoff_s=0.0)) for _ in range(2)]
        )
        with claimer(kind, where) as (victim, lost_id), claimer(kind, where) as (_, kept_id):
            victim.send_signal(signal.SIGKILL)
            await asyncio.to_thread(victim.wait, 30)
            report = await eventually(queue.maintain, lambda r: r.orphaned == 1, within_s=30)
            assert report.rescued == 0  # no lease ran out
            rescued = await job(queue, lost_id)
            kept = await job(queue, kept_id)
    (entry,) = rescued.history
    assert (rescued.status, entry.error.kind) == (JobStatus.PENDING, ErrorKind.WORKER_LOST)
    assert entry.started_at is not None
    assert (entry.ended_at - entry.started_at).total_seconds() < LEASE_S
    assert (kept.status, kept.attempt, kept.history) == (JobStatus.RUNNING, 1, ())


async def job(queue: JobQueue, job_id: int) -> Job:
    found = await queue.get(job_id)
    assert found is not None
    return found
