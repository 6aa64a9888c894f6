"""Batched writes of a run worker: many task starts, progress reports and completions in
one transaction.

Every handler of a :class:`~.worker.RunWorker` hands its writes (:class:`Op`) to
one :class:`Committer`. Ops that arrive while a transaction is being written go into the
next one, so under load a transaction carries many tasks' starts and completions (one
run-row lock, one statement per kind of write) and when idle an op is written at once.
Within a transaction the ops apply in arrival order, so a task's events keep their order.
A failing transaction is retried op by op, so one bad op fails only its own caller; one
that failed because the database was unreachable is retried whole, every
:data:`RETRY_PAUSE_S`, until the database is back (or the committer closes): a lost start
would leave its task waiting for good. One whose commit was cut off on the way is first
looked up (``CommitOutcomeUnknownError``), and written again only if it did not commit.
Ops nobody waits for (starts, progress) wait up to :data:`POST_DELAY_S` for one that
somebody does, so a task's start is usually written with its outcome.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from graphmesh.orchestrator.ai.usage import NO_TASK_USAGE, TaskUsage
from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.queue.base import AttemptToken, ErrorKind, Job, JobError
from graphmesh.orchestrator.runs.durable.dispatch import EagerDispatch
from graphmesh.orchestrator.runs.durable.plan import GraphPlan
from graphmesh.orchestrator.runs.durable.scheduler import Scheduler
from graphmesh.orchestrator.runs.durable.scheduler_state import TaskKey, TxnState
from graphmesh.orchestrator.runs.durable.store import CommitOutcomeUnknownError, RunStore, Tx
from graphmesh.orchestrator.runs.records import JsonObject, RunEventKind, StoreUnavailableError

log = logging.getLogger(__name__)
POST_DELAY_S = 0.05
MAX_BATCH = 512  # ops per transaction: fewer, fuller commits; still bounded, so work overlaps
RETRY_PAUSE_S = 0.5


@dataclass(frozen=True, kw_only=True)
class Op:
    """One write about the task a job runs."""

    job: Job

    @cached_property
    def run_id(self) -> str:
        return str(self.job.payload["run_id"])

    @cached_property
    def task_id(self) -> str:
        return str(self.job.payload["task_id"])


@dataclass(frozen=True, kw_only=True)
class Start(Op):
    """The task started (TASK_STARTED, one more attempt); ``False`` for a stale attempt
    (a later one of its job exists), a job the task no longer waits for, or a run that
    stopped meanwhile: it writes nothing, and its completion will be discarded too."""


@dataclass(frozen=True, kw_only=True)
class Progress(Op):
    percent: float
    message: str
    details: Mapping[str, Any] | None


@dataclass(frozen=True, kw_only=True)
class Note(Op):
    """An event of a task inside the job's compound task."""

    kind: RunEventKind
    fields: JsonObject


@dataclass(frozen=True, kw_only=True)
class Complete(Op):
    """Store the output, release dependents and complete the job (fenced)."""

    output: JsonObject
    provenance: JsonObject
    usage: TaskUsage = NO_TASK_USAGE


@dataclass(frozen=True, kw_only=True)
class Fail(Op):
    """The task failed for good: dead-letter the job (fenced) and fail the task."""

    error: str
    payload: JsonObject


@dataclass(frozen=True, kw_only=True)
class Abort(Op):
    """The task was stopped. With ``settle_job`` this write also ends the job (the run was
    cancelled here); without, the queue worker does (cancel request, lost lease, shutdown)."""

    reason: str
    settle_job: bool


class Committer:
    """Writes ops of many handlers in shared transactions (see the module docs)."""

    def __init__(
        self, store: RunStore, *, committed: Callable[[Op, Any], None] | None = None
    ) -> None:
        self._store = store
        self._committed = committed
        self.dispatch: EagerDispatch | None = None  # set by a worker that takes eager jobs
        self._waiting: list[tuple[Op, asyncio.Future[Any] | None]] = []
        self._writer: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._closing = False

    async def submit(self, op: Op) -> Any:
        """Write ``op`` with whatever else is waiting; its result once committed."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((op, future))
        self._kick()
        return await future

    def post(self, op: Op) -> None:
        """Write ``op`` soon (within :data:`POST_DELAY_S`); nobody waits for it."""
        if isinstance(op, Progress) and self._replace_progress(op):
            return
        self._waiting.append((op, None))
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(POST_DELAY_S, self._kick)

    def _replace_progress(self, op: Progress) -> bool:
        """A job's newer progress report replaces its last one still waiting: a task may
        report many times a second, and only the latest is worth a write and an event."""
        for index in range(len(self._waiting) - 1, max(-1, len(self._waiting) - 65), -1):
            waiting, _ = self._waiting[index]
            if waiting.job.id == op.job.id:
                if isinstance(waiting, Progress):
                    self._waiting[index] = (op, None)
                    return True
                return False
        return False

    async def close(self) -> None:
        """Write everything submitted or posted (what the database is unavailable for
        fails: the jobs of those tasks run again once their leases expire)."""
        self._closing = True
        self._kick()
        while self._writer is not None and not self._writer.done():
            await self._writer

    def _kick(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._waiting and (self._writer is None or self._writer.done()):
            self._writer = asyncio.create_task(self._write(), name="graphmesh-run-commits")

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
            try:
                applied = await self._apply(batch)
            except StoreUnavailableError as error:
                await self._retry_later(batch, error)
                continue
            except Exception as error:
                if len(batch) == 1:
                    _settle(batch[0][1], error=error)
                else:
                    await self._one_by_one(batch)
                continue
            await self._done(batch, applied)

    async def _one_by_one(self, batch: list[tuple[Op, asyncio.Future[Any] | None]]) -> None:
        for index, (op, future) in enumerate(batch):
            try:
                applied = await self._apply([(op, future)])
            except StoreUnavailableError as error:
                await self._retry_later(batch[index:], error)
                return
            except Exception as error:
                _settle(future, error=error)
            else:
                await self._done([(op, future)], applied)

    async def _apply(self, batch: list[tuple[Op, asyncio.Future[Any] | None]]) -> Applied:
        """Commit the batch's ops; raises StoreUnavailableError when they must be written
        again. A commit cut off on the way is looked up first: writing a transaction
        again that did commit would repeat its starts and progress events."""
        try:
            return await apply_ops(self._store, [op for op, _ in batch], self.dispatch)
        except CutOffCommit as cut:
            log.warning("a run commit was cut off (%s); asking whether it went through", cut)
            # Polls the database, not an in-process state an event could signal.
            while (committed := await cut.error.committed()) is None and not self._closing:  # noqa: ASYNC110
                await asyncio.sleep(RETRY_PAUSE_S)
            if not committed:
                raise cut.error from None  # written again (or, when closing, failed)
            return cut.applied

    async def _done(
        self, batch: list[tuple[Op, asyncio.Future[Any] | None]], applied: Applied
    ) -> None:
        """Tell the committed outcomes (the ``committed`` hook, then the callers), then
        start the jobs the transaction started here: they find their inputs known."""
        for (op, future), result in zip(batch, applied.results, strict=True):
            if self._committed is not None:
                self._committed(op, result)
            _settle(future, result=result)
        await applied.state.hand_over()

    async def _retry_later(
        self, batch: list[tuple[Op, asyncio.Future[Any] | None]], error: StoreUnavailableError
    ) -> None:
        """Put ``batch`` back in front, to be written again after a pause; when closing,
        fail it instead."""
        if self._closing:
            for _, future in batch:
                _settle(future, error=error)
            return
        log.warning("run writes wait for the database (%s); retrying", error)
        self._waiting[:0] = batch
        await asyncio.sleep(RETRY_PAUSE_S)


def _settle(
    future: asyncio.Future[Any] | None, *, result: Any = None, error: Exception | None = None
) -> None:
    if future is None:
        if error is not None:
            log.warning("a run write nobody waits for failed: %s", error)
        return
    if future.done():  # its caller was cancelled and no longer waits
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


@dataclass(frozen=True)
class Applied:
    """One committed transaction of ops: a result per op, and its state, whose
    ``hand_over`` starts the jobs it started for this process (eager dispatch)."""

    results: list[Any]
    state: TxnState


class CutOffCommit(Exception):
    """:func:`apply_ops`' commit was cut off on the way: what the transaction decided, to
    be used if ``error.committed()`` says it went through."""

    def __init__(self, applied: Applied, error: CommitOutcomeUnknownError) -> None:
        super().__init__(str(error))
        self.applied = applied
        self.error = error


async def apply_ops(
    store: RunStore, ops: list[Op], dispatch: EagerDispatch | None = None
) -> Applied:
    """Apply ``ops`` in one transaction. Tasks they make ready start in this process when
    ``dispatch`` has free slots for them, once the caller calls ``hand_over``. Raises
    :class:`CutOffCommit` when the commit's outcome is unknown."""
    state: TxnState | None = None
    try:
        async with store.transaction() as tx:
            state = TxnState(tx, store.plans, dispatch)
            results = await _decide(state, tx, ops)
            await state.write()
    except CommitOutcomeUnknownError as error:
        # Were it committed, the jobs it started here could not be read back now: their
        # leases run out and they are rescued, as after a lost worker.
        assert state is not None  # only a commit's failure raises it
        state.release_held()
        raise CutOffCommit(Applied(results=results, state=state), error) from error
    except BaseException:
        if state is not None:
            state.release_held()
        raise
    return Applied(results=results, state=state)


async def _decide(state: TxnState, tx: Tx, ops: list[Op]) -> list[Any]:
    """Read what the ops need and apply them to ``state``.

    The reads are sent before the first one is waited for (the run locks first, then the
    task rows), so on Postgres they share one round trip with the completions of the
    fenced jobs."""
    run_ids = sorted({op.run_id for op in ops})
    plans = {run_id: await _plan_or_none(state, run_id) for run_id in run_ids}
    locked = await tx.send("lock_runs", {"run_ids": run_ids})
    tasks = await tx.send("task_states", state.task_params(_touched(ops, plans)))
    starts = [op.job.token for op in ops if isinstance(op, Start)]
    latest = await tx.send("latest_attempts", _token_params(starts)) if starts else None
    completions = [op.job.token for op in ops if isinstance(op, Complete)]
    stale = await tx.complete_jobs(completions) if completions else set()
    state.adopt_runs(await locked.rows())
    state.adopt_tasks(await tasks.rows())
    # A start from an attempt that lost its job (its lease ran out and another attempt
    # took over) is stale like its completion would be: it writes nothing.
    if latest is not None:
        current = {AttemptToken(job_id=i, attempt=a) for i, a in await latest.rows()}
        stale |= set(starts) - current
    # A task ending here frees its slot for a task it makes ready (eager dispatch).
    state.eager_limit = sum(isinstance(op, Complete | Fail) for op in ops)
    scheduler = Scheduler(state)
    return [await _apply(scheduler, tx, op, stale) for op in ops]


def _token_params(tokens: list[AttemptToken]) -> dict[str, list[int]]:
    return {"job_ids": [t.job_id for t in tokens], "attempts": [t.attempt for t in tokens]}


async def _plan_or_none(state: TxnState, run_id: str) -> GraphPlan | None:
    """The run's plan; ``None`` when this process cannot load it (a task type it does not
    know): its ops still apply, failing the run instead of routing (see Scheduler.fail)."""
    try:
        return await state.plan(run_id)
    except GraphmeshError:
        return None


def _touched(ops: list[Op], plans: Mapping[str, GraphPlan | None]) -> set[TaskKey]:
    """The task rows the ops touch: their own, and the tasks a completion releases."""
    keys: set[TaskKey] = set()
    for op in ops:
        keys.add((op.run_id, op.task_id))
        plan = plans[op.run_id]
        if isinstance(op, Complete | Fail) and plan is not None:
            flows = plan.outgoing(op.task_id)
            keys.update((op.run_id, flow.target_task) for flow in flows)
    return keys


async def _apply(scheduler: Scheduler, tx: Tx, op: Op, stale: set[Any]) -> Any:
    run = scheduler.state.runs.get(op.run_id)
    if run is None:
        return None
    job_id = op.job.id
    if isinstance(op, Start):
        return op.job.token not in stale and await scheduler.start(run, op.task_id, job_id)
    if isinstance(op, Progress):
        await scheduler.progress(run, op.task_id, job_id, op.percent, op.message, op.details)
    elif isinstance(op, Note):
        await scheduler.note(run, op.task_id, job_id, op.kind, op.fields)
    elif isinstance(op, Complete):
        return op.job.token not in stale and await scheduler.complete(
            run, op.task_id, job_id, op.output, op.provenance, op.usage
        )
    elif isinstance(op, Fail):
        job_error = JobError(message=op.error, retryable=False)
        return await tx.fail_job(op.job.token, job_error) and await scheduler.fail(
            run, op.task_id, job_id, op.error, op.payload
        )
    elif isinstance(op, Abort):
        if op.settle_job:
            job_error = JobError(kind=ErrorKind.CANCELLED, message=op.reason, retryable=False)
            await tx.fail_job(op.job.token, job_error)
        return await scheduler.abort(run, op.task_id, job_id, op.reason)
    return None
