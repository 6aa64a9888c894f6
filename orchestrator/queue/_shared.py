"""Plumbing the queue backends share: single operations built on the batch ones, argument
checks, and the in-process wakeups of the memory and SQLite backends."""

from __future__ import annotations

import asyncio
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager

from graphmesh.orchestrator.queue.base import (
    AttemptToken,
    Completion,
    Job,
    JobSpec,
    JobStatus,
    JsonObject,
    LeaseState,
)
from graphmesh.orchestrator.queue.errors import StaleAttemptError
from graphmesh.orchestrator.wakeup import LocalWakeup

DEFAULT_MAINTENANCE_INTERVAL_S = 1.0
log = logging.getLogger(__name__)


class BatchQueue(ABC):
    """The single-item operations of :class:`~graphmesh.orchestrator.queue.base.JobQueue`,
    defined once on top of each backend's batch operations."""

    @abstractmethod
    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Job]: ...

    @abstractmethod
    async def heartbeat_many(
        self, tokens: Sequence[AttemptToken], *, lease_s: float
    ) -> dict[AttemptToken, LeaseState]: ...

    @abstractmethod
    async def complete_many(self, completions: Sequence[Completion]) -> list[AttemptToken]: ...

    async def enqueue(self, spec: JobSpec) -> Job:
        """Add one job, or return the job that already holds ``spec.key``."""
        return (await self.enqueue_many([spec]))[0]

    async def heartbeat(self, token: AttemptToken, *, lease_s: float) -> LeaseState:
        """Extend one attempt's lease; raises ``StaleAttemptError`` if it lost the job."""
        states = await self.heartbeat_many([token], lease_s=lease_s)
        if token not in states:
            raise StaleAttemptError(token.job_id, token.attempt)
        return states[token]

    async def complete(self, token: AttemptToken, result: JsonObject | None = None) -> None:
        """End one attempt as SUCCEEDED; raises ``StaleAttemptError`` if it lost the job."""
        if await self.complete_many([Completion(token=token, result=result)]):
            raise StaleAttemptError(token.job_id, token.attempt)


def check_claim(queues: Sequence[str], limit: int, lease_s: float) -> list[str]:
    """The queue names as a list, after checking the claim's arguments."""
    if isinstance(queues, str):
        raise TypeError("queues must be a sequence of queue names, not one string")
    if not queues:
        raise ValueError("queues must name at least one queue")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")
    check_lease(lease_s)
    return list(queues)


def check_lease(lease_s: float) -> None:
    """Refuse a lease that is not a positive, finite number of seconds."""
    if not (lease_s > 0 and math.isfinite(lease_s)):
        raise ValueError(f"lease_s must be positive and finite, got {lease_s!r}")


def check_started(specs: Sequence[JobSpec], lease_s: float) -> None:
    """Refuse what ``enqueue_started`` cannot do: a job started now cannot wait for a
    ``run_at``."""
    check_lease(lease_s)
    for spec in specs:
        if spec.run_at is not None:
            raise ValueError(
                f"job {spec.key or spec.task!r}: a job started at enqueue cannot have a run_at"
            )


def started_in_spec_order(specs: Sequence[JobSpec], inserted: list[Job]) -> list[Job | None]:
    """The job started for each spec, ``None`` where its key was held (by another job, or
    by an earlier spec of the same batch: each job is handed out once) or where it was
    inserted pending behind a job of higher priority. Keyless jobs are matched in id order,
    which follows the batch order."""
    by_key = {job.key: job for job in inserted if job.key is not None}
    keyless = iter(sorted((job for job in inserted if job.key is None), key=lambda job: job.id))
    found = [next(keyless) if spec.key is None else by_key.pop(spec.key, None) for spec in specs]
    return started_only(found)


def started_only(jobs: Sequence[Job | None]) -> list[Job | None]:
    """``enqueue_started``'s answer from the jobs it inserted: each job that runs for the
    caller, ``None`` for one that waits as pending (or was never inserted)."""
    return [job if job is not None and job.status is JobStatus.RUNNING else None for job in jobs]


class MaintenanceClock:
    """Says when maintenance is due again, so claiming can run it every so often."""

    def __init__(self, interval_s: float) -> None:
        self._interval_s = interval_s
        self._next = 0.0
        self._running: asyncio.Task[object] | None = None

    def run_in_background(self, maintain: Callable[[], Awaitable[object]]) -> None:
        """Start ``maintain`` unless a run is still going; the claim that found it due
        does not wait for it (its jobs would be late by a few round trips)."""
        if self._running is None or self._running.done():
            self._running = asyncio.create_task(_logged(maintain), name="graphmesh-maintain")

    async def close(self) -> None:
        """Wait for a run still going."""
        if self._running is not None:
            await self._running

    def due(self) -> bool:
        """``True`` (and restart the interval) when the interval has passed."""
        now = asyncio.get_running_loop().time()
        if now < self._next:
            return False
        self._next = now + self._interval_s
        return True


async def _logged(maintain: Callable[[], Awaitable[object]]) -> object:
    try:
        return await maintain()
    except Exception:
        # The next due claim tries again; a failing database fails the claims too.
        log.exception("job queue maintenance failed")
        return None


class WakeupHub:
    """The wakeups subscribed in this process; enqueues notify those of their queues."""

    def __init__(self) -> None:
        self._wakeups: set[LocalWakeup] = set()

    def notify(self, queues: Iterable[str]) -> None:
        """Wake every subscriber of any of ``queues``."""
        names = set(queues)
        for wakeup in self._wakeups:
            if not wakeup.queues.isdisjoint(names):
                wakeup.notify()

    def notify_all(self) -> None:
        """Wake every subscriber (a spurious wakeup only costs an empty claim)."""
        for wakeup in self._wakeups:
            wakeup.notify()

    @asynccontextmanager
    async def subscribe(self, queues: Sequence[str]) -> AsyncIterator[LocalWakeup]:
        """A wakeup for ``queues`` for the duration of the block."""
        wakeup = LocalWakeup(queues)
        self._wakeups.add(wakeup)
        try:
            yield wakeup
        finally:
            self._wakeups.discard(wakeup)
