"""The SQLite job queue: the embedded mode's durable queue.

Operations run on the worker thread of a :class:`SqliteConnection` (see
``graphmesh.orchestrator.storage.sqlite``), each one transaction, so they never block
the event loop. Idle workers of this process are woken by its enqueues; workers of other
processes on the same file find new jobs by polling. A worker session is a row naming its
process: attempts of a session whose process is gone, found by any process's
maintenance (the first claim after a restart runs one), are rescued at once.

For one transaction spanning the queue and other tables, run a function on the
connection's thread and use the synchronous view :meth:`SqliteJobQueue.within`::

    def finish(db: sqlite3.Connection) -> None:
        with atomic(db):
            queue.within(db).complete_many([...])
            db.execute(...)  # the caller's own writes
            queue.within(db).enqueue_many([...])

    await connection.call(finish)
    queue.notify(["default"])  # wake this process's idle workers
"""

from __future__ import annotations

import random as _random
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Self, TypeVar

from graphmesh.orchestrator.queue._shared import (
    DEFAULT_MAINTENANCE_INTERVAL_S,
    BatchQueue,
    MaintenanceClock,
    WakeupHub,
    check_claim,
    check_lease,
    started_only,
)
from graphmesh.orchestrator.queue.base import (
    DEFAULT_LEASE_S,
    AttemptToken,
    Completion,
    Job,
    JobError,
    JobSpec,
    JobStatus,
    LeaseState,
    MaintenanceReport,
    QueueStats,
    Wakeup,
    WorkerSession,
)
from graphmesh.orchestrator.queue.sqlite_ops import SqliteQueueOps
from graphmesh.orchestrator.storage.sqlite import SqliteConnection

T = TypeVar("T")


class SqliteJobQueue(BatchQueue):
    """A :class:`~graphmesh.orchestrator.queue.base.JobQueue` in ``graphmesh_jobs``."""

    def __init__(
        self,
        connection: SqliteConnection,
        *,
        owns_connection: bool = False,
        clock: Callable[[], float] = time.time,
        random: Callable[[], float] = _random.random,
        maintenance_interval_s: float = DEFAULT_MAINTENANCE_INTERVAL_S,
    ) -> None:
        self._connection = connection
        self._owns_connection = owns_connection
        self._clock = clock
        self._random = random
        self._maintenance = MaintenanceClock(maintenance_interval_s)
        self._hub = WakeupHub()

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: Path | str,
        *,
        random: Callable[[], float] = _random.random,
        maintenance_interval_s: float = DEFAULT_MAINTENANCE_INTERVAL_S,
    ) -> AsyncIterator[Self]:
        """Yield a queue on the database file at ``path`` (created and migrated)."""
        connection = await SqliteConnection.open(path)
        queue = cls(
            connection,
            owns_connection=True,
            random=random,
            maintenance_interval_s=maintenance_interval_s,
        )
        try:
            yield queue
        finally:
            await queue.close()

    async def close(self) -> None:
        """Close the connection if this queue opened it."""
        if self._owns_connection:
            await self._connection.close()

    def within(self, connection: sqlite3.Connection) -> SqliteQueueOps:
        """The operations, synchronous, on ``connection`` and inside its open transaction
        (call them on the connection's own thread, e.g. in ``SqliteConnection.call``)."""
        return SqliteQueueOps(connection, clock=self._clock, random=self._random)

    def notify(self, queues: Sequence[str]) -> None:
        """Wake this process's idle workers of ``queues`` (after a :meth:`within` enqueue)."""
        self._hub.notify(queues)

    async def _call(self, operation: Callable[[SqliteQueueOps], T]) -> T:
        return await self._connection.call(lambda db: operation(self.within(db)))

    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Add jobs (or find those holding their keys); results in the order given."""
        jobs = await self._call(lambda ops: ops.enqueue_many(specs))
        self._hub.notify(spec.queue for spec in specs)
        return jobs

    @asynccontextmanager
    async def session(self) -> AsyncIterator[WorkerSession]:
        """A worker session of this process, ended when the block ends."""
        session = WorkerSession(id=await self._call(lambda ops: ops.open_session()))
        try:
            yield session
        finally:
            await self._call(lambda ops: ops.end_session(session.id))

    async def enqueue_started(
        self,
        specs: Sequence[JobSpec],
        *,
        lease_s: float = DEFAULT_LEASE_S,
        session: WorkerSession | None = None,
    ) -> list[Job | None]:
        """Add jobs with their first attempt started for the caller (see ``JobQueue``);
        workers are woken only for those left pending behind a job of higher priority."""
        held = _session_id(session)
        jobs = await self._call(
            lambda ops: ops.enqueue_started(specs, lease_s=lease_s, session=held)
        )
        self._wake_if_pending([job for job in jobs if job is not None])
        return started_only(jobs)

    async def claim(
        self,
        queues: Sequence[str],
        *,
        limit: int = 1,
        lease_s: float = DEFAULT_LEASE_S,
        session: WorkerSession | None = None,
    ) -> list[Job]:
        """Start attempts of up to ``limit`` due jobs of ``queues`` in one statement."""
        names = check_claim(queues, limit, lease_s)
        if self._maintenance.due():
            await self.maintain()
        held = _session_id(session)
        return await self._call(
            lambda ops: ops.claim(names, limit=limit, lease_s=lease_s, session=held)
        )

    async def heartbeat_many(
        self, tokens: Sequence[AttemptToken], *, lease_s: float
    ) -> dict[AttemptToken, LeaseState]:
        """Extend the leases of the attempts that still hold their jobs."""
        check_lease(lease_s)
        return await self._call(lambda ops: ops.heartbeat_many(tokens, lease_s=lease_s))

    async def report_progress(self, token: AttemptToken, percent: float) -> None:
        """Persist the attempt's progress, clamped to 0-100."""
        await self._call(lambda ops: ops.report_progress(token, percent))

    async def complete_many(self, completions: Sequence[Completion]) -> list[AttemptToken]:
        """End attempts as SUCCEEDED in one transaction; returns the rejected tokens."""
        return await self._call(lambda ops: ops.complete_many(completions))

    async def fail(self, token: AttemptToken, error: JobError) -> Job:
        """End the attempt with ``error``; retry, dead-letter or cancel (see the protocol)."""
        job = await self._call(lambda ops: ops.fail(token, error))
        self._wake_if_pending([job])
        return job

    async def release(
        self, tokens: Sequence[AttemptToken], *, delay_s: float = 0.0
    ) -> list[AttemptToken]:
        """Hand attempts back; their jobs are due again after ``delay_s``."""
        rejected = await self._call(lambda ops: ops.release(tokens, delay_s=delay_s))
        if len(rejected) < len(tokens):
            self._hub.notify_all()  # the tokens do not say which queues got work back
        return rejected

    def _wake_if_pending(self, jobs: Sequence[Job]) -> None:
        self._hub.notify(job.queue for job in jobs if job.status is JobStatus.PENDING)

    async def cancel(self, job_id: int) -> Job:
        """Cancel a pending job at once, or flag a running one (see the protocol)."""
        return await self._call(lambda ops: ops.cancel(job_id))

    async def get(self, job_id: int) -> Job | None:
        """The job with this id, or ``None``."""
        return await self._call(lambda ops: ops.get(job_id))

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs by ascending id after ``after_id``, optionally filtered."""
        return await self._call(
            lambda ops: ops.list_jobs(status=status, queue=queue, after_id=after_id, limit=limit)
        )

    async def maintain(self) -> MaintenanceReport:
        """Rescue expired leases and attempts of ended sessions (their process gone), and
        dead-letter jobs that never started in time."""
        report = await self._call(lambda ops: ops.maintain())
        if report.rescued or report.orphaned:
            self._hub.notify_all()  # jobs came back; the report does not say on which queues
        return report

    async def stats(self) -> list[QueueStats]:
        """Every queue with unfinished or dead-lettered jobs (see :class:`QueueStats`)."""
        return await self._call(lambda ops: ops.stats())

    async def delete_finished(self, older_than_s: float) -> int:
        """Delete jobs that finished more than ``older_than_s`` ago."""
        return await self._call(lambda ops: ops.delete_finished(older_than_s))

    def wakeups(self, queues: Sequence[str]) -> AbstractAsyncContextManager[Wakeup]:
        """A wakeup notified when this process enqueues (or hands back) jobs on ``queues``."""
        return self._hub.subscribe(queues)


def _session_id(session: WorkerSession | None) -> int | None:
    return None if session is None else session.id
