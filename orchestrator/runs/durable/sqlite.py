"""The durable runs on SQLite, for the embedded mode and development: one process.

The run tables live in the database file of the job queue (``SqliteJobQueue``), and the
queue and the runs share one connection (:class:`SharedConnection`). A run transaction
spans several calls on it (``BEGIN IMMEDIATE`` ... ``COMMIT``) and the queue's operations
join it through ``queue.within``; meanwhile every other call of this process (the queue
worker's claims and heartbeats, reads) waits on an asyncio lock. Two connections would
contend for SQLite's write lock instead, and its busy handler sleeps up to 100 ms a try.
Signals reach this process's watchers and workers directly; other processes on the same
file find changes by polling.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from graphmesh.orchestrator.database.sql import SQLITE_QUERIES as QUERIES
from graphmesh.orchestrator.queue._shared import started_only
from graphmesh.orchestrator.queue.base import (
    AttemptToken,
    Completion,
    Job,
    JobError,
    JobSpec,
    JobStatus,
    WorkerSession,
)
from graphmesh.orchestrator.queue.errors import JobNotFoundError, StaleAttemptError
from graphmesh.orchestrator.queue.sqlite import SqliteJobQueue
from graphmesh.orchestrator.runs.durable.plan import PlanCache
from graphmesh.orchestrator.runs.durable.service import DurableRunService
from graphmesh.orchestrator.runs.durable.store import Query, Row, RunSignals
from graphmesh.orchestrator.runs.durable.worker import RunWorker, WorkerSettings
from graphmesh.orchestrator.runs.records import RunState
from graphmesh.orchestrator.runs.storable import RunStoreError, UnstorableValueError
from graphmesh.orchestrator.storage.sqlite import SqliteConnection
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

T = TypeVar("T")
log = logging.getLogger(__name__)


class SqlitePending:
    """Rows read at once (SQLite has no pipeline)."""

    def __init__(self, rows: list[Row]) -> None:
        self._rows = rows

    async def rows(self) -> list[Row]:
        return self._rows


class SqliteStarted:
    """Jobs inserted started (read at once: SQLite has no pipeline)."""

    def __init__(self, jobs: list[Job | None]) -> None:
        self._jobs = jobs

    async def jobs(self) -> list[Job | None]:
        return self._jobs


class SharedConnection(SqliteConnection):
    """The one connection of the queue and the runs: a call waits while a run transaction
    holds :attr:`guard`; the transaction itself calls :meth:`call_held`."""

    def __init__(self, executor: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        super().__init__(executor, connection)
        self.guard = asyncio.Lock()

    async def call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        async with self.guard:
            return await super().call(function)

    async def call_held(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function`` for the holder of :attr:`guard`."""
        return await super().call(function)


class SqliteTx:
    """A run transaction on the shared connection (its thread runs every statement)."""

    def __init__(self, connection: SharedConnection, queue: SqliteJobQueue) -> None:
        self._connection = connection
        self._queue = queue
        self.changed: dict[str, RunState] = {}
        self.queues: set[str] = set()
        self.committed: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.committed.append(callback)

    async def _call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        return await self._connection.call_held(function)

    async def fetch(self, query: str, params: Mapping[str, Any]) -> list[Row]:
        sql, values = QUERIES[query], _params(params)
        return await self._call(lambda db: db.execute(sql, values).fetchall())

    async def send(self, query: str, params: Mapping[str, Any]) -> SqlitePending:
        return SqlitePending(await self.fetch(query, params))

    async def write_rows(self, query: str, rows: Sequence[Mapping[str, Any]]) -> None:
        sql, values = QUERIES[query], [_params(row) for row in rows]
        await self._call(lambda db: db.executemany(sql, values))

    async def enqueue(self, specs: Sequence[JobSpec]) -> None:
        self.queues.update(spec.queue for spec in specs)
        await self._call(lambda db: self._queue.within(db).enqueue_many(specs))

    async def enqueue_started(
        self, specs: Sequence[JobSpec], *, lease_s: float, session: WorkerSession | None
    ) -> SqliteStarted:
        ops, held = self._queue.within, None if session is None else session.id
        jobs = await self._call(
            lambda db: ops(db).enqueue_started(specs, lease_s=lease_s, session=held)
        )
        # Those left pending behind a job of higher priority wake the workers at commit.
        self.queues.update(
            job.queue for job in jobs if job is not None and job.status is JobStatus.PENDING
        )
        return SqliteStarted(started_only(jobs))

    async def complete_jobs(self, tokens: Sequence[AttemptToken]) -> set[AttemptToken]:
        completions = [Completion(token=token) for token in tokens]
        rejected = await self._call(lambda db: self._queue.within(db).complete_many(completions))
        return set(rejected)

    async def fail_job(self, token: AttemptToken, error: JobError) -> bool:
        try:
            await self._call(lambda db: self._queue.within(db).fail(token, error))
        except StaleAttemptError:
            return False
        return True

    async def cancel_jobs(self, job_ids: Sequence[int]) -> None:
        await self._call(lambda db: _cancel_all(self._queue, db, job_ids))

    def signal(self, run_id: str, status: RunState) -> None:
        self.changed[run_id] = status


class SqliteRunStore:
    """Runs, tasks and events in the SQLite file of the job queue."""

    def __init__(
        self,
        connection: SharedConnection,
        queue: SqliteJobQueue,
        *,
        registry: TaskRegistry = default_registry,
    ) -> None:
        self._connection = connection
        self.queue = queue
        self.signals = RunSignals()
        self.plans = PlanCache(registry)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, path: Path | str, *, registry: TaskRegistry = default_registry
    ) -> AsyncIterator[Self]:
        """A store on the database file at ``path`` (created and migrated), with the job
        queue on the same connection."""
        connection = await SharedConnection.open(path)
        assert isinstance(connection, SharedConnection)  # open() builds its own class
        try:
            queue = SqliteJobQueue(connection)
            try:
                yield cls(connection, queue, registry=registry)
            finally:
                await queue.close()
        finally:
            await connection.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteTx]:
        connection = self._connection
        with _translated():
            async with self._transaction(connection) as tx:
                yield tx
        if tx.queues:
            self.queue.notify(sorted(tx.queues))
        for run_id, status in tx.changed.items():
            self.signals.notify(run_id, status)
        for callback in tx.committed:
            callback()

    @asynccontextmanager
    async def _transaction(self, connection: SharedConnection) -> AsyncIterator[SqliteTx]:
        async with connection.guard:
            await connection.call_held(lambda db: db.execute("BEGIN IMMEDIATE"))
            tx = SqliteTx(connection, self.queue)
            try:
                yield tx
            except BaseException:
                await connection.call_held(lambda db: db.execute("ROLLBACK"))
                raise
            await connection.call_held(lambda db: db.execute("COMMIT"))

    async def fetch(self, query: str, params: Mapping[str, Any]) -> list[Row]:
        return (await self.fetch_many([(query, params)]))[0]

    async def fetch_many(self, queries: Sequence[Query]) -> list[list[Row]]:
        statements = [(QUERIES[name], _params(params)) for name, params in queries]
        with _translated():
            return await self._connection.call(
                lambda db: [db.execute(sql, values).fetchall() for sql, values in statements]
            )


class SqliteRunService(DurableRunService):
    """The durable RunService on SQLite (``async with SqliteRunService.open(path)``)."""

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        path: Path | str,
        *,
        run_tasks: bool = True,
        worker: WorkerSettings | None = None,
        registry: TaskRegistry = default_registry,
    ) -> AsyncIterator[Self]:
        """A service on the database at ``path``; with ``run_tasks`` it also runs tasks in
        this process (a :class:`RunWorker` configured by ``worker``)."""
        async with SqliteRunStore.open(path, registry=registry) as store:
            service = cls(store, registry=registry)
            if not run_tasks:
                yield service
                return
            async with RunWorker(store, store.queue, worker or WorkerSettings()) as running:
                service.worker = running
                yield service


@contextmanager
def _translated() -> Iterator[None]:
    """The one translation of the driver's errors, as on Postgres: a value SQLite cannot
    take (text that is not valid Unicode) is UnstorableValueError, any other database
    error RunStoreError; the driver's text goes to the log only."""
    try:
        yield
    except (UnicodeError, sqlite3.DataError) as error:
        reference = _logged("the runs database refused a value", error)
        raise UnstorableValueError(
            f"a value could not be stored (reference {reference})"
        ) from error
    except sqlite3.Error as error:
        reference = _logged("a runs database statement failed", error)
        raise RunStoreError(f"the runs database failed (reference {reference})") from error


def _logged(what: str, error: Exception) -> str:
    reference = uuid.uuid4().hex[:12]
    log.warning("%s (reference %s): %s", what, reference, error)
    return reference


def _params(params: Mapping[str, Any]) -> dict[str, Any]:
    """SQLite values: lists and dicts as JSON text (read back with ``json_each``)."""
    return {
        key: json.dumps(value) if isinstance(value, list | dict) else value
        for key, value in params.items()
    }


def _cancel_all(queue: SqliteJobQueue, db: sqlite3.Connection, job_ids: Sequence[int]) -> None:
    operations = queue.within(db)
    for job_id in job_ids:
        try:
            operations.cancel(job_id)
        except JobNotFoundError:
            continue
