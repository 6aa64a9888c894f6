"""RunWorker: runs the tasks of durable runs, as jobs of the job queue.

::

    async with PostgresRunStore.open(dsn) as store, RunWorker(store, store.queue):
        ...  # tasks of every run on this database run here while the block is open

Each job names one task of one run. Its handler loads the run's graph (parsed once per
process), reads the outputs of the task's upstream tasks (see :mod:`.inputs`),
records the start (TASK_STARTED, written with the next batch), gathers its inputs in
dataflow order (array ports append), and runs it through the runner's middleware chain
(output cache, model client). A success is one transaction:
output, TASK_COMPLETED, the dependents it makes ready enqueued, the job completed with its
fencing token (a stale token writes nothing); see :mod:`.batch`. A failure that may
pass is retried by the queue; a permanent one, or the last attempt, fails the task (and the
run, unless its ``[error]`` port is wired). A model call refused for now (a provider's shared
rate limit: a retryable ``ModelError`` with ``retry_after``, RESOURCE_EXHAUSTED from a
gateway) is no failure: the job goes back to the queue, due when the limit allows, without
counting against its attempts and without holding this worker meanwhile. When a run stops
(cancelled, failed, timed out) the tasks it still runs here are cancelled at once, remote
calls included.

A sweep, every ``sweep_interval_s``, fails runs past their deadline and settles tasks
whose job ended without them (a worker that died on the last attempt).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Self

from graphmesh.orchestrator.ai.client import ModelClient, ModelError
from graphmesh.orchestrator.ai.usage import TaskUsage
from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.queue.base import Job, JobQueue
from graphmesh.orchestrator.queue.errors import (
    DeferJobError,
    PermanentJobError,
    RetryableJobError,
)
from graphmesh.orchestrator.queue.worker import JobContext, Worker, WorkerOptions
from graphmesh.orchestrator.runner.middleware import CacheMiddleware, Middleware, build_chain
from graphmesh.orchestrator.runs.durable.batch import (
    Abort,
    Committer,
    Complete,
    Fail,
    Op,
    Start,
)
from graphmesh.orchestrator.runs.durable.dispatch import EagerDispatch
from graphmesh.orchestrator.runs.durable.execution import TaskExecution, describe_failure
from graphmesh.orchestrator.runs.durable.inputs import StartReader
from graphmesh.orchestrator.runs.durable.plan import RUN_TASK_JOB, TASK_QUEUE, task_queue
from graphmesh.orchestrator.runs.durable.rows import ACTIVE_RUN, Upstream, json_copy
from graphmesh.orchestrator.runs.durable.store import RunStore
from graphmesh.orchestrator.runs.durable.sweep import sweep
from graphmesh.orchestrator.runs.records import JsonObject, RunNotFoundError, RunState
from graphmesh.orchestrator.storage.base import TaskOutputRepository
from graphmesh.orchestrator.task.base import TaskStatus

ALL_TASK_QUEUES = (TASK_QUEUE, *(task_queue(p) for p in ("hf", "triton", "openai", "anthropic")))
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class WorkerSettings:
    """How a :class:`RunWorker` runs tasks.

    ``queues``: the job queues it serves (job-queue tasks go to ``runs.<queue_name>``);
    ``concurrency``: tasks at once; ``models``/``repository``/``middleware``/``resources``:
    what the in-process runner takes; ``task_timeout``: seconds, unless a task's config
    sets ``timeout``; ``queue``: the queue worker's leases, heartbeats and polling;
    ``eager_dispatch``: tasks this worker's commits make ready start in its free slots
    without a claim (see :mod:`.dispatch`); off, every task waits in the queue
    for any worker.
    """

    queues: tuple[str, ...] = ALL_TASK_QUEUES
    concurrency: int = 64
    models: ModelClient | None = None
    repository: TaskOutputRepository | None = None
    middleware: Sequence[Middleware] = ()
    resources: Mapping[str, Any] = field(default_factory=dict)
    task_timeout: float | None = None
    queue: WorkerOptions = field(default_factory=WorkerOptions)
    sweep_interval_s: float = 1.0
    eager_dispatch: bool = True


class RunWorker:
    """Runs the tasks of durable runs from ``queue`` (an async context manager)."""

    def __init__(
        self, store: RunStore, queue: JobQueue, settings: WorkerSettings | None = None
    ) -> None:
        settings = settings or WorkerSettings()
        self._store = store
        self._queue = queue
        self._settings = settings
        self._committer = Committer(store, committed=self._committed)
        self._reader = StartReader(store)
        cache = [CacheMiddleware(settings.repository)] if settings.repository is not None else []
        self._chain = build_chain([*settings.middleware, *cache])
        self._running: dict[str, set[asyncio.Task[Any]]] = {}
        self._stopped: OrderedDict[str, RunState] = OrderedDict()
        self._stack = AsyncExitStack()
        self._worker: Worker | None = None

    async def __aenter__(self) -> Self:
        self._stack.push_async_callback(self._committer.close)
        self._stack.push_async_callback(self._reader.close)
        self._stack.enter_context(self._store.signals.listening(self._on_signal))
        settings = self._settings
        worker = Worker(
            self._queue,
            self._handle,
            queues=settings.queues,
            concurrency=settings.concurrency,
            options=settings.queue,
        )
        self._worker = await self._stack.enter_async_context(worker)
        if settings.eager_dispatch:
            self._committer.dispatch = EagerDispatch(worker, lease_s=settings.queue.lease_s)
        sweeper = asyncio.create_task(self._sweep_loop(), name="graphmesh-run-sweep")
        self._stack.push_async_callback(_stop, sweeper)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # The sweep stops, then the queue worker drains (handlers finish or are handed
        # back), then the last writes are committed.
        await self._stack.aclose()

    def stop_taking_work(self) -> None:
        """Start no more tasks: neither claimed nor dispatched eagerly (a shutdown)."""
        if self._worker is not None:
            self._worker.stop_claiming()

    async def drain(self, finish_s: float) -> None:
        """Stop taking work, give the tasks running here ``finish_s`` to finish, then
        hand the rest back to the queue (another worker runs them at once)."""
        if self._worker is not None:
            await self._worker.drain(finish_s)

    # -- the job handler ---------------------------------------------------------------
    async def _handle(self, job: Job, context: JobContext) -> JsonObject | None:
        if job.task != RUN_TASK_JOB:
            raise PermanentJobError(f"a run worker cannot run {job.task!r} jobs")
        try:
            plan = await self._store.plans.get(str(job.payload["run_id"]), self._store.fetch)
        except RunNotFoundError:
            return {"skipped": True}  # the run is gone
        except GraphmeshError as error:  # e.g. a task type this process does not know
            message = f"task {job.payload['task_id']!r}: cannot load the run's graph: {error}"
            payload = {"type": type(error).__name__, "message": str(error)}
            await self._committer.submit(Fail(job=job, error=message, payload=payload))
            context.mark_settled()
            return None
        if str(job.payload["run_id"]) in self._stopped:
            return {"skipped": True}  # its run stopped
        upstream = await self._reader.read(job, plan)
        if upstream is None:
            return {"skipped": True}  # stale, or the run stopped: nothing to run
        # Not waited for: the start is written with (or before) the task's outcome.
        self._committer.post(Start(job=job))
        execution = TaskExecution(
            plan=plan,
            job=job,
            upstream=upstream,
            chain=self._chain,
            settings=self._settings,
            committer=self._committer,
        )
        await self._run(job, context, asyncio.create_task(execution.run()))
        return None

    async def _run(
        self,
        job: Job,
        context: JobContext,
        task: asyncio.Task[tuple[JsonObject, JsonObject, TaskUsage]],
    ) -> None:
        """Run the task; its outcome's write also ends the job (fenced), so the queue
        worker is told the job is settled."""
        run_id = str(job.payload["run_id"])
        running = self._running.setdefault(run_id, set())
        running.add(task)
        if run_id in self._stopped:  # stopped between our start and now
            task.cancel()
        try:
            output, provenance, usage = await task
        except asyncio.CancelledError:
            if _cancelling():
                # The queue worker stopped us (cancel request, lost lease, shutdown): it
                # settles the job; the task is marked aborted only if its run stopped.
                self._committer.post(Abort(job=job, reason="aborted", settle_job=False))
                raise
            # The run stopped: this write ends the job and the task together.
            await self._committer.submit(Abort(job=job, reason="aborted", settle_job=True))
            context.mark_settled()
            return
        except Exception as error:
            await self._failed(job, context, error)
            return
        finally:
            running.discard(task)
            if not running:
                self._running.pop(run_id, None)
        await self._committer.submit(
            Complete(job=job, output=output, provenance=provenance, usage=usage)
        )
        context.mark_settled()

    async def _failed(self, job: Job, context: JobContext, error: Exception) -> None:
        wait = rate_limited(error)
        if wait is not None:
            log.info("job %s: a model's rate limit is reached; back in %.2fs", job.id, wait)
            raise DeferJobError(str(error), retry_after_s=wait) from error
        retryable, retry_after = _retryable(error)
        last_attempt = len(job.history) + 1 >= job.retry.max_attempts
        message, payload = describe_failure(str(job.payload["task_id"]), error)
        if retryable and not last_attempt:
            raise RetryableJobError(message, retry_after_s=retry_after) from error
        await self._committer.submit(Fail(job=job, error=message, payload=payload))
        context.mark_settled()

    def _committed(self, op: Op, result: Any) -> None:
        """Keep an outcome just committed for the tasks it feeds, as a read would return
        it (the values its stored JSON decodes to, as fresh objects), before they start."""
        if result is not True:
            return
        if isinstance(op, Complete):
            upstream = Upstream(
                task_id=op.task_id,
                status=TaskStatus.COMPLETED,
                output=json_copy(op.output),
                error_payload=None,
                provenance=json_copy(op.provenance),
            )
        elif isinstance(op, Fail):
            upstream = Upstream(
                task_id=op.task_id,
                status=TaskStatus.FAILED,
                output=None,
                error_payload=op.payload,
            )
        else:
            return
        self._reader.remember(op.run_id, upstream)

    # -- stopping runs -----------------------------------------------------------------
    def _on_signal(self, run_id: str, status: RunState) -> None:
        if status in ACTIVE_RUN:
            self._stopped.pop(run_id, None)  # resumed
            return
        self._stopped[run_id] = status
        while len(self._stopped) > 1024:
            self._stopped.popitem(last=False)
        for task in self._running.get(run_id, ()):
            task.cancel()

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(self._settings.sweep_interval_s)
            try:
                await sweep(self._store)
            except Exception:
                log.exception("sweeping runs failed; trying again later")


def _retryable(error: BaseException) -> tuple[bool, float | None]:
    """Whether a task's failure may pass on retry: a model error that says so, or a
    :class:`RetryableJobError`, anywhere in the cause chain. Anything else fails the task,
    as in the in-process runner."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, RetryableJobError):
            return True, seen.retry_after_s
        if getattr(seen, "retryable", False) is True:
            return True, getattr(seen, "retry_after", None)
        seen = seen.__cause__ or seen.__context__
    return False, None


def rate_limited(error: BaseException) -> float | None:
    """The wait a model asked for, when ``error`` (or its cause) is a refusal to call it
    now rather than a failure; ``None`` otherwise."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ModelError) and seen.retryable and seen.retry_after is not None:
            return max(seen.retry_after, 0.0)
        seen = seen.__cause__ or seen.__context__
    return None


def _cancelling() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
