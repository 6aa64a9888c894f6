"""Postgres limiters are global: separate processes sharing one database never exceed them
together, and the slots of a killed process come back when its leases run out.

Each test starts workers that run this file as a script (see :func:`run_worker`). A worker
opens its own pool, says ``ready``, waits for ``go`` on stdin so that all of them start
together, hammers the limiter and prints what it saw as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psycopg

from graphmesh.limits import ConcurrencyLimiter, RateLimiter
from graphmesh.limits.postgres import PostgresLimitStore

KEY = "openai"
RATE_LIMIT = 5
WINDOW = 0.3
HOLDERS = 3
CRASH_LEASE = 0.5
HAMMER_SECONDS = 1.5
TASKS_PER_WORKER = 4
DEADLINE = 60.0
EPSILON = 1e-6

PROBE_TABLE = """
    CREATE TABLE limiter_probe (holders integer NOT NULL);
    INSERT INTO limiter_probe VALUES (0)
"""
PROBE_ENTER = "UPDATE limiter_probe SET holders = holders + 1 RETURNING holders"
PROBE_LEAVE = "UPDATE limiter_probe SET holders = holders - 1"


@dataclass(frozen=True, kw_only=True)
class Job:
    """What one worker process does: ``rate``, ``concurrency`` or ``hold`` (take every
    slot, report, then wait to be killed)."""

    kind: str
    dsn: str


# The worker side ----------------------------------------------------------------------


def rate_limiter(store: PostgresLimitStore) -> RateLimiter:
    return RateLimiter(store, name="shared-rate", limit=RATE_LIMIT, window=WINDOW)


def concurrency_limiter(store: PostgresLimitStore, lease: float) -> ConcurrencyLimiter:
    return ConcurrencyLimiter(
        store, name="shared-concurrency", limit=HOLDERS, lease=lease, recheck_interval=0.02
    )


async def hammer_rate(store: PostgresLimitStore, _: Job) -> dict[str, Any]:
    limiter = rate_limiter(store)
    grants: list[float] = []

    async def task(until: float) -> None:
        while asyncio.get_running_loop().time() < until:
            grants.append((await limiter.acquire(KEY)).granted_at.timestamp())

    await run_tasks(task)
    return {"grants": grants}


async def hammer_concurrency(store: PostgresLimitStore, job: Job) -> dict[str, Any]:
    limiter = concurrency_limiter(store, lease=30.0)
    seen: list[int] = []
    async with await psycopg.AsyncConnection.connect(job.dsn, autocommit=True) as probe:

        async def task(until: float) -> None:
            while asyncio.get_running_loop().time() < until:
                async with limiter.slot(KEY):
                    seen.append((await (await probe.execute(PROBE_ENTER)).fetchall())[0][0])
                    await asyncio.sleep(0.01)
                    await probe.execute(PROBE_LEAVE)

        await run_tasks(task)
    return {"holders_seen": seen}


async def hold_every_slot(store: PostgresLimitStore, _: Job) -> dict[str, Any]:
    limiter = concurrency_limiter(store, lease=CRASH_LEASE)
    permits = [await limiter.acquire(KEY) for _ in range(HOLDERS)]
    # Renew nothing: after this process is killed, only lease expiry frees the slots.
    return {"expires": [permit.expires_at.timestamp() for permit in permits if permit.expires_at]}


async def run_tasks(task: Any) -> None:
    until = asyncio.get_running_loop().time() + HAMMER_SECONDS
    await asyncio.gather(*(task(until) for _ in range(TASKS_PER_WORKER)))


WORKERS = {"rate": hammer_rate, "concurrency": hammer_concurrency, "hold": hold_every_slot}


async def run_worker(job: Job) -> None:
    async with PostgresLimitStore.open(job.dsn) as store:
        print("ready", flush=True)
        await asyncio.to_thread(sys.stdin.readline)
        print(json.dumps(await WORKERS[job.kind](store, job)), flush=True)
        if job.kind == "hold":
            await asyncio.sleep(DEADLINE)  # until killed


# The test side ------------------------------------------------------------------------


async def start_worker(job: Job) -> asyncio.subprocess.Process:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(Path(__file__)),
        json.dumps(asdict(job)),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert await process.stdout.readline() == b"ready\n", "the worker failed to start"
    return process


async def run_together(jobs: Sequence[Job]) -> list[dict[str, Any]]:
    """Start every worker, let them go at once, and collect their reports."""
    async with asyncio.timeout(DEADLINE):
        processes = [await start_worker(job) for job in jobs]
        for process in processes:
            assert process.stdin is not None
            process.stdin.write(b"go\n")
            await process.stdin.drain()
        outputs = await asyncio.gather(*(process.communicate() for process in processes))
    assert all(process.returncode == 0 for process in processes)
    return [json.loads(stdout) for stdout, _ in outputs]


def most_in_any_window(times: Sequence[float], window: float) -> int:
    """The most grants inside one window ``[t, t + window)`` starting at any grant."""
    ordered = sorted(times)
    return max(sum(1 for u in ordered if t <= u < t + window - EPSILON) for t in ordered)


async def test_two_processes_never_exceed_the_rate_together(postgres_dsn: str) -> None:
    job = Job(kind="rate", dsn=postgres_dsn)
    reports = await run_together([job, job])
    grants = [report["grants"] for report in reports]
    assert all(len(mine) > 0 for mine in grants), "both processes must get grants"
    every = [time for mine in grants for time in mine]
    assert most_in_any_window(every, WINDOW) == RATE_LIMIT
    assert len(every) >= 2 * RATE_LIMIT  # waiters do get the later windows' slots


async def test_two_processes_never_exceed_the_concurrency_together(postgres_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_dsn, autocommit=True) as db:
        await db.execute(PROBE_TABLE)
        job = Job(kind="concurrency", dsn=postgres_dsn)
        reports = await run_together([job, job])
        left = (await (await db.execute("SELECT holders FROM limiter_probe")).fetchall())[0][0]
    seen = [report["holders_seen"] for report in reports]
    assert all(len(mine) > 0 for mine in seen), "both processes must hold slots"
    assert max(max(mine) for mine in seen) <= HOLDERS
    assert left == 0


async def test_a_killed_process_frees_its_slots_when_the_leases_end(postgres_dsn: str) -> None:
    process = await start_worker(Job(kind="hold", dsn=postgres_dsn))
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(b"go\n")
    await process.stdin.drain()
    async with asyncio.timeout(DEADLINE):
        expires = json.loads(await process.stdout.readline())["expires"]
    process.kill()
    await process.wait()
    async with PostgresLimitStore.open(postgres_dsn) as store:
        limiter = concurrency_limiter(store, lease=CRASH_LEASE)
        async with asyncio.timeout(DEADLINE):
            permit = await limiter.acquire(KEY)
    # Every slot was the dead process's: the first one frees when its lease ends, not before.
    assert permit.granted_at.timestamp() >= min(expires) - EPSILON


async def test_clear_racing_takes_and_releases_never_deadlocks(postgres_dsn: str) -> None:
    async with (
        PostgresLimitStore.open(postgres_dsn) as first,
        PostgresLimitStore.open(postgres_dsn) as second,
    ):
        limiters = [concurrency_limiter(first, lease=0.05), concurrency_limiter(second, lease=0.05)]

        async def churn(index: int) -> int:
            limiter, rounds = limiters[index % 2], 0
            until = asyncio.get_running_loop().time() + 1.0
            while asyncio.get_running_loop().time() < until:
                if (decision := await limiter.try_acquire(KEY)).permit is not None:
                    await limiter.release(decision.permit)
                if index % 3 == 0:
                    await limiter.clear(KEY)
                rounds += 1
            return rounds

        async with asyncio.timeout(DEADLINE):
            rounds = await asyncio.gather(*(churn(index) for index in range(6)))
    assert all(count > 0 for count in rounds)


if __name__ == "__main__":
    asyncio.run(run_worker(Job(**json.loads(sys.argv[1]))))
