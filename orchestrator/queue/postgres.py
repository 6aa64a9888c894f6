"""The Postgres job queue (psycopg 3, async): the service mesh's durable queue.

The claim is one statement (``claim_jobs``: ``FOR UPDATE SKIP LOCKED`` over the partial
index of the runnable set); completions and heartbeats are one statement per batch
(``UPDATE ... FROM unnest(...)``); an insert trigger NOTIFYs the queue's name, so an idle
worker listening through :meth:`PostgresJobQueue.wakeups` claims within milliseconds.
The SQL is in ``database/sql/postgres/queue_queries.sql``.

A worker claims under a session (:meth:`PostgresJobQueue.session`): an advisory lock held
by a connection of its own (see :mod:`.postgres_session`), released by Postgres the moment
the worker's process dies, so its attempts are rescued in seconds while a live worker's
long attempt keeps its lease.

Every operation can also run on a caller's connection, inside the caller's transaction:
``queue.within(connection)`` is a view of the queue whose operations use that connection
and never commit, so a task's completion and the enqueueing of the tasks it makes ready
commit (or roll back) together.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, Self

import psycopg
from psycopg.rows import TupleRow

from graphmesh.orchestrator.database.migrations import migrate_postgres
from graphmesh.orchestrator.database.pool import ConnectionSource, PostgresPool
from graphmesh.orchestrator.database.sql import POSTGRES_QUERIES as QUERIES
from graphmesh.orchestrator.queue._shared import (
    DEFAULT_MAINTENANCE_INTERVAL_S,
    BatchQueue,
    MaintenanceClock,
    check_claim,
    check_lease,
    started_in_spec_order,
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
    clamp_progress,
    queue_stats,
)
from graphmesh.orchestrator.queue.coalesce import Coalescer
from graphmesh.orchestrator.queue.codec import error_to_json, policy_from_json
from graphmesh.orchestrator.queue.errors import JobNotFoundError, StaleAttemptError
from graphmesh.orchestrator.queue.postgres_listen import listen
from graphmesh.orchestrator.queue.postgres_rows import (
    completion_params,
    enqueue_params,
    in_spec_order,
    job_from_row,
    started_params,
)
from graphmesh.orchestrator.queue.postgres_session import SESSION_LOCKS, hold_session
from graphmesh.orchestrator.queue.retry import (
    Settlement,
    lease_lost_error,
    schedule_to_start_error,
    settle_failure,
    worker_lost_error,
)
from graphmesh.orchestrator.queue.sessions import GoneSessions
from graphmesh.orchestrator.storage.codec import encode_json

Connection = psycopg.AsyncConnection[TupleRow]
RESCUE_BATCH = 1000
# A session's lock seen free is believed gone once it still is this much later (its
# worker, if alive, takes it again within RECONNECT_PAUSE_S of its connection breaking)...
SESSION_CONFIRM_S = 1.0
# ... and only once the server has been up this long (a start frees every lock at once).
SESSION_SETTLE_S = 5.0
# Autocommit: a single-statement operation is one round trip, not two.
CONNECTION_SETTINGS = {"autocommit": True}


class PostgresJobQueue(BatchQueue):
    """A :class:`~graphmesh.orchestrator.queue.base.JobQueue` in ``graphmesh_jobs``.

    Built on a pool (its owner closes it) or, through :meth:`within`, on one connection.
    A pool of your own is best a :class:`PostgresPool` (it fails fast while the database
    is down) opened with ``kwargs=CONNECTION_SETTINGS``, as :meth:`open` does; any pool
    works.
    """

    def __init__(
        self,
        pool: ConnectionSource,
        *,
        random: Callable[[], float] = _random.random,
        maintenance_interval_s: float = DEFAULT_MAINTENANCE_INTERVAL_S,
        listen_conninfo: str | None = None,
    ) -> None:
        self._pool = pool
        self._enqueues = Coalescer(self.enqueue_many)
        # Wakeups LISTEN on a connection of their own; by default to the pool's database.
        conninfo = pool.conninfo if isinstance(pool.conninfo, str) else None
        self._listen_conninfo = listen_conninfo or conninfo
        self._bound: Connection | None = None
        self._random = random
        self._maintenance: MaintenanceClock | None = MaintenanceClock(maintenance_interval_s)
        self._gone = GoneSessions(SESSION_CONFIRM_S)

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        dsn: str,
        *,
        max_size: int = 4,
        random: Callable[[], float] = _random.random,
        maintenance_interval_s: float = DEFAULT_MAINTENANCE_INTERVAL_S,
    ) -> AsyncIterator[Self]:
        """Yield a queue with its own autocommit pool on ``dsn`` (migrated), closed on exit."""
        options = {"min_size": 1, "max_size": max_size, "kwargs": CONNECTION_SETTINGS}
        async with PostgresPool.open(dsn, **options) as pool:
            async with pool.connection() as connection:
                await migrate_postgres(connection)
            queue = cls(pool, random=random, maintenance_interval_s=maintenance_interval_s)
            try:
                yield queue
            finally:
                await queue.close()

    def within(self, connection: Connection) -> PostgresJobQueue:
        """This queue's operations on ``connection``, in whatever transaction it has open
        (nothing is committed for the caller). Claims on the view do not run maintenance."""
        view = PostgresJobQueue(
            self._pool, random=self._random, listen_conninfo=self._listen_conninfo
        )
        view._bound = connection
        view._maintenance = None
        return view

    async def close(self) -> None:
        """Wait for enqueues and maintenance in flight; the pool belongs to whoever
        opened it."""
        await self._enqueues.close()
        if self._maintenance is not None:
            await self._maintenance.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        if self._bound is not None:
            yield self._bound
        else:
            async with self._pool.connection() as connection:
                yield connection

    async def _rows(self, query: str, params: dict[str, Any]) -> list[TupleRow]:
        async with self._connection() as connection:
            cursor = await connection.execute(QUERIES[query], params)
            return await cursor.fetchall()

    async def enqueue(self, spec: JobSpec) -> Job:
        """Add one job, or return the job that already holds ``spec.key``. Concurrent
        calls share one insert (see :class:`Coalescer`), except on a :meth:`within` view,
        whose every call belongs to the caller's transaction."""
        if self._bound is not None:
            return (await self.enqueue_many([spec]))[0]
        return await self._enqueues.submit(spec)

    async def enqueue_many(self, specs: Sequence[JobSpec]) -> list[Job]:
        """Add jobs (or find those holding their keys); results in the order given."""
        if not specs:
            return []
        params = enqueue_params(specs)
        # No transaction of our own: the insert is one statement, and the read of keys
        # held by other jobs only needs to see what was committed before it.
        async with self._connection() as connection:
            cursor = await connection.execute(QUERIES["enqueue_jobs"], params)
            inserted = [job_from_row(row) for row in await cursor.fetchall()]
            missing = _missing_keys(specs, inserted)
            existing = []
            if missing:
                # A fresh statement: it sees keys a concurrent enqueue committed meanwhile.
                cursor = await connection.execute(QUERIES["jobs_by_keys"], {"keys": missing})
                existing = [job_from_row(row) for row in await cursor.fetchall()]
        return in_spec_order(specs, inserted, existing)

    def session(self) -> AbstractAsyncContextManager[WorkerSession]:
        """A worker session: its advisory lock held on a connection of its own (to the
        pool's database, as wakeups are) until the block ends."""
        return hold_session(self._conninfo("worker sessions"))

    async def enqueue_started(
        self,
        specs: Sequence[JobSpec],
        *,
        lease_s: float = DEFAULT_LEASE_S,
        session: WorkerSession | None = None,
    ) -> list[Job | None]:
        """Add jobs with their first attempt started for the caller (see ``JobQueue``)."""
        if not specs:
            return []
        params = started_params(specs, lease_s, session)
        async with self._connection() as connection:
            cursor = await connection.execute(QUERIES["enqueue_started_jobs"], params)
            inserted = [job_from_row(row) for row in await cursor.fetchall()]
        return started_in_spec_order(specs, inserted)

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
        if self._maintenance is not None and self._maintenance.due():
            self._maintenance.run_in_background(self.maintain)
        # Claims of their own need not wait for the WAL flush (see claim_jobs).
        commit = None if self._bound is not None else "off"
        params: dict[str, Any] = {
            "limit": limit,
            "lease_s": float(lease_s),
            "commit": commit,
            "session": None if session is None else session.id,
        }
        if len(set(names)) == 1:  # the common case has a simpler statement, cheaper to plan
            query, params["queue"] = "claim_jobs", names[0]
        else:
            query, params["queues"] = "claim_jobs_of_queues", names
        jobs = [job_from_row(row) for row in await self._rows(query, params)]
        jobs.sort(key=lambda job: (-job.priority, job.run_at, job.id))
        return jobs

    async def heartbeat_many(
        self, tokens: Sequence[AttemptToken], *, lease_s: float
    ) -> dict[AttemptToken, LeaseState]:
        """Extend the leases of the attempts that still hold their jobs, in one statement."""
        check_lease(lease_s)
        if not tokens:
            return {}
        params = {**_token_arrays(tokens), "lease_s": float(lease_s)}
        states = {}
        for job_id, attempt, lease_until, cancel_requested in await self._rows(
            "heartbeat_jobs", params
        ):
            token = AttemptToken(job_id=job_id, attempt=attempt)
            states[token] = LeaseState(
                token=token, lease_until=lease_until, cancel_requested=cancel_requested
            )
        return states

    async def report_progress(self, token: AttemptToken, percent: float) -> None:
        """Persist the attempt's progress, clamped to 0-100."""
        params = {"id": token.job_id, "attempt": token.attempt, "progress": clamp_progress(percent)}
        if not await self._rows("report_progress", params):
            raise StaleAttemptError(token.job_id, token.attempt)

    async def complete_many(self, completions: Sequence[Completion]) -> list[AttemptToken]:
        """End attempts as SUCCEEDED in one statement; returns the rejected tokens."""
        if not completions:
            return []
        ordered = sorted(completions, key=lambda c: c.token.job_id)  # a stable lock order
        done = {
            (job_id, attempt)
            for job_id, attempt in await self._rows("complete_jobs", completion_params(ordered))
        }
        return [c.token for c in completions if (c.token.job_id, c.token.attempt) not in done]

    async def fail(self, token: AttemptToken, error: JobError) -> Job:
        """End the attempt with ``error``; retry, dead-letter or cancel (see the protocol)."""
        async with self._connection() as connection, connection.transaction():
            cursor = await connection.execute(
                QUERIES["lock_attempt"], {"id": token.job_id, "attempt": token.attempt}
            )
            row = await cursor.fetchone()
            if row is None:
                raise StaleAttemptError(token.job_id, token.attempt)
            retry, failures, cancel_requested = row
            settlement = settle_failure(
                retry=policy_from_json(retry),
                failures_before=failures,
                cancel_requested=cancel_requested,
                error=error,
                random=self._random,
            )
            jobs = await _settle(connection, [(token, settlement)])
        return jobs[0]

    async def release(
        self, tokens: Sequence[AttemptToken], *, delay_s: float = 0.0
    ) -> list[AttemptToken]:
        """Hand attempts back; their jobs are due again after ``delay_s``."""
        if not tokens:
            return []
        async with self._connection() as connection:
            items = [(token, None) for token in tokens]
            jobs = await _settle(connection, items, release_delay_s=delay_s)
        released = {job.token for job in jobs}
        return [token for token in tokens if token not in released]

    async def cancel(self, job_id: int) -> Job:
        """Cancel a pending job at once, or flag a running one (see the protocol)."""
        rows = await self._rows("cancel_job", {"id": job_id})
        if not rows:
            raise JobNotFoundError(job_id)
        return job_from_row(rows[0])

    async def get(self, job_id: int) -> Job | None:
        """The job with this id, or ``None``."""
        rows = await self._rows("get_job", {"id": job_id})
        return job_from_row(rows[0]) if rows else None

    async def list_jobs(
        self,
        *,
        status: JobStatus | None = None,
        queue: str | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Job]:
        """Jobs by ascending id after ``after_id``, optionally filtered."""
        params = {
            "status": None if status is None else status.value,
            "queue": queue,
            "after_id": after_id,
            "limit": limit,
        }
        return [job_from_row(row) for row in await self._rows("list_jobs", params)]

    async def maintain(self) -> MaintenanceReport:
        """Rescue expired leases and attempts of sessions gone (see :meth:`session`), and
        dead-letter jobs that never started in time."""
        async with self._connection() as connection:
            async with connection.transaction():
                cursor = await connection.execute(
                    QUERIES["lock_expired_attempts"], {"limit": RESCUE_BATCH}
                )
                settlements = [self._rescue(row) for row in await cursor.fetchall()]
                rescued = await _settle(connection, settlements)
            orphaned = await self._rescue_orphans(connection)
            error = encode_json(error_to_json(schedule_to_start_error()))
            cursor = await connection.execute(QUERIES["expire_unstarted"], {"error": error})
        return MaintenanceReport(rescued=len(rescued), expired=cursor.rowcount, orphaned=orphaned)

    async def _rescue_orphans(self, connection: Connection) -> int:
        """Rescue the attempts of sessions whose lock has been free for a while."""
        params = {"settle_s": SESSION_SETTLE_S, "namespace": SESSION_LOCKS}
        cursor = await connection.execute(QUERIES["gone_sessions"], params)
        gone = [row[0] for row in await cursor.fetchall()]
        confirmed = self._gone.confirmed(gone, asyncio.get_running_loop().time())
        if not confirmed:
            return 0
        async with connection.transaction():
            cursor = await connection.execute(
                QUERIES["lock_orphaned_attempts"],
                {"ids": confirmed, "namespace": SESSION_LOCKS},
            )
            settlements = [self._orphan(row) for row in await cursor.fetchall()]
            return len(await _settle(connection, settlements))

    def _orphan(self, row: TupleRow) -> tuple[AttemptToken, Settlement]:
        job_id, attempt, retry, failures, cancel_requested = row
        settlement = settle_failure(
            retry=policy_from_json(retry),
            failures_before=failures,
            cancel_requested=cancel_requested,
            error=worker_lost_error(),
            random=self._random,
        )
        return AttemptToken(job_id=job_id, attempt=attempt), settlement

    def _rescue(self, row: TupleRow) -> tuple[AttemptToken, Settlement]:
        job_id, attempt, retry, failures, cancel_requested, late = row
        settlement = settle_failure(
            retry=policy_from_json(retry),
            failures_before=failures,
            cancel_requested=cancel_requested,
            error=lease_lost_error(past_start_to_close=late),
            random=self._random,
        )
        return AttemptToken(job_id=job_id, attempt=attempt), settlement

    async def stats(self) -> list[QueueStats]:
        """Every queue with unfinished or dead-lettered jobs (see :class:`QueueStats`)."""
        async with self._connection() as connection:
            cursor = await connection.execute(QUERIES["queue_stats"])
            return [queue_stats(row) for row in await cursor.fetchall()]

    async def delete_finished(self, older_than_s: float) -> int:
        """Delete jobs that finished more than ``older_than_s`` ago."""
        async with self._connection() as connection:
            cursor = await connection.execute(
                QUERIES["delete_finished"], {"older_than_s": float(older_than_s)}
            )
            return cursor.rowcount

    def wakeups(self, queues: Sequence[str]) -> AbstractAsyncContextManager[Wakeup]:
        """A wakeup fed by LISTEN on a connection of its own (to the pool's database)."""
        return listen(self._conninfo("wakeups"), queues, QUERIES["listen_jobs"])

    def _conninfo(self, what: str) -> str:
        if self._listen_conninfo is None:
            raise ValueError(f"{what} need listen_conninfo: the pool's conninfo is not a string")
        return self._listen_conninfo


async def _settle(
    connection: Connection,
    items: Sequence[tuple[AttemptToken, Settlement | None]],
    *,
    release_delay_s: float = 0.0,
) -> list[Job]:
    """Write settlements (``None``: hand the attempt back, due after ``release_delay_s``)
    and wake workers of the queues that got a job back. Returns the jobs whose attempts
    still held them."""
    if not items:
        return []
    back_after = max(release_delay_s, 0.0)
    params = {
        **_token_arrays([token for token, _ in items]),
        "statuses": [JobStatus.PENDING.value if s is None else s.status.value for _, s in items],
        "delays": [back_after if s is None else s.delay_s for _, s in items],
        "errors": [None if s is None else encode_json(error_to_json(s.error)) for _, s in items],
    }
    cursor = await connection.execute(QUERIES["settle_attempts"], params)
    jobs = [job_from_row(row) for row in await cursor.fetchall()]
    back = sorted({job.queue for job in jobs if job.status is JobStatus.PENDING})
    if back:
        await connection.execute(QUERIES["notify_queues"], {"queues": back})
    return jobs


def _token_arrays(tokens: Sequence[AttemptToken]) -> dict[str, list[int]]:
    return {
        "ids": [token.job_id for token in tokens],
        "attempts": [token.attempt for token in tokens],
    }


def _missing_keys(specs: Sequence[JobSpec], inserted: list[Job]) -> list[str]:
    found = {job.key for job in inserted}
    return sorted({spec.key for spec in specs if spec.key is not None and spec.key not in found})
