"""The SQLite job queue on a real file: the caller's transaction, and several queue objects
(connections, as separate processes would have) on one database."""

from __future__ import annotations

import asyncio
import sqlite3
from collections import Counter
from pathlib import Path

import pytest
from support.queues import eventually

from graphmesh.orchestrator.queue import Completion, Job, JobSpec, JobStatus
from graphmesh.orchestrator.queue.base import JsonObject
from graphmesh.orchestrator.queue.sqlite import SqliteJobQueue
from graphmesh.orchestrator.queue.sqlite_ops import atomic
from graphmesh.orchestrator.queue.worker import JobContext, Worker, WorkerOptions
from graphmesh.orchestrator.storage.sqlite import SqliteConnection


async def test_a_completion_and_its_follow_ups_commit_together(sqlite_path: Path) -> None:
    connection = await SqliteConnection.open(sqlite_path)
    queue = SqliteJobQueue(connection)
    try:
        await queue.enqueue(JobSpec(task="parent"))
        (claimed,) = await queue.claim(["default"])

        def finish(db: sqlite3.Connection, fail: bool) -> None:
            with atomic(db):
                view = queue.within(db)
                assert view.complete_many([Completion(token=claimed.token)]) == []
                view.enqueue_many([JobSpec(task="child"), JobSpec(task="child")])
                if fail:
                    raise RuntimeError("crash before commit")

        with pytest.raises(RuntimeError):
            await connection.call(lambda db: finish(db, fail=True))
        assert [job.task for job in await queue.list_jobs()] == ["parent"]
        await connection.call(lambda db: finish(db, fail=False))
        jobs = await queue.list_jobs()
        assert [(job.task, job.status) for job in jobs] == [
            ("parent", JobStatus.SUCCEEDED),
            ("child", JobStatus.PENDING),
            ("child", JobStatus.PENDING),
        ]
    finally:
        await connection.close()


async def test_queues_on_one_file_never_run_a_job_twice(sqlite_path: Path) -> None:
    runs: Counter[int] = Counter()

    async def count(job: Job, context: JobContext) -> JsonObject | None:
        runs[job.id] += 1
        return None

    options = WorkerOptions(batch_size=20, poll_interval_s=0.02)
    async with (
        SqliteJobQueue.open(sqlite_path) as first,
        SqliteJobQueue.open(sqlite_path) as second,
    ):
        jobs = await first.enqueue_many([JobSpec(task="t") for _ in range(300)])
        async with (
            Worker(first, count, concurrency=10, options=options),
            Worker(second, count, concurrency=10, options=options),
        ):
            await eventually(lambda: asyncio.sleep(0, len(runs)), lambda n: n == len(jobs))
    assert set(runs.values()) == {1} and set(runs) == {job.id for job in jobs}


async def test_a_worker_finds_jobs_another_connection_enqueued(sqlite_path: Path) -> None:
    async def noop(job: Job, context: JobContext) -> JsonObject | None:
        return None

    async with SqliteJobQueue.open(sqlite_path) as worker_side:
        async with Worker(worker_side, noop, options=WorkerOptions(poll_interval_s=0.05)):
            async with SqliteJobQueue.open(sqlite_path) as producer_side:
                job = await producer_side.enqueue(JobSpec(task="t"))
            done = await eventually(
                lambda: worker_side.get(job.id),
                lambda found: found is not None and found.status is JobStatus.SUCCEEDED,
            )
    assert done is not None and done.attempt == 1
