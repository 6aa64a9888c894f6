"""The durable scheduler's decisions: what one event does to a locked run.

Each method changes the rows of a :class:`~.scheduler_state.TxnState` (which writes them,
with the events and jobs, in the same transaction). Which tasks a settled task makes ready,
which it skips and whether its failure fails the run is decided by the run rules that the
in-process runner uses too (:mod:`graphmesh.orchestrator.graph.progression`), over the
counters kept in the task rows (``remaining``, ``dead``); this module carries the decisions
out: it enqueues the ready tasks' jobs, writes the skips and the events.

Checks against stale workers: a task only starts, progresses, completes or fails for the
job that currently holds it (``job_id``), and only while its run has not ended.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from graphmesh.orchestrator.ai.usage import NO_TASK_USAGE, TaskUsage
from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.graph.progression import NOT_REACHED, Outcome, Step
from graphmesh.orchestrator.runs.durable.plan import GraphPlan
from graphmesh.orchestrator.runs.durable.rows import RunRow, TaskRow, dumps, output_ref
from graphmesh.orchestrator.runs.durable.scheduler_state import TxnState
from graphmesh.orchestrator.runs.records import JsonObject, RunEventKind, RunState, RunStateError
from graphmesh.orchestrator.task.base import TaskStatus

CANCELLED = "the run was cancelled"


class Scheduler:
    """Decisions on runs locked in ``state``."""

    def __init__(self, state: TxnState) -> None:
        self.state = state

    # -- a task's life -----------------------------------------------------------------
    async def start(self, run: RunRow, task_id: str, job_id: int) -> bool:
        """The job's worker is about to run the task; ``False``: it must not (a start that
        arrives after its task settled, e.g. after a completion that started it, too)."""
        task = await self._held(run, task_id, job_id)
        if task is None or not task.open or not run.active:
            return False
        self._begin(run, task)
        return True

    def _begin(self, run: RunRow, task: TaskRow) -> None:
        if run.status == RunState.PENDING:
            run.status, run.started, run.dirty = RunState.RUNNING, True, True
            self.state.event(run, RunEventKind.RUN_STARTED)
        task.status, task.progress, task.error = TaskStatus.PROCESSING, 0.0, None
        task.attempts += 1
        task.started = task.dirty = True
        self.state.event(run, RunEventKind.TASK_STARTED, task_id=task.task_id, status=task.status)

    async def progress(
        self,
        run: RunRow,
        task_id: str,
        job_id: int,
        percent: float,
        message: str,
        details: Mapping[str, Any] | None,
    ) -> None:
        task = await self._held(run, task_id, job_id)
        if task is None or task.status != TaskStatus.PROCESSING or run.status.finished:
            return
        task.progress, task.dirty = percent, True
        self.state.event(
            run,
            RunEventKind.TASK_PROGRESS,
            task_id=task_id,
            status=task.status,
            progress=percent,
            message=message,
            details=details,
        )

    async def note(
        self, run: RunRow, parent_id: str, job_id: int, kind: RunEventKind, fields: JsonObject
    ) -> None:
        """An event of a task inside a compound task's subgraph (``parent/child``)."""
        task = await self._held(run, parent_id, job_id)
        if task is not None and task.status == TaskStatus.PROCESSING and not run.status.finished:
            self.state.event(run, kind, **fields)

    async def complete(
        self,
        run: RunRow,
        task_id: str,
        job_id: int,
        output: JsonObject,
        provenance: JsonObject,
        usage: TaskUsage = NO_TASK_USAGE,
    ) -> bool:
        """Store the output and release the tasks it feeds; ``False``: a stale attempt. A
        task still PENDING had its start not written (lost, or in a transaction that has
        not committed yet): the completion writes it first, so a task never waits for
        good behind a completed job."""
        task = await self._held(run, task_id, job_id)
        if task is None or not task.open or run.status.finished:
            return False
        if task.status == TaskStatus.PENDING:
            if not run.active:
                return False
            self._begin(run, task)
        task.progress = 100.0
        self.state.settle(run, task, TaskStatus.COMPLETED)
        self.state.store_output(task, output, provenance)
        details = None
        if not usage.empty:
            task.usage = dumps(usage.to_json())
            details = {"usage": usage.to_json()}
        self.state.event(
            run,
            RunEventKind.TASK_COMPLETED,
            task_id=task_id,
            status=task.status,
            progress=100.0,
            output_ref=output_ref(run.run_id, task_id),
            details=details,
        )
        plan = await self.state.plan(run.run_id)
        await self._follow(run, plan, await self._settle(plan, task_id, Outcome.COMPLETED))
        self._close_if_done(run)
        return True

    async def fail(
        self, run: RunRow, task_id: str, job_id: int | None, error: str, payload: JsonObject
    ) -> bool:
        """A task failed for good (``job_id`` ``None``: whatever job holds it). Its
        ``[error]`` handlers get ``payload``; without handlers the run fails."""
        task = await self._held(run, task_id, job_id)
        if task is None or not task.open or run.status.finished:
            return False
        task.error, task.error_payload = error, payload
        self.state.settle(run, task, TaskStatus.FAILED)
        self._task_event(run, task, RunEventKind.TASK_FAILED, error=error)
        plan = await self._plan_or_none(run)
        if run.status == RunState.CANCELLING:
            self._close_if_done(run)
            return True
        if plan is None:  # this process cannot load the graph: no handler can be found
            await self.fail_run(run, error)
            return True
        step = await self._settle(plan, task_id, Outcome.FAILED)
        if step.run_failed:
            await self.fail_run(run, error)
        else:
            await self._follow(run, plan, step)  # the handlers run, the rest is skipped
            self._close_if_done(run)
        return True

    async def abort(self, run: RunRow, task_id: str, job_id: int | None, reason: str) -> bool:
        """A running task of a run that is being cancelled stopped; ``False`` when its run
        still runs (the job runs it again) or the task was settled already."""
        task = await self._held(run, task_id, job_id)
        if task is None or task.status != TaskStatus.PROCESSING or run.active:
            return False
        task.error = reason
        self.state.settle(run, task, TaskStatus.FAILED)
        self._task_event(run, task, RunEventKind.TASK_ABORTED, error=reason)
        self._close_if_done(run)
        return True

    # -- a run's life ------------------------------------------------------------------
    async def fail_run(self, run: RunRow, error: str) -> None:
        """Fail the run: running tasks are aborted, pending ones skipped, jobs cancelled."""
        run.status, run.error, run.ended, run.dirty = RunState.FAILED, error, True, True
        await self._stop_open_tasks(run, f"aborted: {error}")
        self.state.event(run, RunEventKind.RUN_FAILED, error=error, error_type="FAILED")

    async def cancel(self, run: RunRow, reason: str) -> None:
        """Start cancelling: pending tasks are skipped now, running ones are asked to stop
        (their jobs get a cancel request); the run is CANCELLED once none runs."""
        if run.status.finished:
            raise RunStateError(f"run {run.run_id} already ended ({run.status})")
        if run.status == RunState.CANCELLING:
            return
        run.status, run.cancel_reason, run.dirty = RunState.CANCELLING, reason, True
        self.state.event(run, RunEventKind.RUN_CANCELLING, message=reason)
        for task in await self.state.open_tasks(run.run_id):
            self.state.cancel_job(task)
            if task.status == TaskStatus.PENDING:
                self._skip_one(run, task, "not reached: the run was cancelled")
        self._close_if_done(run)

    async def resume(self, run: RunRow) -> None:
        """Run again what did not complete: completed tasks keep their outputs."""
        if run.status not in (RunState.FAILED, RunState.CANCELLED):
            raise RunStateError(
                f"only failed or cancelled runs can resume; {run.run_id} is {run.status}"
            )
        plan = await self.state.plan(run.run_id)
        tasks = {task.task_id: task for task in await self.state.all_tasks(run.run_id)}
        done = {task_id for task_id, task in tasks.items() if task.status == TaskStatus.COMPLETED}
        run.generation += 1
        run.status, run.error, run.cancel_reason = RunState.PENDING, None, ""
        run.reopened, run.ended, run.dirty = True, False, True
        run.open_tasks = len(tasks) - len(done)
        for task_id, task in tasks.items():
            if task_id not in done:
                _reset(task, plan, done)
        self.state.event(
            run, RunEventKind.RUN_RESUMED, message=f"{len(done)} completed task(s) kept"
        )
        for node in plan.graph:
            row = tasks[node.id]
            if row.status == TaskStatus.PENDING and row.remaining == 0:
                await self._ready(run, plan, row)
        self._close_if_done(run)

    async def time_out(self, run: RunRow) -> None:
        """Fail the run if it is still going past its deadline."""
        if run.active and run.overdue:
            await self.fail_run(run, f"the run timed out after {run.timeout_s:g} s")

    def created(self, run: RunRow, roots: Sequence[TaskRow]) -> None:
        """A run just inserted: log its creation and enqueue its root tasks (``roots``:
        their rows, as inserted)."""
        self.state.runs[run.run_id] = run
        self.state.event(run, RunEventKind.RUN_CREATED)
        for row in roots:
            self.state.tasks[run.run_id, row.task_id] = row
            self.state.enqueue(row)
        self._close_if_done(run)

    # -- helpers -----------------------------------------------------------------------
    async def _plan_or_none(self, run: RunRow) -> GraphPlan | None:
        """The run's plan, or ``None`` when this process cannot parse its graph (a task
        type it does not know): a failure then fails the run, as no handler can be found."""
        try:
            return await self.state.plan(run.run_id)
        except GraphmeshError:
            return None

    async def _held(self, run: RunRow, task_id: str, job_id: int | None) -> TaskRow | None:
        task = await self.state.task(run.run_id, task_id)
        if task is None or (job_id is not None and task.job_id != job_id):
            return None
        return task

    async def _settle(self, plan: GraphPlan, source: str, outcome: Outcome) -> Step:
        """``source`` settled: the run rules count it off the rows of the tasks it feeds."""
        targets = _Counters(
            await self.state.targets(plan.run_id, plan.rules.targets(source, outcome))
        )
        return plan.rules.settle(source, outcome, targets, targets)

    async def _follow(self, run: RunRow, plan: GraphPlan, step: Step) -> None:
        """Skip what a settled task made ready dead, enqueue what it made ready (a task no
        longer PENDING, e.g. skipped by a cancel, stays as it is)."""
        tasks = self.state.tasks
        for task_id in step.skipped:
            task = tasks[run.run_id, task_id]
            if task.status == TaskStatus.PENDING:
                await self._skip(run, plan, task)
        for task_id in step.ready:
            task = tasks[run.run_id, task_id]
            if task.status == TaskStatus.PENDING and run.active:
                self.state.enqueue(task)

    async def _ready(self, run: RunRow, plan: GraphPlan, task: TaskRow) -> None:
        """A task of a resumed run that waits for nothing: a dead one is skipped."""
        if task.dead:
            await self._skip(run, plan, task)
        elif run.active:
            self.state.enqueue(task)

    async def _skip(self, run: RunRow, plan: GraphPlan, first: TaskRow) -> None:
        # A worklist, not recursion: a long chain below a dead task must not recurse.
        stack = [first]
        while stack:
            task = stack.pop()
            self._skip_one(run, task, NOT_REACHED)
            step = await self._settle(plan, task.task_id, Outcome.SKIPPED)
            below = (self.state.tasks[run.run_id, task_id] for task_id in step.skipped)
            stack.extend(target for target in below if target.status == TaskStatus.PENDING)

    def _skip_one(self, run: RunRow, task: TaskRow, reason: str) -> None:
        self.state.settle(run, task, TaskStatus.SKIPPED)
        self.state.event(
            run, RunEventKind.TASK_SKIPPED, task_id=task.task_id, status=task.status, message=reason
        )

    async def _stop_open_tasks(self, run: RunRow, reason: str) -> None:
        for task in await self.state.open_tasks(run.run_id):
            self.state.cancel_job(task)
            if task.status == TaskStatus.PENDING:
                self._skip_one(run, task, NOT_REACHED)
            else:
                task.error = reason
                self.state.settle(run, task, TaskStatus.FAILED)
                self._task_event(run, task, RunEventKind.TASK_ABORTED, error=reason)

    def _task_event(self, run: RunRow, task: TaskRow, kind: RunEventKind, *, error: str) -> None:
        self.state.event(
            run,
            kind,
            task_id=task.task_id,
            status=task.status,
            progress=task.progress,
            error=error,
            error_type=kind.value,
        )

    def _close_if_done(self, run: RunRow) -> None:
        """End the run once no task is open: COMPLETED, or CANCELLED when cancelling."""
        if run.open_tasks > 0 or run.status.finished:
            return
        if run.status == RunState.CANCELLING:
            run.status, run.error = RunState.CANCELLED, run.cancel_reason or CANCELLED
            kind, error_type = RunEventKind.RUN_CANCELLED, "CANCELLED"
        else:
            run.status, run.error = RunState.COMPLETED, None
            kind, error_type = RunEventKind.RUN_COMPLETED, None
        run.ended = run.dirty = True
        self.state.event(run, kind, error=run.error, error_type=error_type)


def _reset(task: TaskRow, plan: GraphPlan, done: set[str]) -> None:
    """A task that did not complete, made PENDING again for a resumed run."""
    task.status, task.progress, task.error, task.error_payload = TaskStatus.PENDING, 0.0, None, None
    task.remaining, task.dead = plan.rules.resumed(task.task_id, done)
    task.job_id = None
    task.reset = task.dirty = True


class _Counters:
    """The run rules' counts and kills (``remaining``, ``dead``) kept in task rows, by
    task id; a change marks its row to be written."""

    __slots__ = ("rows",)

    def __init__(self, rows: dict[str, TaskRow]) -> None:
        self.rows = rows

    def __getitem__(self, task_id: str) -> int:
        return self.rows[task_id].remaining

    def __setitem__(self, task_id: str, count: int) -> None:
        row = self.rows[task_id]
        row.remaining, row.dirty = count, True

    def __contains__(self, task_id: object) -> bool:
        return isinstance(task_id, str) and self.rows[task_id].dead

    def add(self, task_id: str) -> None:
        row = self.rows[task_id]
        row.dead = row.dirty = True
