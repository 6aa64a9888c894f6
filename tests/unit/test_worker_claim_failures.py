"""A worker whose claims fail (its database restarting) keeps going, logging the first
failure of a series in full and the recovery once, not a traceback every half second."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

import pytest

from graphmesh.orchestrator.queue import JobSpec
from graphmesh.orchestrator.queue.base import Job
from graphmesh.orchestrator.queue.memory import MemoryJobQueue
from graphmesh.orchestrator.queue.worker import JobContext, Worker, WorkerOptions


class FlakyQueue(MemoryJobQueue):
    """Its first ``failures`` claims raise, as a queue whose database is down would."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def claim(self, queues: Sequence[str], **kwargs: Any) -> list[Job]:
        if self.failures:
            self.failures -= 1
            raise ConnectionError("the database is unavailable")
        return await super().claim(queues, **kwargs)


async def test_a_series_of_failed_claims_logs_once_and_recovers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue, done = FlakyQueue(failures=4), asyncio.Event()

    async def handler(job: Job, context: JobContext) -> None:
        done.set()

    options = WorkerOptions(retry_pause_s=0.01, poll_interval_s=0.01)
    await queue.enqueue(JobSpec(task="t"))
    with caplog.at_level(logging.INFO, logger="graphmesh.orchestrator.queue.worker"):
        async with Worker(queue, handler, options=options):
            async with asyncio.timeout(10):
                await done.wait()
    records = [r for r in caplog.records if "claiming jobs" in r.getMessage()]
    assert [(r.levelname, r.exc_info is not None) for r in records] == [
        ("ERROR", True),
        ("WARNING", False),
    ]
    assert "after 4 failed tries" in records[1].getMessage()
