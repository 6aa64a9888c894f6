"""The job queue interface and its value types.

A job is enqueued from a :class:`JobSpec`, claimed by a worker for one *attempt* under a
lease (``lease_until``) that heartbeats extend, and ends SUCCEEDED, DEAD_LETTER (failed for
good; ``history`` keeps every attempt's error) or CANCELLED. The attempt number is the
fencing token: every report about a claimed job names its :class:`AttemptToken`, and a
report from an attempt that no longer holds the job (it was rescued after its lease
expired, handed back, or the job ended) is rejected. An attempt whose lease ran out but
that nobody rescued yet still holds its job.

A worker claims under a :class:`WorkerSession` (``JobQueue.session``): when the session
ends with attempts still held (the worker's process died), those attempts are rescued at
the next maintenance, without waiting for their leases, which remain for what a session
cannot see (a worker cut off from the database).

Backends (memory, SQLite, Postgres) pass one contract suite,
``tests/contract/test_job_queue.py`` (and the worker's,
``tests/contract/test_queue_worker.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import cached_property
from typing import Any, Protocol

from graphmesh.orchestrator.wakeup import Wakeup as Wakeup

JsonObject = dict[str, Any]

DEFAULT_QUEUE = "default"
DEFAULT_LEASE_S = 30.0


class JobStatus(StrEnum):
    """Where a job is in its life; the last three are final."""

    PENDING = "pending"  # waiting for its run_at (first run or a retry's backoff)
    RUNNING = "running"  # claimed by an attempt holding a lease
    SUCCEEDED = "succeeded"
    DEAD_LETTER = "dead_letter"  # failed for good: permanent error, attempts or time exhausted
    CANCELLED = "cancelled"


FINISHED = frozenset({JobStatus.SUCCEEDED, JobStatus.DEAD_LETTER, JobStatus.CANCELLED})


class ErrorKind(StrEnum):
    """The kinds of :class:`JobError` the queue and worker record themselves."""

    ERROR = "error"  # the handler raised
    LEASE_EXPIRED = "lease_expired"  # the worker stopped heartbeating; the job was rescued
    WORKER_LOST = "worker_lost"  # the worker's session ended (its process died); rescued
    START_TO_CLOSE_TIMEOUT = "start_to_close_timeout"  # an attempt ran too long
    SCHEDULE_TO_START_TIMEOUT = "schedule_to_start_timeout"  # no attempt started in time
    CANCELLED = "cancelled"  # the handler stopped on a cancel request


@dataclass(frozen=True, kw_only=True)
class RetryPolicy:
    """Capped exponential backoff with jitter. ``max_attempts`` counts every attempt that
    failed, the first included (1 = never retry); attempts handed back by a shutting-down
    worker do not count. The n-th failure waits ``min(max_backoff_s, initial_backoff_s *
    backoff_multiplier ** (n - 1))``, less a random share of up to ``jitter`` of it, so
    jobs that failed together do not all come back in the same instant."""

    max_attempts: int = 5
    initial_backoff_s: float = 1.0
    backoff_multiplier: float = 2.0
    max_backoff_s: float = 300.0
    jitter: float = 0.2

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if not 0 <= self.initial_backoff_s <= self.max_backoff_s:
            raise ValueError("backoffs must satisfy 0 <= initial_backoff_s <= max_backoff_s")
        if self.backoff_multiplier < 1:
            raise ValueError(f"backoff_multiplier must be >= 1, got {self.backoff_multiplier}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be within [0, 1], got {self.jitter}")

    def backoff_s(self, failures: int, random: float) -> float:
        """The wait after the ``failures``-th failure; ``random`` is uniform in [0, 1)."""
        exponent = max(failures - 1, 0)
        # Past the cap the power only grows; stop computing it before it overflows.
        growth = self.backoff_multiplier**exponent if exponent < 1024 else math.inf
        capped = min(self.max_backoff_s, self.initial_backoff_s * growth)
        return capped * (1.0 - self.jitter * random)


@dataclass(frozen=True, kw_only=True)
class JobError:
    """Why one attempt failed. ``retry_after_s``, when the failing service named a time to
    come back, replaces the policy's backoff for the next attempt."""

    message: str
    kind: str = ErrorKind.ERROR
    retryable: bool = True
    retry_after_s: float | None = None


@dataclass(frozen=True, kw_only=True)
class FailedAttempt:
    """One entry of a job's history: attempt ``attempt`` ended with ``error``.
    ``started_at`` is ``None`` for a job that never started (schedule-to-start timeout)."""

    attempt: int
    started_at: datetime | None
    ended_at: datetime
    error: JobError


@dataclass(frozen=True, kw_only=True)
class JobSpec:
    """What to run. ``key`` is an idempotency key: enqueueing a spec whose key an existing
    job holds returns that job instead. Higher ``priority`` runs first; ``run_at`` delays
    the first attempt. ``schedule_to_start_timeout_s`` dead-letters a job that waits longer
    than that past its ``run_at`` (each retry's ``run_at`` too); ``start_to_close_timeout_s``
    bounds one attempt, whatever its heartbeats."""

    task: str
    payload: JsonObject = field(default_factory=dict)
    queue: str = DEFAULT_QUEUE
    priority: int = 0
    run_at: datetime | None = None
    key: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    schedule_to_start_timeout_s: float | None = None
    start_to_close_timeout_s: float | None = None
    traceparent: str | None = None

    def __post_init__(self) -> None:
        for name in ("task", "queue"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        if not isinstance(self.payload, dict):
            raise TypeError(f"payload must be a dict, got {type(self.payload).__name__}")
        if self.key is not None and not self.key:
            raise ValueError("key must be a non-empty string or None")
        if self.run_at is not None and self.run_at.tzinfo is None:
            raise ValueError("run_at must be timezone-aware")
        for name in ("schedule_to_start_timeout_s", "start_to_close_timeout_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be positive, got {value!r}")


@dataclass(frozen=True, kw_only=True)
class AttemptToken:
    """Names one attempt of one job: the fencing token every acknowledgement carries."""

    job_id: int
    attempt: int


@dataclass(frozen=True, kw_only=True)
class Job:
    """A snapshot of one job. ``attempt`` counts the attempts started (0 before the first
    claim); ``progress`` is a percentage; ``result`` is the handler's output once done."""

    id: int
    task: str
    payload: JsonObject
    queue: str
    priority: int
    status: JobStatus
    key: str | None
    retry: RetryPolicy
    run_at: datetime
    created_at: datetime
    attempt: int
    started_at: datetime | None
    lease_until: datetime | None
    finished_at: datetime | None
    cancel_requested: bool
    progress: float
    result: JsonObject | None
    history: tuple[FailedAttempt, ...]
    schedule_to_start_timeout_s: float | None
    start_to_close_timeout_s: float | None
    traceparent: str | None

    @cached_property
    def token(self) -> AttemptToken:
        """The fencing token of this snapshot's attempt."""
        return AttemptToken(job_id=self.id, attempt=self.attempt)


@dataclass(frozen=True, kw_only=True)
class Completion:
    """A successful attempt and its result, for :meth:`JobQueue.complete_many`."""

    token: AttemptToken
    result: JsonObject | None = None


@dataclass(frozen=True, kw_only=True)
class LeaseState:
    """What a heartbeat learns: the new lease end and whether a cancel was requested."""

    token: AttemptToken
    lease_until: datetime
    cancel_requested: bool


@dataclass(frozen=True, kw_only=True)
class WorkerSession:
    """A worker's presence on the queue, from :meth:`JobQueue.session`. Attempts claimed
    (or started at enqueue) under it are rescued as soon as it ends while they are still
    running: the worker died, or left without handing them back."""

    id: int


@dataclass(frozen=True, kw_only=True)
class MaintenanceReport:
    """What :meth:`JobQueue.maintain` did: attempts rescued from expired leases
    (``rescued``) and from ended sessions (``orphaned``), and jobs dead-lettered for never
    starting in time (``expired``)."""

    rescued: int = 0
    expired: int = 0
    orphaned: int = 0


@dataclass(frozen=True, kw_only=True)
class QueueStats:
    """One queue's jobs right now: ``runnable`` (pending and due), ``scheduled`` (pending,
    due later: delayed jobs and retries in their backoff), ``retrying`` (pending after a
    failed attempt), ``running``, ``dead_letter``, and how long the oldest runnable job has
    been due (``oldest_runnable_s``, 0 when none is)."""

    queue: str
    runnable: int = 0
    scheduled: int = 0
    retrying: int = 0
    running: int = 0
    dead_letter: int = 0
    oldest_runnable_s: float = 0.0


def queue_stats(row: Sequence[Any]) -> QueueStats:
    """:class:`QueueStats` from ``(queue, runnable, scheduled, retrying, running,
    dead_letter, oldest_runnable_s)``, as every backend computes them."""
    queue, runnable, scheduled, retrying, running, dead, oldest = row
    return QueueStats(
        queue=str(queue),
        runnable=int(runnable or 0),
        scheduled=int(scheduled or 0),
        retrying=int(retrying or 0),
        running=int(running or 0),
        dead_letter=int(dead or 0),
        oldest_runnable_s=max(0.0, float(oldest or 0.0)),
    )


class JobQueue(Protocol):
    """A durable job queue. Fenced operations take an :class:`AttemptToken`; the single
    ones raise :class:`~graphmesh.orchestrator.queue.errors.StaleAttemptError` when the
    attempt no longer holds the job, the batch ones return the rejected tokens."""

    async def enqueue(self, spec: JobSpec) -> Job:
        """Add one job, or return the job that already holds ``spec.key``."""
        ...

    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Job]:
        """:meth:`enqueue` for many specs at once; results in the order given."""
        ...

    def session(self) -> AbstractAsyncContextManager[WorkerSession]:
        """A :class:`WorkerSession` for a worker's claims, open for the block's duration.
        Postgres sees a session end when its connection does, so a killed process's
        attempts are rescued within seconds; SQLite, when its process is gone; memory,
        when the block ends."""
        ...

    async def enqueue_started(
        self,
        specs: Sequence[JobSpec],
        *,
        lease_s: float = DEFAULT_LEASE_S,
        session: WorkerSession | None = None,
    ) -> list[Job | None]:
        """Add jobs and start their first attempts for the caller at once (eager dispatch:
        a worker that makes work and has free slots runs it without a claim). Each comes
        back running, attempt 1, leased for ``lease_s`` (capped by its start-to-close
        timeout) under ``session``: heartbeat, complete or fail it like a claimed attempt;
        if the caller dies, its session ends (or the lease runs out) and the job is
        rescued. ``None`` where the key is held
        by another job (left as it is) or by an earlier spec of the batch, and where a
        due pending job of higher priority waits in the spec's queue: priorities hold, so
        that job is added pending instead, for a claim, and workers are woken for it. No
        worker is woken for started jobs; a spec with a ``run_at`` is refused."""
        ...

    async def claim(
        self,
        queues: Sequence[str],
        *,
        limit: int = 1,
        lease_s: float = DEFAULT_LEASE_S,
        session: WorkerSession | None = None,
    ) -> list[Job]:
        """Start an attempt of up to ``limit`` due jobs of ``queues``, highest priority
        first, then oldest ``run_at``; each is leased for ``lease_s`` (capped by its
        start-to-close timeout) and held by ``session`` (``None``: by the lease alone).
        Also runs (or, on Postgres, starts) :meth:`maintain`
        when its interval has passed, so expired leases are rescued without a job of
        their own."""
        ...

    async def heartbeat(self, token: AttemptToken, *, lease_s: float) -> LeaseState:
        """Extend the lease to ``lease_s`` from now (never past the start-to-close end)."""
        ...

    async def heartbeat_many(
        self, tokens: Sequence[AttemptToken], *, lease_s: float
    ) -> dict[AttemptToken, LeaseState]:
        """:meth:`heartbeat` for many attempts; stale tokens are missing from the result."""
        ...

    async def report_progress(self, token: AttemptToken, percent: float) -> None:
        """Persist the attempt's progress, clamped to 0-100."""
        ...

    async def complete(self, token: AttemptToken, result: JsonObject | None = None) -> None:
        """End the attempt, and the job, as SUCCEEDED with ``result``."""
        ...

    async def complete_many(self, completions: Sequence[Completion]) -> list[AttemptToken]:
        """:meth:`complete` for many attempts in one write; returns the rejected tokens."""
        ...

    async def fail(self, token: AttemptToken, error: JobError) -> Job:
        """End the attempt with ``error``: the job is retried after a backoff (PENDING),
        dead-lettered (permanent error, attempts exhausted) or, when a cancel was
        requested, CANCELLED. Returns the job as it now is."""
        ...

    async def release(
        self, tokens: Sequence[AttemptToken], *, delay_s: float = 0.0
    ) -> list[AttemptToken]:
        """Hand attempts back unfinished (graceful shutdown; a handler told "not now", see
        :class:`DeferJobError`): the jobs are due again after ``delay_s`` and the attempts
        do not count as failures. Returns the rejected tokens."""
        ...

    async def cancel(self, job_id: int) -> Job:
        """Cancel: a pending job is CANCELLED at once; a running one gets
        ``cancel_requested``, which its worker sees on the next heartbeat (its attempt
        then fails as CANCELLED, or, if it completes first, the job stays SUCCEEDED); a
        finished one is left as it is. Raises ``JobNotFoundError`` for an unknown id."""
        ...

    async def get(self, job_id: int) -> Job | None:
        """The job with this id, or ``None``."""
        ...

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs by ascending id after ``after_id`` (a page token), optionally filtered."""
        ...

    async def stats(self) -> list[QueueStats]:
        """Every queue that has unfinished or dead-lettered jobs, sorted by name."""
        ...

    async def maintain(self) -> MaintenanceReport:
        """Rescue attempts whose lease expired or whose session ended (the job is
        retried, or dead-lettered when its attempts are used up, or cancelled when a
        cancel was requested) and dead-letter jobs past their schedule-to-start
        deadline."""
        ...

    async def delete_finished(self, older_than_s: float) -> int:
        """TTL cleanup: delete jobs that finished more than ``older_than_s`` ago."""
        ...

    def wakeups(self, queues: Sequence[str]) -> AbstractAsyncContextManager[Wakeup]:
        """A :class:`Wakeup` notified when jobs are enqueued on ``queues``."""
        ...

    async def close(self) -> None:
        """Release what the queue holds (connections, listeners)."""
        ...


def utc_now() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


def from_epoch(seconds: float) -> datetime:
    """A UTC datetime from Unix seconds."""
    return datetime.fromtimestamp(seconds, UTC)


def clamp_progress(percent: float) -> float:
    """``percent`` clamped to 0-100; NaN is refused rather than stored."""
    if math.isnan(percent):
        raise ValueError("progress must be a number, got NaN")
    return min(100.0, max(0.0, float(percent)))
