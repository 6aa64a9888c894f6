"""The SQLite job queue's operations, synchronous, on one ``sqlite3`` connection.

:class:`SqliteQueueOps` runs each operation in its own ``BEGIN IMMEDIATE`` transaction,
or inside the caller's when one is open: that is how a caller makes a task's completion
and the enqueueing of its dependents one transaction (see ``SqliteJobQueue.within``).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from graphmesh.orchestrator.database.sql import SQLITE_QUERIES as QUERIES
from graphmesh.orchestrator.queue._shared import check_started
from graphmesh.orchestrator.queue.base import (
    AttemptToken,
    Completion,
    Job,
    JobError,
    JobSpec,
    JobStatus,
    LeaseState,
    MaintenanceReport,
    QueueStats,
    clamp_progress,
    from_epoch,
    queue_stats,
)
from graphmesh.orchestrator.queue.codec import (
    error_to_json,
    history_from_json,
    policy_from_json,
    policy_to_json,
)
from graphmesh.orchestrator.queue.errors import JobNotFoundError, StaleAttemptError
from graphmesh.orchestrator.queue.retry import (
    Settlement,
    lease_lost_error,
    schedule_to_start_error,
    settle_failure,
    worker_lost_error,
)
from graphmesh.orchestrator.queue.sessions import process_alive, this_process
from graphmesh.orchestrator.storage.codec import decode_json, encode_json

Row = tuple[Any, ...]
RESCUE_BATCH = 1000
_STATUSES = {status.value: status for status in JobStatus}


@contextmanager
def atomic(connection: sqlite3.Connection) -> Iterator[None]:
    """A write transaction of our own, or nothing when the caller already has one open."""
    if connection.in_transaction:
        yield
        return
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


class SqliteQueueOps:
    """The :class:`~graphmesh.orchestrator.queue.base.JobQueue` operations, synchronous."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        *,
        clock: Callable[[], float],
        random: Callable[[], float],
    ) -> None:
        self._db = connection
        self._clock = clock
        self._random = random

    def _rows(self, query: str, params: dict[str, Any]) -> list[Row]:
        return self._db.execute(QUERIES[query], params).fetchall()

    def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Add jobs (or find those holding their keys); results in the order given."""
        params = [self._enqueue_params(spec) for spec in specs]  # refuse before any write
        with atomic(self._db):
            return [self._enqueue(spec, values) for spec, values in zip(specs, params, strict=True)]

    def _enqueue_params(self, spec: JobSpec) -> dict[str, Any]:
        now = self._clock()
        return {
            "queue": spec.queue,
            "task": spec.task,
            "payload": encode_json(spec.payload),
            "priority": spec.priority,
            "key": spec.key,
            "retry": policy_to_json(spec.retry),
            "run_at": now if spec.run_at is None else spec.run_at.timestamp(),
            "now": now,
            "s2s": spec.schedule_to_start_timeout_s,
            "stc": spec.start_to_close_timeout_s,
            "traceparent": spec.traceparent,
        }

    def _enqueue(self, spec: JobSpec, params: dict[str, Any]) -> Job:
        rows = self._rows("enqueue_job", params)
        if not rows:
            rows = self._rows("job_by_key", {"key": spec.key})
        return job_from_row(rows[0])

    def enqueue_started(
        self, specs: Sequence[JobSpec], *, lease_s: float, session: int | None = None
    ) -> list[Job | None]:
        """Add jobs with their first attempt started for the caller, held by worker
        session ``session`` (see ``JobQueue.enqueue_started``). Returns each job as
        inserted: running, or pending when a due job of higher priority waits in its queue
        (the caller wakes workers and hands out only the running ones); ``None`` where a
        key is held."""
        check_started(specs, lease_s)
        extra = {"lease_s": lease_s, "session": session}
        params = [{**self._enqueue_params(spec), **extra} for spec in specs]
        with atomic(self._db):
            rows = [self._rows("enqueue_started_job", values) for values in params]
        return [job_from_row(found[0]) if found else None for found in rows]

    def claim(
        self, queues: Sequence[str], *, limit: int, lease_s: float, session: int | None = None
    ) -> list[Job]:
        """Start attempts of up to ``limit`` due jobs of ``queues`` in one statement, held
        by worker session ``session``."""
        params = {
            "queues": json.dumps(list(queues)),
            "limit": limit,
            "lease_s": lease_s,
            "session": session,
            "now": self._clock(),
        }
        with atomic(self._db):
            jobs = [job_from_row(row) for row in self._rows("claim_jobs", params)]
        jobs.sort(key=lambda job: (-job.priority, job.run_at, job.id))
        return jobs

    def heartbeat_many(
        self, tokens: Sequence[AttemptToken], *, lease_s: float
    ) -> dict[AttemptToken, LeaseState]:
        """Extend the leases of the attempts that still hold their jobs."""
        states = {}
        with atomic(self._db):
            for token in tokens:
                params = {**_token(token), "lease_s": lease_s, "now": self._clock()}
                for lease_until, cancel_requested in self._rows("heartbeat_job", params):
                    states[token] = LeaseState(
                        token=token,
                        lease_until=from_epoch(lease_until),
                        cancel_requested=bool(cancel_requested),
                    )
        return states

    def report_progress(self, token: AttemptToken, percent: float) -> None:
        """Persist the attempt's progress, clamped to 0-100."""
        params = {**_token(token), "progress": clamp_progress(percent)}
        with atomic(self._db):
            if self._db.execute(QUERIES["report_progress"], params).rowcount == 0:
                raise StaleAttemptError(token.job_id, token.attempt)

    def complete_many(self, completions: Sequence[Completion]) -> list[AttemptToken]:
        """End attempts as SUCCEEDED; returns the rejected tokens."""
        results = [None if c.result is None else encode_json(c.result) for c in completions]
        rejected = []
        with atomic(self._db):
            for completion, result in zip(completions, results, strict=True):
                params = {**_token(completion.token), "result": result, "now": self._clock()}
                if self._db.execute(QUERIES["complete_job"], params).rowcount == 0:
                    rejected.append(completion.token)
        return rejected

    def fail(self, token: AttemptToken, error: JobError) -> Job:
        """End the attempt with ``error``; retry, dead-letter or cancel."""
        with atomic(self._db):
            rows = self._rows("lock_attempt", _token(token))
            if not rows:
                raise StaleAttemptError(token.job_id, token.attempt)
            retry, failures, cancel_requested = rows[0]
            settlement = self._settlement(retry, failures, cancel_requested, error)
            job = self._settle(token, settlement)
        assert job is not None  # the attempt held the job inside this transaction
        return job

    def _settlement(
        self, retry: str, failures: int, cancel_requested: int, error: JobError
    ) -> Settlement:
        return settle_failure(
            retry=policy_from_json(retry),
            failures_before=failures,
            cancel_requested=bool(cancel_requested),
            error=error,
            random=self._random,
        )

    def _settle(
        self, token: AttemptToken, settlement: Settlement | None, *, release_delay_s: float = 0.0
    ) -> Job | None:
        """Write one settlement (``None``: hand the attempt back, due after
        ``release_delay_s``); ``None`` if stale."""
        params = {
            **_token(token),
            "status": JobStatus.PENDING.value if settlement is None else settlement.status.value,
            "delay_s": max(release_delay_s, 0.0) if settlement is None else settlement.delay_s,
            "error": None if settlement is None else encode_json(error_to_json(settlement.error)),
            "now": self._clock(),
        }
        rows = self._rows("settle_attempt", params)
        return job_from_row(rows[0]) if rows else None

    def release(self, tokens: Sequence[AttemptToken], *, delay_s: float) -> list[AttemptToken]:
        """Hand attempts back; their jobs are due again after ``delay_s``."""
        with atomic(self._db):
            return [
                token
                for token in tokens
                if self._settle(token, None, release_delay_s=delay_s) is None
            ]

    def cancel(self, job_id: int) -> Job:
        """Cancel a pending job at once, or flag a running one."""
        with atomic(self._db):
            rows = self._rows("cancel_job", {"id": job_id, "now": self._clock()})
        if not rows:
            raise JobNotFoundError(job_id)
        return job_from_row(rows[0])

    def get(self, job_id: int) -> Job | None:
        """The job with this id, or ``None``."""
        rows = self._rows("get_job", {"id": job_id})
        return job_from_row(rows[0]) if rows else None

    def list_jobs(
        self, *, status: JobStatus | None, queue: str | None, after_id: int, limit: int
    ) -> list[Job]:
        """Jobs by ascending id after ``after_id``, optionally filtered."""
        params = {
            "status": None if status is None else status.value,
            "queue": queue,
            "after_id": after_id,
            "limit": limit,
        }
        return [job_from_row(row) for row in self._rows("list_jobs", params)]

    def open_session(self) -> int:
        """Start a worker session of this process; its id."""
        with atomic(self._db):
            (row,) = self._rows("open_session", {**this_process(), "now": self._clock()})
        return int(row[0])

    def end_session(self, session: int) -> None:
        """End a worker session: maintenance rescues the attempts it still holds."""
        with atomic(self._db):
            self._db.execute(QUERIES["end_session"], {"id": session})

    def maintain(self) -> MaintenanceReport:
        """Rescue expired leases and attempts of ended sessions, and dead-letter jobs that
        never started in time."""
        with atomic(self._db):
            now = self._clock()
            expired = self._rows("expired_attempts", {"now": now, "limit": RESCUE_BATCH})
            for job_id, attempt, retry, failures, cancel_requested, late in expired:
                error = lease_lost_error(past_start_to_close=bool(late))
                settlement = self._settlement(retry, failures, cancel_requested, error)
                self._settle(AttemptToken(job_id=job_id, attempt=attempt), settlement)
            orphaned = self._rescue_orphans()
            error_text = encode_json(error_to_json(schedule_to_start_error()))
            cursor = self._db.execute(
                QUERIES["expire_unstarted"], {"now": now, "error": error_text}
            )
        return MaintenanceReport(rescued=len(expired), expired=cursor.rowcount, orphaned=orphaned)

    def _rescue_orphans(self) -> int:
        """End the sessions whose process is gone, then rescue the attempts of every
        ended session; how many."""
        gone = [
            session
            for session, pid, host, process in self._rows("job_sessions", {})
            if not process_alive(pid=pid, host=host, process=process)
        ]
        if gone:
            self._db.execute(QUERIES["end_sessions"], {"ids": json.dumps(gone)})
        orphans = self._rows("orphaned_attempts", {})
        for job_id, attempt, retry, failures, cancel_requested in orphans:
            settlement = self._settlement(retry, failures, cancel_requested, worker_lost_error())
            self._settle(AttemptToken(job_id=job_id, attempt=attempt), settlement)
        return len(orphans)

    def stats(self) -> list[QueueStats]:
        """Every queue with unfinished or dead-lettered jobs (see :class:`QueueStats`)."""
        rows = self._db.execute(QUERIES["queue_stats"], {"now": self._clock()}).fetchall()
        return [queue_stats(row) for row in rows]

    def delete_finished(self, older_than_s: float) -> int:
        """Delete jobs that finished more than ``older_than_s`` ago."""
        params = {"now": self._clock(), "older_than_s": older_than_s}
        with atomic(self._db):
            return self._db.execute(QUERIES["delete_finished"], params).rowcount


def job_from_row(row: Row) -> Job:
    """A job from the column list every job query of ``queue_queries.sql`` returns."""
    return Job(
        id=row[0],
        queue=row[1],
        task=row[2],
        payload=decode_json(row[3]),
        priority=row[4],
        status=_STATUSES[row[5]],
        key=row[6],
        retry=policy_from_json(row[7]),
        run_at=from_epoch(row[8]),
        created_at=from_epoch(row[9]),
        attempt=row[10],
        started_at=_time(row[11]),
        lease_until=_time(row[12]),
        finished_at=_time(row[13]),
        cancel_requested=bool(row[14]),
        progress=row[15],
        result=None if row[16] is None else decode_json(row[16]),
        history=history_from_json(json.loads(row[17]), from_epoch),
        schedule_to_start_timeout_s=row[18],
        start_to_close_timeout_s=row[19],
        traceparent=row[20],
    )


def _time(seconds: float | None) -> datetime | None:
    return None if seconds is None else from_epoch(seconds)


def _token(token: AttemptToken) -> dict[str, int]:
    return {"id": token.job_id, "attempt": token.attempt}
