"""What the durable run logic needs from a database, and the in-process run signals.

A :class:`RunStore` (Postgres: :mod:`.postgres`, SQLite: :mod:`.sqlite`)
opens transactions; a :class:`Tx` runs the named queries of ``runs_queries.sql`` and the
job queue's operations inside one, so a state change, its events, the jobs it enqueues and
the job it completes commit together. After a commit the store signals every run whose
state changed through :class:`RunSignals` (and, on Postgres, ``NOTIFY`` to every process).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import AbstractAsyncContextManager, contextmanager
from typing import Any, Protocol

from graphmesh.orchestrator.queue.base import (
    AttemptToken,
    Job,
    JobError,
    JobSpec,
    WorkerSession,
)
from graphmesh.orchestrator.runs.durable.plan import PlanCache
from graphmesh.orchestrator.runs.records import RunState, StoreUnavailableError

Row = tuple[Any, ...]
Query = tuple[str, Mapping[str, Any]]
StatusListener = Callable[[str, RunState], None]


class CommitOutcomeUnknownError(StoreUnavailableError):
    """The connection broke while the transaction's commit was on the way, so it may have
    committed or not. :attr:`committed` asks the database once it answers again: ``True``
    or ``False``, or ``None`` while that cannot be told yet (still unreachable)."""

    def __init__(self, message: str, committed: Callable[[], Awaitable[bool | None]]) -> None:
        super().__init__(message)
        self.committed = committed


class Pending(Protocol):
    """A query sent ahead: its rows are read when needed."""

    async def rows(self) -> list[Row]: ...


class Started(Protocol):
    """Jobs enqueued with their first attempt started, readable once committed."""

    async def jobs(self) -> list[Job | None]:
        """One per spec: the started job, or ``None`` where its key was held or it was
        left pending behind a job of higher priority."""
        ...


class Tx(Protocol):
    """One open transaction."""

    async def fetch(self, query: str, params: Mapping[str, Any]) -> list[Row]:
        """Rows of one named query (list parameters are arrays)."""
        ...

    async def send(self, query: str, params: Mapping[str, Any]) -> Pending:
        """Send a query now, read its rows later: on Postgres, queries sent ahead share
        one round trip with the next one whose result is read (pipeline mode)."""
        ...

    async def write_rows(self, query: str, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a named batch write for ``rows`` (each a dict of the same keys)."""
        ...

    async def enqueue(self, specs: Sequence[JobSpec]) -> None:
        """Enqueue jobs in this transaction. Nothing is read back: the task rows written
        after it find their jobs by key (``TaskRow.job_key``)."""
        ...

    async def enqueue_started(
        self, specs: Sequence[JobSpec], *, lease_s: float, session: WorkerSession | None
    ) -> Started:
        """Enqueue jobs with their first attempts started for this process's worker
        ``session`` (eager dispatch, ``JobQueue.enqueue_started``); the jobs are read
        after the commit."""
        ...

    async def complete_jobs(self, tokens: Sequence[AttemptToken]) -> set[AttemptToken]:
        """Complete attempts in this transaction; returns the stale (rejected) tokens."""
        ...

    async def fail_job(self, token: AttemptToken, error: JobError) -> bool:
        """Fail an attempt in this transaction; ``False`` when the token is stale."""
        ...

    async def cancel_jobs(self, job_ids: Sequence[int]) -> None:
        """Cancel pending jobs, flag running ones (see ``JobQueue.cancel``)."""
        ...

    def signal(self, run_id: str, status: RunState) -> None:
        """Announce, once this transaction commits, that ``run_id`` changed."""
        ...

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` in this process once this transaction committed (never if it
        rolled back), after its signals."""
        ...


class RunStore(Protocol):
    """A database holding runs, their tasks and events, and the job queue."""

    signals: RunSignals
    plans: PlanCache

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        """A transaction: committed when the block ends, rolled back on an exception."""
        ...

    async def fetch(self, query: str, params: Mapping[str, Any]) -> list[Row]:
        """Rows of one named read-only query, outside any transaction."""
        ...

    async def fetch_many(self, queries: Sequence[Query]) -> list[list[Row]]:
        """Rows of several read-only queries (one round trip on Postgres)."""
        ...


class RunSignals:
    """In-process notice that a run changed: watchers wait per run, listeners (the run
    workers) hear every run's new status. Fed after each local commit and, on Postgres,
    by ``LISTEN`` for commits of other processes; a lost notice only delays (watchers poll).
    """

    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Event]] = {}
        self._listeners: list[StatusListener] = []

    def notify(self, run_id: str, status: RunState) -> None:
        for waiter in self._waiters.get(run_id, ()):
            waiter.set()
        for listener in list(self._listeners):
            listener(run_id, status)

    @contextmanager
    def waiter(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set whenever ``run_id`` changes, for the block's duration."""
        event = asyncio.Event()
        self._waiters.setdefault(run_id, set()).add(event)
        try:
            yield event
        finally:
            waiters = self._waiters.get(run_id)
            if waiters is not None:
                waiters.discard(event)
                if not waiters:
                    del self._waiters[run_id]

    @contextmanager
    def listening(self, listener: StatusListener) -> Iterator[None]:
        """Call ``listener(run_id, status)`` on every change, for the block's duration."""
        self._listeners.append(listener)
        try:
            yield
        finally:
            self._listeners.remove(listener)


def parse_signal(payload: str) -> tuple[str, RunState] | None:
    """``"<run_id> <status>"`` as sent by the run stores; ``None`` for other payloads
    (the outbox relay's writers notify the same channel with an empty one)."""
    run_id, _, status = payload.partition(" ")
    if not run_id or status not in RunState.__members__:
        return None
    return run_id, RunState(status)


def signal_payload(run_id: str, status: RunState) -> str:
    return f"{run_id} {status.value}"
