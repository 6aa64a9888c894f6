"""The in-memory job queue: the reference behaviour, for unit tests and previews.

Payloads and results are kept as encoded JSON text, so the memory queue copies, normalises
and refuses values exactly as the database backends do. Nothing survives the process, so
a worker session ends only with its ``session()`` block: its attempts still running are
then rescued at the next maintenance, as a dead process's are on the databases.
"""

from __future__ import annotations

import random as _random
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Self

from graphmesh.orchestrator.queue._shared import (
    DEFAULT_MAINTENANCE_INTERVAL_S,
    BatchQueue,
    MaintenanceClock,
    WakeupHub,
    check_claim,
    check_lease,
    check_started,
)
from graphmesh.orchestrator.queue.base import (
    DEFAULT_LEASE_S,
    FINISHED,
    AttemptToken,
    Completion,
    FailedAttempt,
    Job,
    JobError,
    JobSpec,
    JobStatus,
    LeaseState,
    MaintenanceReport,
    QueueStats,
    Wakeup,
    WorkerSession,
    clamp_progress,
    from_epoch,
    queue_stats,
)
from graphmesh.orchestrator.queue.errors import JobNotFoundError, StaleAttemptError
from graphmesh.orchestrator.queue.retry import (
    Settlement,
    lease_lost_error,
    schedule_to_start_error,
    settle_failure,
    worker_lost_error,
)
from graphmesh.orchestrator.storage.codec import decode_json, encode_json


@dataclass(kw_only=True, eq=False)
class _Record:
    """A job's mutable state inside the memory queue (times are Unix seconds)."""

    id: int
    spec: JobSpec
    payload: str
    run_at: float
    created_at: float
    status: JobStatus = JobStatus.PENDING
    attempt: int = 0
    session_id: int | None = None
    started_at: float | None = None
    lease_until: float | None = None
    attempt_deadline: float | None = None
    finished_at: float | None = None
    cancel_requested: bool = False
    progress: float = 0.0
    result: str | None = None
    history: list[FailedAttempt] = field(default_factory=list)

    def start_deadline(self) -> float | None:
        timeout = self.spec.schedule_to_start_timeout_s
        return None if timeout is None else self.run_at + timeout

    def sort_key(self) -> tuple[int, float, int]:
        return (-self.spec.priority, self.run_at, self.id)


class MemoryJobQueue(BatchQueue):
    """A :class:`~graphmesh.orchestrator.queue.base.JobQueue` held in this process."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        maintenance_interval_s: float = DEFAULT_MAINTENANCE_INTERVAL_S,
    ) -> None:
        self._clock = clock
        self._random = random
        self._maintenance = MaintenanceClock(maintenance_interval_s)
        self._records: dict[int, _Record] = {}
        self._by_key: dict[str, _Record] = {}
        self._pending: dict[int, _Record] = {}
        self._running: dict[int, _Record] = {}
        self._hub = WakeupHub()
        self._next_id = 1
        self._sessions: set[int] = set()  # the live ones
        self._next_session = 1

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        *,
        random: Callable[[], float] = _random.random,
        maintenance_interval_s: float = DEFAULT_MAINTENANCE_INTERVAL_S,
    ) -> AsyncIterator[Self]:
        """Yield a fresh, empty queue (``open`` exists for symmetry with the others)."""
        queue = cls(random=random, maintenance_interval_s=maintenance_interval_s)
        try:
            yield queue
        finally:
            await queue.close()

    async def close(self) -> None:
        """Nothing to release; the jobs live as long as the object."""

    @asynccontextmanager
    async def session(self) -> AsyncIterator[WorkerSession]:
        """A worker session, live until the block ends."""
        session = WorkerSession(id=self._next_session)
        self._next_session += 1
        self._sessions.add(session.id)
        try:
            yield session
        finally:
            self._sessions.discard(session.id)

    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Add jobs (or find those holding their keys); results in the order given."""
        payloads = [encode_json(spec.payload) for spec in specs]  # refuse before any change
        records = [self._add(spec, payload) for spec, payload in zip(specs, payloads, strict=True)]
        self._hub.notify(spec.queue for spec in specs)
        return [self._snapshot(record) for record in records]

    async def enqueue_started(
        self,
        specs: Sequence[JobSpec],
        *,
        lease_s: float = DEFAULT_LEASE_S,
        session: WorkerSession | None = None,
    ) -> list[Job | None]:
        """Add jobs with their first attempt started for the caller; ``None`` where a key
        is held or where a due job of higher priority waits in the queue (the job is then
        left pending and workers are woken; see the protocol)."""
        check_started(specs, lease_s)
        payloads = [encode_json(spec.payload) for spec in specs]  # refuse before any change
        now = self._clock()
        started: list[Job | None] = []
        for spec, payload in zip(specs, payloads, strict=True):
            if spec.key is not None and spec.key in self._by_key:
                started.append(None)
            elif self._outranked(spec, now):
                self._add(spec, payload)
                self._hub.notify([spec.queue])
                started.append(None)
            else:
                started.append(self._start(self._add(spec, payload), now, lease_s, session))
        return started

    def _outranked(self, spec: JobSpec, now: float) -> bool:
        """Whether a due pending job of ``spec``'s queue has a higher priority."""
        return any(
            record.spec.queue == spec.queue
            and record.spec.priority > spec.priority
            and self._due(record, now)
            for record in self._pending.values()
        )

    def _add(self, spec: JobSpec, payload: str) -> _Record:
        if spec.key is not None and spec.key in self._by_key:
            return self._by_key[spec.key]
        now = self._clock()
        run_at = now if spec.run_at is None else spec.run_at.timestamp()
        record = _Record(
            id=self._next_id, spec=spec, payload=payload, run_at=run_at, created_at=now
        )
        self._next_id += 1
        self._records[record.id] = record
        self._pending[record.id] = record
        if spec.key is not None:
            self._by_key[spec.key] = record
        return record

    async def claim(
        self,
        queues: Sequence[str],
        *,
        limit: int = 1,
        lease_s: float = DEFAULT_LEASE_S,
        session: WorkerSession | None = None,
    ) -> list[Job]:
        """Start attempts of up to ``limit`` due jobs of ``queues`` (see the protocol)."""
        names = set(check_claim(queues, limit, lease_s))
        if self._maintenance.due():
            await self.maintain()
        now = self._clock()
        due = [r for r in self._pending.values() if r.spec.queue in names and self._due(r, now)]
        due.sort(key=_Record.sort_key)
        return [self._start(record, now, lease_s, session) for record in due[:limit]]

    @staticmethod
    def _due(record: _Record, now: float) -> bool:
        deadline = record.start_deadline()
        return record.run_at <= now and (deadline is None or deadline > now)

    def _start(
        self, record: _Record, now: float, lease_s: float, session: WorkerSession | None
    ) -> Job:
        timeout = record.spec.start_to_close_timeout_s
        record.attempt += 1
        record.session_id = None if session is None else session.id
        record.started_at = now
        record.attempt_deadline = None if timeout is None else now + timeout
        record.lease_until = self._lease_end(record, now, lease_s)
        record.progress = 0.0
        self._move(record, JobStatus.RUNNING)
        return self._snapshot(record)

    @staticmethod
    def _lease_end(record: _Record, now: float, lease_s: float) -> float:
        deadline = record.attempt_deadline
        return now + lease_s if deadline is None else min(now + lease_s, deadline)

    def _move(self, record: _Record, status: JobStatus) -> None:
        self._pending.pop(record.id, None)
        self._running.pop(record.id, None)
        record.status = status
        if status is JobStatus.PENDING:
            self._pending[record.id] = record
        elif status is JobStatus.RUNNING:
            self._running[record.id] = record
        else:
            record.finished_at = self._clock()
            record.lease_until = None

    def _holding(self, token: AttemptToken) -> _Record | None:
        record = self._running.get(token.job_id)
        return record if record is not None and record.attempt == token.attempt else None

    def _held(self, token: AttemptToken) -> _Record:
        record = self._holding(token)
        if record is None:
            raise StaleAttemptError(token.job_id, token.attempt)
        return record

    async def heartbeat_many(
        self, tokens: Sequence[AttemptToken], *, lease_s: float
    ) -> dict[AttemptToken, LeaseState]:
        """Extend the leases of the attempts that still hold their jobs."""
        check_lease(lease_s)
        now = self._clock()
        states = {}
        for token in tokens:
            record = self._holding(token)
            if record is not None:
                record.lease_until = self._lease_end(record, now, lease_s)
                states[token] = LeaseState(
                    token=token,
                    lease_until=from_epoch(record.lease_until),
                    cancel_requested=record.cancel_requested,
                )
        return states

    async def report_progress(self, token: AttemptToken, percent: float) -> None:
        """Persist the attempt's progress, clamped to 0-100."""
        self._held(token).progress = clamp_progress(percent)

    async def complete_many(self, completions: Sequence[Completion]) -> list[AttemptToken]:
        """End attempts as SUCCEEDED; returns the rejected tokens."""
        results = [None if c.result is None else encode_json(c.result) for c in completions]
        rejected = []
        for completion, result in zip(completions, results, strict=True):
            record = self._holding(completion.token)
            if record is None:
                rejected.append(completion.token)
                continue
            record.result = result
            record.progress = 100.0
            self._move(record, JobStatus.SUCCEEDED)
        return rejected

    async def fail(self, token: AttemptToken, error: JobError) -> Job:
        """End the attempt with ``error``; retry, dead-letter or cancel (see the protocol)."""
        record = self._held(token)
        self._settle(record, self._settlement(record, error))
        return self._snapshot(record)

    def _settlement(self, record: _Record, error: JobError) -> Settlement:
        return settle_failure(
            retry=record.spec.retry,
            failures_before=len(record.history),
            cancel_requested=record.cancel_requested,
            error=error,
            random=self._random,
        )

    def _settle(self, record: _Record, settlement: Settlement) -> None:
        now = self._clock()
        failed = FailedAttempt(
            attempt=record.attempt,
            started_at=None if record.started_at is None else from_epoch(record.started_at),
            ended_at=from_epoch(now),
            error=settlement.error,
        )
        record.history.append(failed)
        self._end_attempt(record, settlement.status, now + settlement.delay_s)

    def _end_attempt(self, record: _Record, status: JobStatus, run_at: float) -> None:
        record.lease_until = None
        record.attempt_deadline = None
        if status is JobStatus.PENDING:
            record.run_at = run_at
        self._move(record, status)
        if status is JobStatus.PENDING:
            self._hub.notify([record.spec.queue])

    async def release(
        self, tokens: Sequence[AttemptToken], *, delay_s: float = 0.0
    ) -> list[AttemptToken]:
        """Hand attempts back; their jobs are due again after ``delay_s``."""
        rejected = []
        for token in tokens:
            record = self._holding(token)
            if record is None:
                rejected.append(token)
            else:
                self._end_attempt(record, JobStatus.PENDING, self._clock() + max(delay_s, 0.0))
        return rejected

    async def cancel(self, job_id: int) -> Job:
        """Cancel a pending job at once, or flag a running one (see the protocol)."""
        record = self._records.get(job_id)
        if record is None:
            raise JobNotFoundError(job_id)
        if record.status in (JobStatus.PENDING, JobStatus.RUNNING):
            record.cancel_requested = True
        if record.status is JobStatus.PENDING:
            self._move(record, JobStatus.CANCELLED)
        return self._snapshot(record)

    async def get(self, job_id: int) -> Job | None:
        """The job with this id, or ``None``."""
        record = self._records.get(job_id)
        return None if record is None else self._snapshot(record)

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs by ascending id after ``after_id``, optionally filtered."""
        chosen = []
        for record in sorted(self._records.values(), key=lambda r: r.id):
            if record.id <= after_id or (status is not None and record.status is not status):
                continue
            if queue is None or record.spec.queue == queue:
                chosen.append(record)
        return [self._snapshot(record) for record in chosen[:limit]]

    async def stats(self) -> list[QueueStats]:
        """Every queue with unfinished or dead-lettered jobs (see :class:`QueueStats`)."""
        now = self._clock()
        by_queue: dict[str, list[_Record]] = {}
        for record in self._records.values():
            if record.status not in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
                by_queue.setdefault(record.spec.queue, []).append(record)
        return [_stats(queue, records, now) for queue, records in sorted(by_queue.items())]

    async def maintain(self) -> MaintenanceReport:
        """Rescue expired leases and attempts of ended sessions, and dead-letter jobs that
        never started in time."""
        now = self._clock()
        expired = [r for r in self._running.values() if (r.lease_until or now) < now]
        for record in expired:
            late = record.attempt_deadline is not None and now >= record.attempt_deadline
            self._settle(
                record, self._settlement(record, lease_lost_error(past_start_to_close=late))
            )
        orphans = [r for r in self._running.values() if self._orphaned(r)]
        for record in orphans:
            self._settle(record, self._settlement(record, worker_lost_error()))
        unstarted = [r for r in self._pending.values() if self._missed_start(r, now)]
        for record in unstarted:
            error = schedule_to_start_error()
            record.history.append(
                FailedAttempt(
                    attempt=record.attempt, started_at=None, ended_at=from_epoch(now), error=error
                )
            )
            self._move(record, JobStatus.DEAD_LETTER)
        return MaintenanceReport(
            rescued=len(expired), expired=len(unstarted), orphaned=len(orphans)
        )

    def _orphaned(self, record: _Record) -> bool:
        return record.session_id is not None and record.session_id not in self._sessions

    @staticmethod
    def _missed_start(record: _Record, now: float) -> bool:
        deadline = record.start_deadline()
        return deadline is not None and deadline <= now

    async def delete_finished(self, older_than_s: float) -> int:
        """Delete jobs that finished more than ``older_than_s`` ago."""
        cutoff = self._clock() - older_than_s
        old = [
            r
            for r in self._records.values()
            if r.status in FINISHED and r.finished_at is not None and r.finished_at <= cutoff
        ]
        for record in old:
            del self._records[record.id]
            if record.spec.key is not None:
                self._by_key.pop(record.spec.key, None)
        return len(old)

    def wakeups(self, queues: Sequence[str]) -> AbstractAsyncContextManager[Wakeup]:
        """A wakeup notified when jobs are enqueued (or come back) on ``queues``."""
        return self._hub.subscribe(queues)

    def _snapshot(self, record: _Record) -> Job:
        spec = record.spec
        return Job(
            id=record.id,
            task=spec.task,
            payload=decode_json(record.payload),
            queue=spec.queue,
            priority=spec.priority,
            status=record.status,
            key=spec.key,
            retry=spec.retry,
            run_at=from_epoch(record.run_at),
            created_at=from_epoch(record.created_at),
            attempt=record.attempt,
            started_at=_time(record.started_at),
            lease_until=_time(record.lease_until),
            finished_at=_time(record.finished_at),
            cancel_requested=record.cancel_requested,
            progress=record.progress,
            result=None if record.result is None else decode_json(record.result),
            history=tuple(record.history),
            schedule_to_start_timeout_s=spec.schedule_to_start_timeout_s,
            start_to_close_timeout_s=spec.start_to_close_timeout_s,
            traceparent=spec.traceparent,
        )


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_epoch(seconds)


def _stats(queue: str, records: list[_Record], now: float) -> QueueStats:
    pending = [r for r in records if r.status == JobStatus.PENDING]
    due = [r.run_at for r in pending if r.run_at <= now]
    return queue_stats(
        (
            queue,
            len(due),
            len(pending) - len(due),
            sum(r.attempt > 0 for r in pending),
            sum(r.status == JobStatus.RUNNING for r in records),
            sum(r.status == JobStatus.DEAD_LETTER for r in records),
            now - min(due) if due else 0.0,
        )
    )
