"""What a job reads before it runs its task: may it run, and what do its inputs come from.

The reads of all handlers waiting at the same time share one round trip (a coalescer):
per run, the task rows with their run's status, and the rows of their upstream tasks.
No lock is taken: the start itself is written later, in the transaction that also
checks it (see :class:`~.batch.Start`); a run stopped in between only costs an
execution whose result is then discarded.

Outcomes this process committed itself are remembered (a bounded LRU), so a task whose
upstream tasks all ran here starts without a read. Skipping the check is safe: a job is
only ever claimable for an open task (a completion completes its job in the same
transaction), and a run that stops is announced to this process by its signals.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from graphmesh.orchestrator.queue.base import Job
from graphmesh.orchestrator.queue.coalesce import Coalescer
from graphmesh.orchestrator.runs.durable.plan import GraphPlan
from graphmesh.orchestrator.runs.durable.rows import ACTIVE_RUN, OPEN_TASK, Upstream, task_status
from graphmesh.orchestrator.runs.durable.store import Query, Row, RunStore
from graphmesh.orchestrator.runs.records import RunState
from graphmesh.orchestrator.task.base import TaskStatus

Request = tuple[Job, GraphPlan]
Inputs = dict[str, Upstream]
REMEMBERED = 20_000


class StartReader:
    """Coalesced start reads and remembered outcomes (see the module docs)."""

    def __init__(self, store: RunStore, *, remember: int = REMEMBERED) -> None:
        self._store = store
        self._reads: Coalescer[Request, Inputs | None] = Coalescer(self._read_batch)
        self._known: OrderedDict[tuple[str, str], Upstream] = OrderedDict()
        self._remember = remember

    async def read(self, job: Job, plan: GraphPlan) -> Inputs | None:
        """The upstream rows of the job's task by task id, or ``None`` when the job must
        not run it (its run stopped, the task settled, or another job holds it)."""
        known = self._known_inputs(plan, _task_id(job))
        if known is not None:
            return known
        return await self._reads.submit((job, plan))

    def remember(self, run_id: str, upstream: Upstream) -> None:
        """An outcome this process committed (a completion, or a failure's payload)."""
        key = (run_id, upstream.task_id)
        self._known[key] = upstream
        self._known.move_to_end(key)
        while len(self._known) > self._remember:
            self._known.popitem(last=False)

    def _known_inputs(self, plan: GraphPlan, task_id: str) -> Inputs | None:
        found: Inputs = {}
        for flow in plan.incoming(task_id):
            upstream = self._known.get((plan.run_id, flow.source_task))
            if upstream is None:
                return None
            found[flow.source_task] = upstream
        return found if found else None  # a root task still checks its run once

    async def close(self) -> None:
        await self._reads.close()

    async def _read_batch(self, requests: list[Request]) -> list[Inputs | None]:
        runs = sorted({plan.run_id for _, plan in requests})
        queries: list[Query] = []
        for run_id in runs:
            mine = [(job, plan) for job, plan in requests if plan.run_id == run_id]
            tasks = sorted({_task_id(job) for job, _ in mine})
            sources = sorted(
                {flow.source_task for job, plan in mine for flow in plan.incoming(_task_id(job))}
            )
            queries.append(("start_checks", {"run_id": run_id, "task_ids": tasks}))
            queries.append(("task_inputs", {"run_id": run_id, "task_ids": sources}))
        results = await self._store.fetch_many(queries)
        checks = {run: _checks(results[2 * i]) for i, run in enumerate(runs)}
        upstream = {run: _upstream(results[2 * i + 1]) for i, run in enumerate(runs)}
        return [
            _inputs(job, plan, checks[plan.run_id], upstream[plan.run_id]) for job, plan in requests
        ]


def _task_id(job: Job) -> str:
    return str(job.payload["task_id"])


def _checks(rows: Sequence[Row]) -> dict[str, tuple[TaskStatus, int | None, RunState]]:
    return {
        task: (task_status(status), job_id, RunState(run)) for task, status, job_id, run in rows
    }


def _upstream(rows: Sequence[Row]) -> Inputs:
    found = (Upstream.from_row(row) for row in rows)
    return {row.task_id: row for row in found}


def _inputs(
    job: Job,
    plan: GraphPlan,
    checks: dict[str, tuple[TaskStatus, int | None, RunState]],
    upstream: Inputs,
) -> Inputs | None:
    task_id = _task_id(job)
    check = checks.get(task_id)
    if check is None:
        return None
    status, job_id, run_status = check
    if status not in OPEN_TASK or job_id != job.id or run_status not in ACTIVE_RUN:
        return None
    return {flow.source_task: upstream[flow.source_task] for flow in plan.incoming(task_id)}
