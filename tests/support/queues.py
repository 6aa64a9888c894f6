"""Opens a job queue of each backend for the contract suite (``tests/contract/test_job_queue.py``).

Maintenance (lease rescue, schedule-to-start expiry) runs inside ``claim`` at most every
``MAINTENANCE_S``, short here so the suite can use leases of a fraction of a second.
Jitter draws come from ``random`` (default: always 0.5), so backoffs are exact.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

import pytest

from graphmesh.orchestrator.queue import JobQueue, MemoryJobQueue
from graphmesh.orchestrator.queue.postgres import PostgresJobQueue
from graphmesh.orchestrator.queue.sqlite import SqliteJobQueue

T = TypeVar("T")
QUEUE_BACKENDS = ("memory", "sqlite", "postgres")
MAINTENANCE_S = 0.05


def half() -> float:
    return 0.5


@asynccontextmanager
async def open_queue(
    name: str, request: pytest.FixtureRequest, random: Callable[[], float] = half
) -> AsyncIterator[JobQueue]:
    """A fresh, empty queue of backend ``name``; its location comes from the shared fixtures."""
    match name:
        case "memory":
            async with MemoryJobQueue.open(
                random=random, maintenance_interval_s=MAINTENANCE_S
            ) as memory:
                yield memory
        case "sqlite":
            path: Path = request.getfixturevalue("sqlite_path")
            async with SqliteJobQueue.open(
                path, random=random, maintenance_interval_s=MAINTENANCE_S
            ) as sqlite:
                yield sqlite
        case "postgres":
            dsn: str = request.getfixturevalue("postgres_dsn")
            async with PostgresJobQueue.open(
                dsn, random=random, maintenance_interval_s=MAINTENANCE_S
            ) as postgres:
                yield postgres
        case _:
            raise ValueError(f"unknown queue backend {name!r}")


async def eventually(
    probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], *, within_s: float = 10.0
) -> T:
    """Poll ``probe`` until ``accept`` takes its value; fail after ``within_s`` seconds."""
    deadline = time.monotonic() + within_s
    while True:
        value = await probe()
        if accept(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {within_s} s; last value {value!r}")
        await asyncio.sleep(0.02)
