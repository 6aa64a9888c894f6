"""The state one durable transaction reads and changes, written back in a few statements.

A :class:`TxnState` locks the runs it touches (their rows hand out event seqs), loads task
rows on demand, collects events, jobs to enqueue and jobs to cancel, and writes it
all at the end with one batch statement per kind. The decisions are in :mod:`.scheduler`.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from graphmesh.orchestrator.queue.base import Job
from graphmesh.orchestrator.runs.durable.dispatch import EagerDispatch
from graphmesh.orchestrator.runs.durable.plan import GraphPlan, PlanCache
from graphmesh.orchestrator.runs.durable.rows import EventRow, RunRow, TaskRow, dumps
from graphmesh.orchestrator.runs.durable.store import Started, Tx
from graphmesh.orchestrator.runs.metrics import count_events
from graphmesh.orchestrator.runs.records import JsonObject, RunEventKind
from graphmesh.orchestrator.task.base import TaskStatus

TaskKey = tuple[str, str]
log = logging.getLogger(__name__)


class TxnState:
    """Rows of one transaction; every change goes through here so it is written back."""

    def __init__(self, tx: Tx, plans: PlanCache, dispatch: EagerDispatch | None = None) -> None:
        self.tx = tx
        self.plans = plans
        self.dispatch = dispatch
        self.eager_limit = 0  # how many ready tasks may start here (see dispatch.py)
        self.held = 0  # worker slots held for jobs started in this transaction
        self.started: Started | None = None
        self.runs: dict[str, RunRow] = {}
        self.tasks: dict[TaskKey, TaskRow] = {}
        self.events: list[EventRow] = []
        self.ready: list[TaskRow] = []
        self.cancelled_jobs: list[int] = []

    # -- reading -----------------------------------------------------------------------
    async def lock(self, run_ids: Iterable[str]) -> dict[str, RunRow]:
        """Lock the runs (in run id order, every transaction alike) and load their rows."""
        wanted = sorted(set(run_ids) - set(self.runs))
        if wanted:
            self.adopt_runs(await self.tx.fetch("lock_runs", {"run_ids": wanted}))
        return self.runs

    def adopt_runs(self, rows: Iterable[Sequence[Any]]) -> None:
        """Take the rows of a ``lock_runs`` sent ahead."""
        for row in rows:
            run = RunRow.from_row(row)
            self.runs[run.run_id] = run

    def adopt_tasks(self, rows: Iterable[Sequence[Any]]) -> None:
        """Take the rows of a ``task_states`` sent ahead (rows loaded already win)."""
        for row in rows:
            task = TaskRow.from_row(row)
            self.tasks.setdefault((task.run_id, task.task_id), task)

    @staticmethod
    def task_params(keys: Iterable[TaskKey]) -> dict[str, list[str]]:
        ordered = sorted(set(keys))
        return {"run_ids": [run for run, _ in ordered], "task_ids": [task for _, task in ordered]}

    async def plan(self, run_id: str) -> GraphPlan:
        return await self.plans.get(run_id, self.tx.fetch)

    async def load(self, keys: Iterable[TaskKey]) -> None:
        """Load the task rows not loaded yet, in one query."""
        missing = {key for key in keys if key not in self.tasks}
        if missing:
            self.adopt_tasks(await self.tx.fetch("task_states", self.task_params(missing)))

    async def task(self, run_id: str, task_id: str) -> TaskRow | None:
        await self.load([(run_id, task_id)])
        return self.tasks.get((run_id, task_id))

    async def targets(self, run_id: str, task_ids: Collection[str]) -> dict[str, TaskRow]:
        """The rows of tasks of one run (e.g. those a settled task feeds), by task id."""
        if not task_ids:
            return {}
        await self.load((run_id, task_id) for task_id in task_ids)
        return {task_id: self.tasks[run_id, task_id] for task_id in task_ids}

    async def open_tasks(self, run_id: str) -> list[TaskRow]:
        """Every PENDING or PROCESSING task of the run."""
        tasks = await self._tasks_of("open_task_states", run_id)
        return [task for task in tasks if task.open]

    async def all_tasks(self, run_id: str) -> list[TaskRow]:
        return await self._tasks_of("all_task_states", run_id)

    async def _tasks_of(self, query: str, run_id: str) -> list[TaskRow]:
        found = []
        for row in await self.tx.fetch(query, {"run_id": run_id}):
            loaded = TaskRow.from_row(row)
            # A row already loaded (and maybe changed) in this transaction is the current one.
            found.append(self.tasks.setdefault((loaded.run_id, loaded.task_id), loaded))
        return found

    # -- changing ----------------------------------------------------------------------
    def event(self, run: RunRow, kind: RunEventKind, **fields: Any) -> None:
        """Append an event: the next seq of the run, stamped with the run's status now."""
        run.last_seq += 1
        run.dirty = True
        self.events.append(
            EventRow(
                run_id=run.run_id,
                seq=run.last_seq,
                kind=kind,
                run_status=run.status,
                traceparent=run.traceparent,
                **fields,
            )
        )

    def settle(self, run: RunRow, task: TaskRow, status: TaskStatus) -> None:
        """Move an open task to a final status (COMPLETED, FAILED or SKIPPED)."""
        if task.open:
            run.open_tasks -= 1
            run.dirty = True
        task.status = status
        task.ended = task.dirty = True

    def store_output(self, task: TaskRow, output: JsonObject, provenance: JsonObject) -> None:
        task.output, task.provenance = dumps(output), dumps(provenance)
        task.dirty = True

    def enqueue(self, task: TaskRow) -> None:
        self.ready.append(task)

    def cancel_job(self, task: TaskRow) -> None:
        if task.job_id is not None:
            self.cancelled_jobs.append(task.job_id)

    # -- writing -----------------------------------------------------------------------
    async def write(self) -> None:
        """Write every change; then the store signals the runs that changed at commit."""
        await self._enqueue_ready()
        if self.cancelled_jobs:
            await self.tx.cancel_jobs(sorted(set(self.cancelled_jobs)))
        dirty = [task.params() for task in self.tasks.values() if task.dirty]
        await self._write("update_tasks", dirty)
        await self._write("insert_events", [event.params() for event in self.events])
        if self.events:
            kinds = [event.kind for event in self.events]
            self.tx.after_commit(lambda: count_events(kinds))
        await self._write("update_runs", [run.params() for run in self.runs.values() if run.dirty])
        for run in self.runs.values():
            if run.dirty:
                self.tx.signal(run.run_id, run.status)

    async def _enqueue_ready(self) -> None:
        """Enqueue the jobs of the tasks made ready; with a dispatch, those this process
        has free slots for start here at once (see :meth:`hand_over`)."""
        if not self.ready:
            return
        specs = []
        for task in self.ready:
            plan = await self.plan(task.run_id)
            spec = plan.job(task.task_id, self.runs[task.run_id].generation)
            specs.append(spec)
            task.job_key = spec.key
            task.dirty = True
        if self.dispatch is not None:
            started, specs = self.dispatch.split(specs, limit=self.eager_limit)
            self.held = len(started)
            if started:
                self.started = await self.tx.enqueue_started(
                    started, lease_s=self.dispatch.lease_s, session=self.dispatch.session
                )
        if specs:
            await self.tx.enqueue(specs)

    async def hand_over(self) -> None:
        """After the commit: run the jobs started for this process in the slots held for
        them (a job whose key was held by another job frees its slot)."""
        if self.dispatch is None or not self.held:
            return
        jobs: list[Job | None] = []
        try:
            if self.started is not None:
                jobs = await self.started.jobs()
        except Exception:
            # Committed, but not to be run here: their leases run out and they run again.
            log.exception("reading the jobs started for this worker failed")
        self.dispatch.adopt([job for job in jobs if job is not None], held=self.held)
        self.held = 0

    def release_held(self) -> None:
        """The transaction failed: free the slots held for its jobs."""
        if self.dispatch is not None and self.held:
            self.dispatch.adopt([], held=self.held)
            self.held = 0

    async def _write(self, query: str, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            await self.tx.write_rows(query, rows)
