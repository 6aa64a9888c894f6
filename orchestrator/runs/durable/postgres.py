"""The durable runs on Postgres: the store, and :class:`PostgresRunService`.

One autocommit pool serves the runs and the job queue (``PostgresJobQueue``); a run
transaction runs the queue's operations on its own connection (``queue.within``), so a
completion, its events and the jobs it enqueues commit together. At commit every changed
run is announced with ``NOTIFY graphmesh_run_events, '<run_id> <status>'``: watchers in any
process wake, workers stop tasks of runs that stopped, and the outbox relay (which LISTENs
on the same channel) publishes the new events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, Self

import orjson
import psycopg
from psycopg.rows import TupleRow

from graphmesh.orchestrator.database.listen import listen_forever
from graphmesh.orchestrator.database.migrations import migrate_postgres
from graphmesh.orchestrator.database.pool import PostgresPool
from graphmesh.orchestrator.database.sql import POSTGRES_QUERIES as QUERIES
from graphmesh.orchestrator.queue._shared import started_in_spec_order
from graphmesh.orchestrator.queue.base import (
    AttemptToken,
    Completion,
    Job,
    JobError,
    JobSpec,
    WorkerSession,
)
from graphmesh.orchestrator.queue.errors import JobNotFoundError, StaleAttemptError
from graphmesh.orchestrator.queue.postgres import CONNECTION_SETTINGS, PostgresJobQueue
from graphmesh.orchestrator.queue.postgres_rows import enqueue_params, job_from_row, started_params
from graphmesh.orchestrator.runs.durable.plan import PlanCache
from graphmesh.orchestrator.runs.durable.service import DurableRunService
from graphmesh.orchestrator.runs.durable.store import (
    CommitOutcomeUnknownError,
    Query,
    Row,
    RunSignals,
    parse_signal,
    signal_payload,
)
from graphmesh.orchestrator.runs.durable.worker import RunWorker, WorkerSettings
from graphmesh.orchestrator.runs.records import RunState, StoreUnavailableError
from graphmesh.orchestrator.runs.storable import RunStoreError, UnstorableValueError
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

Connection = psycopg.AsyncConnection[TupleRow]
log = logging.getLogger(__name__)


class PostgresPending:
    """A query sent in pipeline mode; reading its rows waits for them."""

    def __init__(self, cursor: psycopg.AsyncCursor[TupleRow]) -> None:
        self._cursor = cursor

    async def rows(self) -> list[Row]:
        return await self._cursor.fetchall()


class PostgresStarted:
    """Jobs inserted started, in pipeline mode: their rows arrive with the commit."""

    def __init__(self, cursor: psycopg.AsyncCursor[TupleRow], specs: Sequence[JobSpec]) -> None:
        self._cursor = cursor
        self._specs = specs

    async def jobs(self) -> list[Job | None]:
        inserted = [job_from_row(row) for row in await self._cursor.fetchall()]
        return started_in_spec_order(self._specs, inserted)


class _DroppedError(StoreUnavailableError):
    """The server dropped the connection in use (see ``PostgresRunStore._connection``)."""


class PostgresTx:
    """A run transaction on one pooled connection."""

    def __init__(self, connection: Connection, queue: PostgresJobQueue) -> None:
        self._connection = connection
        self._queue = queue.within(connection)
        self.changed: dict[str, RunState] = {}
        self.committed: list[Callable[[], None]] = []

    def after_commit(self, callback: Callable[[], None]) -> None:
        self.committed.append(callback)

    async def fetch(self, query: str, params: Mapping[str, Any]) -> list[Row]:
        cursor = await self._connection.execute(QUERIES[query], params)
        return await cursor.fetchall()

    async def send(self, query: str, params: Mapping[str, Any]) -> PostgresPending:
        return PostgresPending(await self._connection.execute(QUERIES[query], params))

    async def write_rows(self, query: str, rows: Sequence[Mapping[str, Any]]) -> None:
        # One statement for every row: the rows travel as one JSON array (jsonb_to_recordset).
        # Their values are plain (JSON columns arrive as text already), which orjson
        # encodes several times faster than json.
        document = orjson.dumps(rows).decode()
        await self._connection.execute(QUERIES[query], {"rows": document})

    async def enqueue(self, specs: Sequence[JobSpec]) -> None:
        await self._connection.execute(QUERIES["enqueue_jobs"], enqueue_params(specs))

    async def enqueue_started(
        self, specs: Sequence[JobSpec], *, lease_s: float, session: WorkerSession | None
    ) -> PostgresStarted:
        params = started_params(specs, lease_s, session)
        return PostgresStarted(
            await self._connection.execute(QUERIES["enqueue_started_jobs"], params), specs
        )

    async def complete_jobs(self, tokens: Sequence[AttemptToken]) -> set[AttemptToken]:
        return set(await self._queue.complete_many([Completion(token=t) for t in tokens]))

    async def fail_job(self, token: AttemptToken, error: JobError) -> bool:
        try:
            await self._queue.fail(token, error)
        except StaleAttemptError:
            return False
        return True

    async def cancel_jobs(self, job_ids: Sequence[int]) -> None:
        for job_id in job_ids:
            with contextlib.suppress(JobNotFoundError):  # cleaned up already: nothing to stop
                await self._queue.cancel(job_id)

    def signal(self, run_id: str, status: RunState) -> None:
        self.changed[run_id] = status


class PostgresRunStore:
    """Runs, tasks and events in Postgres, beside the job queue of the same pool."""

    def __init__(
        self,
        pool: PostgresPool,
        queue: PostgresJobQueue,
        *,
        registry: TaskRegistry = default_registry,
    ) -> None:
        self.pool = pool
        self.queue = queue
        self.signals = RunSignals()
        self.plans = PlanCache(registry)

    @classmethod
    @asynccontextmanager
    async def open(
        cls, dsn: str, *, max_size: int = 8, registry: TaskRegistry = default_registry
    ) -> AsyncIterator[Self]:
        """A store with its own pool on ``dsn`` (migrated), listening for run signals."""
        options = {"min_size": 2, "max_size": max_size, "kwargs": CONNECTION_SETTINGS}
        async with PostgresPool.open(dsn, **options) as pool:
            async with pool.connection() as connection:
                await migrate_postgres(connection)
            queue = PostgresJobQueue(pool)
            store = cls(pool, queue, registry=registry)
            listener = asyncio.create_task(store._listen(dsn), name="graphmesh-run-signals")
            try:
                yield store
            finally:
                listener.cancel()
                await asyncio.gather(listener, return_exceptions=True)
                await queue.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTx]:
        """A transaction; its changed runs are NOTIFYed (delivered at commit) and then
        signalled in this process. It runs in pipeline mode: writes are sent without
        waiting for their results, so most of a transaction costs one round trip."""
        xid: str | None = None  # known once the body is done, before the commit is sent
        try:
            async with self._connection() as connection, connection.pipeline():
                async with connection.transaction():
                    marker = await connection.execute(QUERIES["transaction_id"])
                    tx = PostgresTx(connection, self.queue)
                    yield tx
                    if tx.changed:
                        payloads = [signal_payload(*change) for change in tx.changed.items()]
                        await connection.execute(QUERIES["notify_runs"], {"payloads": payloads})
                    xid = str((await marker.fetchall())[0][0])
        except StoreUnavailableError as error:
            if xid is None:
                raise  # it broke before the commit was sent: rolled back
            committed = partial(self._committed, xid, tx)
            raise CommitOutcomeUnknownError(str(error), committed) from error
        self._signal(tx)

    def _signal(self, tx: PostgresTx) -> None:
        for run_id, status in tx.changed.items():
            self.signals.notify(run_id, status)
        for callback in tx.committed:
            callback()

    async def _committed(self, xid: str, tx: PostgresTx) -> bool | None:
        """Whether transaction ``xid`` committed (then its changed runs are signalled
        here, as after any commit); ``None`` while the database cannot tell (unreachable,
        or the transaction still ending). One too old to be told counts as not committed:
        its writes are then written again, as before this check existed."""
        try:
            (row,) = await self.fetch("transaction_status", {"xid": xid})
        except StoreUnavailableError:
            return None
        if row[0] == "in progress":
            return None
        if row[0] != "committed":
            return False
        self._signal(tx)
        return True

    async def fetch(self, query: str, params: Mapping[str, Any]) -> list[Row]:
        return (await self.fetch_many([(query, params)]))[0]

    async def fetch_many(self, queries: Sequence[Query]) -> list[list[Row]]:
        try:
            return await self._fetch_many(queries)
        except _DroppedError:
            # The server dropped the connection (it restarted): the pool has been checked
            # since, so a read, safe to repeat, is tried once more on a live connection.
            return await self._fetch_many(queries)

    async def _fetch_many(self, queries: Sequence[Query]) -> list[list[Row]]:
        async with self._connection() as connection:
            if len(queries) == 1:
                ((name, params),) = queries
                return [await (await connection.execute(QUERIES[name], params)).fetchall()]
            async with connection.pipeline():
                cursors = [await connection.execute(QUERIES[q], params) for q, params in queries]
                return [await cursor.fetchall() for cursor in cursors]

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Connection]:
        """A pooled connection, and the one translation of the driver's errors: when no
        connection can be had (at once while the database is down: see
        :class:`PostgresPool`), or it breaks (the server restarted), StoreUnavailableError;
        a value the database refuses (NUL in text, say) UnstorableValueError (permanent);
        any other database error RunStoreError. Their messages carry a reference, never the
        driver's text (DETAIL, CONTEXT, SQL, hosts), which goes to the log only: they reach
        API callers and the errors of runs. By the time a broken connection is reported, the
        pool has checked its idle ones (after a restart they are all dead)."""
        connection: Connection | None = None
        try:
            async with self.pool.connection() as connection:
                yield connection
        except psycopg.DataError as error:
            reference = _logged("the runs database refused a value", error)
            raise UnstorableValueError(
                f"a value could not be stored (reference {reference})"
            ) from error
        except psycopg.OperationalError as error:
            if connection is not None and not (connection.closed or connection.broken):
                reference = _logged("a runs database statement failed", error)
                raise RunStoreError(f"the runs database failed (reference {reference})") from error
            reference = _logged("the runs database is unavailable", error)
            message = f"the runs database is unavailable (reference {reference})"
            if connection is None:
                raise StoreUnavailableError(message) from error
            raise _DroppedError(message) from error
        except psycopg.Error as error:
            reference = _logged("a runs database statement failed", error)
            raise RunStoreError(f"the runs database failed (reference {reference})") from error

    async def _listen(self, dsn: str) -> None:
        """Relay NOTIFYs of other processes to :attr:`signals` (watchers also poll, so a
        gap while the database restarts only delays them)."""

        def on_payload(payload: str) -> None:
            parsed = parse_signal(payload)
            if parsed is not None:
                self.signals.notify(*parsed)

        await listen_forever(dsn, QUERIES["listen_runs"], on_payload, lambda: None, what="runs")


def _logged(what: str, error: Exception) -> str:
    """Log the driver's error with a new reference; the reference."""
    reference = uuid.uuid4().hex[:12]
    log.warning("%s (reference %s): %s", what, reference, error)
    return reference


class PostgresRunService(DurableRunService):
    """The durable RunService on Postgres (``async with PostgresRunService.open(dsn)``)."""

    @classmethod
    @asynccontextmanager
    async def open(
        cls,
        dsn: str,
        *,
        run_tasks: bool = True,
        worker: WorkerSettings | None = None,
        registry: TaskRegistry = default_registry,
        max_pool_size: int = 8,
    ) -> AsyncIterator[Self]:
        """A service on ``dsn`` (migrated). With ``run_tasks`` it also runs tasks in this
        process, with a :class:`RunWorker` configured by ``worker``."""
        async with PostgresRunStore.open(dsn, max_size=max_pool_size, registry=registry) as store:
            service = cls(store, registry=registry)
            if not run_tasks:
                yield service
                return
            async with RunWorker(store, store.queue, worker or WorkerSettings()) as running:
                service.worker = running
                yield service
