"""Throughput and latency of the Postgres job queue, against procrastinate on the same server.

- ``jobs_per_s``: no-op jobs burned down by one graphmesh ``Worker`` (jobs enqueued first,
  then timed from the worker's start until every job is acknowledged as SUCCEEDED).
- ``procrastinate_jobs_per_s``: the same for procrastinate's worker (``PsycopgConnector``,
  LISTEN/NOTIFY, jobs kept after completion), the better of concurrency 1 and 100.
- ``latency_p50_ms`` / ``latency_p99_ms``: enqueue-to-handler-start latency while a
  producer (its own process and pool) offers one job per millisecond to an idle worker.

Each side gets a database of its own, created and dropped here, on the server the test
suite finds (``tests/support/postgres.py``: ``GRAPHMESH_TEST_PG_DSN``, libpq ``PG*``
variables, 127.0.0.1:5432, or an embedded server). Prints one JSON line.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder comes first on sys.path, and its name would shadow
# the standard library's ``queue`` (which asyncio imports): drop the folder first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import asyncio
import json
import logging
import multiprocessing
import statistics
import time
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, TypeVar

import procrastinate
from support.postgres import PostgresServer, fresh_database, postgres_server

from graphmesh.orchestrator.queue import Job, JobSpec, JobStatus
from graphmesh.orchestrator.queue.postgres import PostgresJobQueue
from graphmesh.orchestrator.queue.worker import JobContext, Worker, WorkerOptions

T = TypeVar("T")
JOBS = 50_000
PROCRASTINATE_JOBS = 3_000
CONCURRENCY = 1_000
BATCH = 500
OFFERED_PER_S = 1_000
LATENCY_JOBS = 5_000
ENQUEUE_CHUNK = 5_000


async def graphmesh_burn_down(dsn: str) -> float:
    """Jobs per second for one worker draining ``JOBS`` pre-enqueued no-op jobs."""
    async with PostgresJobQueue.open(dsn, max_size=4) as queue:
        for start in range(0, JOBS, ENQUEUE_CHUNK):
            size = min(ENQUEUE_CHUNK, JOBS - start)
            await queue.enqueue_many([JobSpec(task="noop")] * size)
        handled = 0
        all_handled = asyncio.Event()

        async def noop(job: Job, context: JobContext) -> None:
            nonlocal handled
            handled += 1
            if handled == JOBS:
                all_handled.set()

        options = WorkerOptions(batch_size=BATCH, poll_interval_s=0.1)
        started = time.perf_counter()
        async with Worker(queue, noop, concurrency=CONCURRENCY, options=options):
            await all_handled.wait()
        elapsed = time.perf_counter() - started  # leaving the block flushes the last acks
        succeeded = await _count(queue, JobStatus.SUCCEEDED)
    if succeeded != JOBS:
        raise RuntimeError(f"graphmesh finished {succeeded} of {JOBS} jobs")
    return JOBS / elapsed


async def _count(queue: PostgresJobQueue, status: JobStatus) -> int:
    total, after = 0, 0
    while page := await queue.list_jobs(status=status, after_id=after, limit=10_000):
        total, after = total + len(page), page[-1].id
    return total


async def procrastinate_burn_down(dsn: str, concurrency: int) -> float:
    """Jobs per second for procrastinate's worker draining ``PROCRASTINATE_JOBS`` jobs."""
    connector = procrastinate.PsycopgConnector(conninfo=dsn, min_size=4, max_size=concurrency + 4)
    app = procrastinate.App(connector=connector)

    @app.task(name="noop")
    async def noop() -> None:
        return None

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        await noop.batch_defer_async(*({} for _ in range(PROCRASTINATE_JOBS)))
        started = time.perf_counter()
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )
        elapsed = time.perf_counter() - started
        rows = await connector.execute_query_all_async(
            "SELECT count(*) AS n FROM procrastinate_jobs WHERE status = 'succeeded'"
        )
    if rows[0]["n"] != PROCRASTINATE_JOBS:
        raise RuntimeError(f"procrastinate finished {rows[0]['n']} of {PROCRASTINATE_JOBS} jobs")
    return PROCRASTINATE_JOBS / elapsed


def produce(dsn: str, start_at: float) -> None:
    """The latency run's producer process: one enqueue per millisecond from ``start_at``."""
    asyncio.run(_produce(dsn, start_at))


async def _produce(dsn: str, start_at: float) -> None:
    async with PostgresJobQueue.open(dsn, max_size=8) as queue:
        pending: set[asyncio.Task[Job]] = set()
        for index in range(LATENCY_JOBS):
            delay = start_at + index / OFFERED_PER_S - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            spec = JobSpec(task="timed", payload={"sent": time.time()})
            # Fire and forget, so one slow insert does not hold back the offered rate.
            task = asyncio.create_task(queue.enqueue(spec))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)


async def latency(dsn: str) -> list[float]:
    """Enqueue-to-start latencies (ms) of ``LATENCY_JOBS`` jobs offered at 1,000/s."""
    async with PostgresJobQueue.open(dsn, max_size=4) as queue:
        latencies: list[float] = []
        all_started = asyncio.Event()

        async def timed(job: Job, context: JobContext) -> None:
            latencies.append((time.time() - job.payload["sent"]) * 1000)
            if len(latencies) == LATENCY_JOBS:
                all_started.set()

        options = WorkerOptions(batch_size=BATCH, poll_interval_s=1.0)
        async with Worker(queue, timed, concurrency=CONCURRENCY, options=options):
            start_at = time.time() + 1.0  # the worker is listening and idle by then
            producer = multiprocessing.get_context("spawn").Process(
                target=produce, args=(dsn, start_at)
            )
            producer.start()
            await all_started.wait()
            await asyncio.to_thread(producer.join)
    return latencies


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def on_fresh_database(server: PostgresServer, part: Callable[[str], Coroutine[Any, Any, T]]) -> T:
    """Run one part of the bench on a database of its own, dropped afterwards."""
    with fresh_database(server) as dsn:
        return asyncio.run(part(dsn))


def main(parts: list[str]) -> None:
    """Run the parts named on the command line (default: all) and print their figures."""
    # procrastinate warns that its App lives in __main__, which only matters to its CLI.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    wanted = set(parts) or {"throughput", "procrastinate", "latency"}
    figures: dict[str, Any] = {"bench": "queue"}
    with postgres_server() as server:
        # Latency first: the burn-downs leave the server checkpointing and vacuuming.
        if "latency" in wanted:
            latencies = on_fresh_database(server, latency)
            figures["latency_p50_ms"] = round(statistics.median(latencies), 2)
            figures["latency_p99_ms"] = round(percentile(latencies, 0.99), 2)
        if "throughput" in wanted:
            figures["jobs_per_s"] = round(on_fresh_database(server, graphmesh_burn_down))
        if "procrastinate" in wanted:
            # Its better of a sequential and a concurrent worker (it fetches one job a query).
            rates = {
                c: on_fresh_database(server, partial(procrastinate_burn_down, concurrency=c))
                for c in (1, 100)
            }
            best = max(rates, key=rates.__getitem__)
            figures["procrastinate_jobs_per_s"] = round(rates[best])
            figures["procrastinate_concurrency"] = best
    if "jobs_per_s" in figures and "procrastinate_jobs_per_s" in figures:
        figures["ratio"] = round(figures["jobs_per_s"] / figures["procrastinate_jobs_per_s"], 1)
    figures.update(jobs=JOBS, procrastinate_jobs=PROCRASTINATE_JOBS, offered_per_s=OFFERED_PER_S)
    print(json.dumps(figures))


if __name__ == "__main__":
    main(sys.argv[1:])
