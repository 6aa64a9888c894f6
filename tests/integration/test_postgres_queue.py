"""The Postgres job queue on a real server: caller transactions, several queue objects
(pools) on one database, LISTEN/NOTIFY across connections, and the claim's plan."""

from __future__ import annotations

import asyncio
from collections import Counter

import psycopg
import pytest
from psycopg.rows import TupleRow
from support.queues import eventually

from graphmesh.orchestrator.database.sql import POSTGRES_QUERIES
from graphmesh.orchestrator.queue import Job, JobSpec, JobStatus
from graphmesh.orchestrator.queue.base import JsonObject
from graphmesh.orchestrator.queue.postgres import PostgresJobQueue
from graphmesh.orchestrator.queue.worker import JobContext, Worker, WorkerOptions


async def status_of(queue: PostgresJobQueue, job_id: int) -> JobStatus | None:
    job = await queue.get(job_id)
    return None if job is None else job.status


async def test_an_enqueue_in_a_rolled_back_transaction_leaves_nothing(postgres_dsn: str) -> None:
    async with (
        PostgresJobQueue.open(postgres_dsn) as queue,
        await psycopg.AsyncConnection.connect(postgres_dsn) as connection,
    ):
        with pytest.raises(RuntimeError):
            async with connection.transaction():
                await queue.within(connection).enqueue(JobSpec(task="t"))
                raise RuntimeError("the caller's own write failed")
        assert await queue.list_jobs() == []


async def test_a_completion_and_the_jobs_it_makes_ready_commit_together(postgres_dsn: str) -> None:
    async with (
        PostgresJobQueue.open(postgres_dsn) as queue,
        await psycopg.AsyncConnection.connect(postgres_dsn) as connection,
    ):
        parent = await queue.enqueue(JobSpec(task="parent", key="run-1:a"))
        (claimed,) = await queue.claim(["default"])
        async with connection.transaction():
            view = queue.within(connection)
            await view.complete(claimed.token, {"out": 1})
            children = await view.enqueue_many(
                [JobSpec(task="child", key="run-1:b"), JobSpec(task="child", key="run-1:c")]
            )
            # Not visible outside the transaction yet: nothing half-done is ever seen.
            assert await status_of(queue, parent.id) is JobStatus.RUNNING
            assert await queue.get(children[0].id) is None
        assert await status_of(queue, parent.id) is JobStatus.SUCCEEDED
        assert [await status_of(queue, child.id) for child in children] == [JobStatus.PENDING] * 2


async def test_a_failed_transaction_undoes_the_completion_too(postgres_dsn: str) -> None:
    async with (
        PostgresJobQueue.open(postgres_dsn) as queue,
        await psycopg.AsyncConnection.connect(postgres_dsn) as connection,
    ):
        await queue.enqueue(JobSpec(task="parent"))
        (claimed,) = await queue.claim(["default"])
        with pytest.raises(RuntimeError):
            async with connection.transaction():
                await queue.within(connection).complete(claimed.token)
                await queue.within(connection).enqueue(JobSpec(task="child"))
                raise RuntimeError("crash before commit")
        assert await status_of(queue, claimed.id) is JobStatus.RUNNING
        assert len(await queue.list_jobs()) == 1
        await queue.complete(claimed.token)  # the attempt still holds its job


async def test_workers_on_separate_pools_run_each_job_exactly_once(postgres_dsn: str) -> None:
    runs: Counter[int] = Counter()

    async def count(job: Job, context: JobContext) -> JsonObject | None:
        runs[job.id] += 1
        await asyncio.sleep(0)
        return None

    options = WorkerOptions(batch_size=50, poll_interval_s=0.05)
    async with (
        PostgresJobQueue.open(postgres_dsn) as first,
        PostgresJobQueue.open(postgres_dsn) as second,
    ):
        jobs = await first.enqueue_many([JobSpec(task="t") for _ in range(1000)])
        async with (
            Worker(first, count, concurrency=40, options=options),
            Worker(second, count, concurrency=40, options=options),
        ):
            await eventually(lambda: asyncio.sleep(0, len(runs)), lambda n: n == len(jobs))
        succeeded = await first.list_jobs(status=JobStatus.SUCCEEDED, limit=2000)
    assert set(runs) == {job.id for job in jobs} and set(runs.values()) == {1}
    assert len(succeeded) == len(jobs)


async def test_an_enqueue_on_another_connection_wakes_an_idle_worker(postgres_dsn: str) -> None:
    async def noop(job: Job, context: JobContext) -> JsonObject | None:
        return None

    async with (
        PostgresJobQueue.open(postgres_dsn) as worker_side,
        PostgresJobQueue.open(postgres_dsn) as producer_side,
    ):
        # Polling every 60 s cannot explain a pickup within the deadline: NOTIFY did it.
        async with Worker(worker_side, noop, options=WorkerOptions(poll_interval_s=60.0)):
            await asyncio.sleep(0.2)
            job = await producer_side.enqueue(JobSpec(task="t"))
            await eventually(
                lambda: status_of(worker_side, job.id),
                lambda status: status is JobStatus.SUCCEEDED,
                within_s=5,
            )


async def test_a_worker_that_loses_its_listen_connection_still_polls(postgres_dsn: str) -> None:
    async def noop(job: Job, context: JobContext) -> JsonObject | None:
        return None

    async with (
        PostgresJobQueue.open(postgres_dsn) as queue,
        await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as admin,
    ):
        async with Worker(queue, noop, options=WorkerOptions(poll_interval_s=0.1)):
            await asyncio.sleep(0.2)  # the worker is listening by now
            cursor = await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND query LIKE 'LISTEN%%'"
            )
            assert await cursor.fetchall() == [(True,)]
            job = await queue.enqueue(JobSpec(task="t"))
            await eventually(
                lambda: status_of(queue, job.id), lambda status: status is JobStatus.SUCCEEDED
            )


async def test_the_claim_walks_the_partial_index_of_runnable_jobs(postgres_dsn: str) -> None:
    async with (
        PostgresJobQueue.open(postgres_dsn) as queue,
        await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as connection,
    ):
        await queue.enqueue_many([JobSpec(task="t", queue=f"q{n % 20}") for n in range(5000)])
        await connection.execute("ANALYZE graphmesh_jobs")
        params = {
            "queue": "q1",
            "queues": ["q1", "q2"],
            "limit": 10,
            "lease_s": 30.0,
            "commit": "off",
            "session": 1,
        }
        for query in ("claim_jobs", "claim_jobs_of_queues"):
            sql = POSTGRES_QUERIES[query]
            assert "FOR UPDATE SKIP LOCKED" in sql
            cursor = await connection.execute("EXPLAIN " + sql, params)
            plan = "\n".join(row[0] for row in await cursor.fetchall())
            assert "graphmesh_jobs_runnable_idx" in plan, plan
            assert "Seq Scan on graphmesh_jobs" not in plan, plan


async def test_a_claim_waits_for_no_wal_flush_only_in_a_transaction_of_its_own(
    postgres_dsn: str,
) -> None:
    async with (
        PostgresJobQueue.open(postgres_dsn) as queue,
        await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as connection,
    ):
        await queue.enqueue_many([JobSpec(task="t") for _ in range(2)])
        before = await synchronous_commit(connection)
        async with connection.transaction():
            assert len(await queue.within(connection).claim(["default"])) == 1
            assert await synchronous_commit(connection) == before  # the caller's, untouched
        async with connection.transaction():
            params = {
                "queue": "default",
                "limit": 1,
                "lease_s": 30.0,
                "commit": "off",
                "session": None,
            }
            cursor = await connection.execute(POSTGRES_QUERIES["claim_jobs"], params)
            assert len(await cursor.fetchall()) == 1
            assert await synchronous_commit(connection) == "off"  # what a claim commits with
        assert await synchronous_commit(connection) == before  # for its transaction only


async def synchronous_commit(connection: psycopg.AsyncConnection[TupleRow]) -> str:
    cursor = await connection.execute("SHOW synchronous_commit")
    row = await cursor.fetchone()
    assert row is not None
    return str(row[0])
