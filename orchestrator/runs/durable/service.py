"""DurableRunService: runs as data in SQLite or Postgres, tasks as jobs on the job queue.

Every change of a run is one transaction that also appends its events to
``graphmesh_run_events`` (the outbox; seq per run from 1, no gaps) and enqueues the jobs of
the tasks it makes ready: creating a run enqueues its root tasks, and a completing task
enqueues its ready dependents (see :mod:`.scheduler`). Tasks run in any process that
holds a :class:`~.worker.RunWorker` on the same database, so any orchestrator
replica can pick up any run, and a killed one loses nothing: completed tasks never run
again, in-flight ones run again (at-least-once) with the same idempotency key.

Open one with :class:`~.postgres.PostgresRunService` or
:class:`~.sqlite.SqliteRunService`; both run tasks in-process unless told not to.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from graphmesh.orchestrator.graph import graph_from_json, graph_to_json
from graphmesh.orchestrator.runs.durable.plan import GraphPlan
from graphmesh.orchestrator.runs.durable.rows import (
    RunRow,
    TaskRow,
    as_time,
    dumps,
    event_record,
    json_copy,
    required_time,
    run_record,
)
from graphmesh.orchestrator.runs.durable.scheduler import Scheduler
from graphmesh.orchestrator.runs.durable.scheduler_state import TxnState
from graphmesh.orchestrator.runs.durable.store import RunStore
from graphmesh.orchestrator.runs.memory import check_run_inputs
from graphmesh.orchestrator.runs.paging import PageTokens, default_page_tokens, run_scope
from graphmesh.orchestrator.runs.records import (
    JsonObject,
    Page,
    RunEventRecord,
    RunFilter,
    RunNotFoundError,
    RunRecord,
    RunState,
    RunStateError,
    TaskState,
    TenantUsage,
)
from graphmesh.orchestrator.task.base import TaskStatus
from graphmesh.orchestrator.task.registry import TaskRegistry

if TYPE_CHECKING:
    from graphmesh.orchestrator.runs.durable.worker import RunWorker

Change = Callable[[Scheduler, RunRow], Awaitable[None]]
EVENT_PAGE = 500
WATCH_POLL_S = 1.0  # a watcher re-reads this often even without a signal
NO_TOKEN = 2**62


class DurableRunService:
    """The :class:`~graphmesh.orchestrator.runs.records.RunService` over a :class:`RunStore`."""

    def __init__(
        self, store: RunStore, *, registry: TaskRegistry, page_tokens: PageTokens | None = None
    ) -> None:
        self.store = store
        self._registry = registry
        self._page_tokens = page_tokens or default_page_tokens()
        self.worker: RunWorker | None = None  # the tasks this process runs, if it runs any

    # -- shutdown (a Drainable of the service kit) --------------------------------------
    def stop_taking_work(self) -> None:
        """Start no more tasks here (see :meth:`RunWorker.stop_taking_work`)."""
        if self.worker is not None:
            self.worker.stop_taking_work()

    async def drain(self, finish_s: float) -> None:
        """Let the tasks running here finish within ``finish_s``, then hand the rest back."""
        if self.worker is not None:
            await self.worker.drain(finish_s)

    # -- RunService --------------------------------------------------------------------
    async def create_run(
        self,
        *,
        graph: JsonObject,
        inputs: JsonObject,
        tenant: str,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the run's deadline, not this call's)
        traceparent: str | None = None,
    ) -> RunRecord:
        """Validate the graph, then store the run, its tasks and RUN_CREATED and enqueue the
        root tasks, all in one transaction."""
        key = idempotency_key or None
        if key is not None:
            existing = await self._by_key(tenant, key)
            if existing is not None:
                return await self._record(existing, tenant, deduplicated=True)
        task_graph = graph_from_json(graph, self._registry)
        check_run_inputs(task_graph, inputs)
        run_id = uuid.uuid4().hex
        plan = GraphPlan(
            run_id,
            task_graph,
            json.loads(dumps(inputs)),
            self._registry,
            traceparent=traceparent,
            tenant=tenant,
        )
        created = await self._insert(plan, tenant, key, dict(labels or {}), timeout_s=timeout)
        if created is not None:
            return created
        # A concurrent call with the same key created the run first.
        found = await self._by_key(tenant, key or "")
        if found is None:
            raise RunStateError("the run of this idempotency key vanished; try again")
        return await self._record(found, tenant, deduplicated=True)

    async def get_run(self, run_id: str, *, tenant: str) -> RunRecord:
        return await self._record(run_id, tenant)

    async def list_runs(
        self, run_filter: RunFilter, *, page_size: int = 50, page_token: str = ""
    ) -> Page[RunRecord]:
        """Newest first; the token holds the ordinal of the page's last run (keyset)."""
        size, tokens, scope = max(1, page_size), self._page_tokens, run_scope(run_filter)
        before = NO_TOKEN
        if page_token:
            position = tokens.decode(
                page_token, listing="runs", tenant=run_filter.tenant, scope=scope
            )
            before = min(int(position[0]), NO_TOKEN)
        params = {
            "tenant": run_filter.tenant,
            "before": before,
            "statuses": sorted(s.value for s in run_filter.statuses) or None,
            "labels": dumps(dict(run_filter.labels)),
            "limit": size + 1,
        }
        rows = await self.store.fetch("list_runs", params)
        records = [await self._with_tasks(row) for row in rows[:size]]
        token = ""
        if len(rows) > size:
            position = [int(rows[size - 1][-1])]
            token = tokens.encode(
                listing="runs", tenant=run_filter.tenant, scope=scope, position=position
            )
        return Page(items=records, next_page_token=token)

    async def tenant_usage(self, tenant: str, *, idempotency_key: str | None = None) -> TenantUsage:
        params = {"tenant": tenant, "idempotency_key": idempotency_key}
        ((runs, tasks, existing),) = await self.store.fetch("tenant_usage", params)
        return TenantUsage(active_runs=int(runs), open_tasks=int(tasks), existing_run=existing)

    async def cancel_run(self, run_id: str, *, tenant: str, reason: str = "") -> RunRecord:
        await self._change(run_id, tenant, lambda scheduler, run: scheduler.cancel(run, reason))
        return await self._record(run_id, tenant)

    async def resume_run(self, run_id: str, *, tenant: str) -> RunRecord:
        await self._change(run_id, tenant, lambda scheduler, run: scheduler.resume(run))
        return await self._record(run_id, tenant)

    async def watch_run(
        self, run_id: str, *, tenant: str, from_seq: int = 0
    ) -> AsyncIterator[RunEventRecord]:
        """Stored events after ``from_seq``, then new ones as they commit (woken by the
        run's signals, re-reading every :data:`WATCH_POLL_S` anyway); ends once the run
        has ended and its last event was given."""
        await self._check_visible(run_id, tenant)
        seq = max(0, from_seq)
        with self.store.signals.waiter(run_id) as changed:
            while True:
                changed.clear()
                rows = await self.store.fetch(
                    "events_after", {"run_id": run_id, "seq": seq, "limit": EVENT_PAGE}
                )
                for row in rows:
                    event = event_record(row)
                    seq = event.seq
                    yield event
                if len(rows) == EVENT_PAGE:
                    continue
                status, last_seq = (await self.store.fetch("run_progress", {"run_id": run_id}))[0]
                if seq < last_seq:
                    continue
                if RunState(status).finished:
                    return
                await _wait(changed, WATCH_POLL_S)

    async def get_task_output(self, run_id: str, task_id: str, *, tenant: str) -> JsonObject:
        params = {"run_id": run_id, "tenant": tenant, "task_id": task_id}
        rows = await self.store.fetch("task_output", params)
        if not rows:
            await self._check_visible(run_id, tenant)
            raise RunNotFoundError(f"run {run_id} has no task {task_id!r}")
        status, output = rows[0]
        if status != TaskStatus.COMPLETED or output is None:
            raise RunStateError(f"task {task_id!r} of run {run_id} has no output ({status})")
        result: JsonObject = json.loads(output)
        return result

    # -- helpers -----------------------------------------------------------------------
    async def _insert(
        self,
        plan: GraphPlan,
        tenant: str,
        key: str | None,
        labels: dict[str, str],
        *,
        timeout_s: float | None,
    ) -> RunRecord | None:
        """Store the run and return its record as committed; ``None`` when a run of this
        idempotency key exists already."""
        graph = plan.graph
        graph_json = graph_to_json(graph)
        remaining = plan.rules.counts()
        params = {
            "run_id": plan.run_id,
            "tenant": tenant,
            "status": RunState.PENDING.value,
            "graph": dumps(graph_json),
            "inputs": dumps(plan.inputs),
            "labels": dumps(labels),
            "idempotency_key": key,
            "open_tasks": len(remaining),
            "timeout_s": timeout_s,
            "traceparent": plan.traceparent,
        }
        async with self.store.transaction() as tx:
            if not await tx.fetch("insert_run", params):
                return None
            if remaining:
                await tx.write_rows("insert_tasks", _task_rows(plan, remaining))
            state = TxnState(tx, self.store.plans)
            self.store.plans.adopt(plan)
            run = _new_run(plan.run_id, tenant, len(remaining), timeout_s)
            run.traceparent = plan.traceparent
            # Only the root tasks change in this transaction (their jobs): the others'
            # rows are as just inserted, and are loaded when a transaction needs them.
            roots = [_new_task(plan.run_id, task_id) for task_id, n in remaining.items() if not n]
            Scheduler(state).created(run, roots)
            await state.write()
            tasks = _pending_states(plan)  # built while the server writes the task rows
            row = (await tx.fetch("created_run", {"run_id": plan.run_id}))[0]
        return _created_record(
            row,
            tasks,
            run_id=plan.run_id,
            tenant=tenant,
            key=key,
            labels=labels,
            graph=graph_json,
            inputs=json_copy(plan.inputs),
            traceparent=plan.traceparent,
        )

    async def _change(self, run_id: str, tenant: str, change: Change) -> None:
        async with self.store.transaction() as tx:
            state = TxnState(tx, self.store.plans)
            run = (await state.lock([run_id])).get(run_id)
            if run is None or run.tenant != tenant:
                raise RunNotFoundError(f"no run {run_id!r}")
            await change(Scheduler(state), run)
            await state.write()

    async def _by_key(self, tenant: str, key: str) -> str | None:
        rows = await self.store.fetch("run_by_key", {"tenant": tenant, "idempotency_key": key})
        return str(rows[0][0]) if rows else None

    async def _record(self, run_id: str, tenant: str, *, deduplicated: bool = False) -> RunRecord:
        rows = await self.store.fetch("get_run", {"run_id": run_id, "tenant": tenant})
        if not rows:
            raise RunNotFoundError(f"no run {run_id!r}")
        return await self._with_tasks(rows[0], deduplicated=deduplicated)

    async def _with_tasks(self, row: Sequence[Any], *, deduplicated: bool = False) -> RunRecord:
        tasks = await self.store.fetch("run_task_states", {"run_id": row[0]})
        return run_record(row, tasks, deduplicated=deduplicated)

    async def _check_visible(self, run_id: str, tenant: str) -> None:
        if not await self.store.fetch("run_exists", {"run_id": run_id, "tenant": tenant}):
            raise RunNotFoundError(f"no run {run_id!r}")


def _new_run(run_id: str, tenant: str, tasks: int, timeout_s: float | None) -> RunRow:
    return RunRow(
        run_id=run_id,
        tenant=tenant,
        status=RunState.PENDING,
        last_seq=0,
        open_tasks=tasks,
        generation=0,
        error=None,
        cancel_reason="",
        timeout_s=timeout_s,
    )


def _pending_states(plan: GraphPlan) -> tuple[TaskState, ...]:
    """The tasks of a run just created, as ``get_run`` reads their rows."""
    return tuple(
        TaskState(task_id=task.id, type=task.type, status=TaskStatus.PENDING) for task in plan.graph
    )


def _created_record(
    row: Sequence[Any],
    tasks: tuple[TaskState, ...],
    *,
    run_id: str,
    tenant: str,
    key: str | None,
    labels: dict[str, str],
    graph: JsonObject,
    inputs: JsonObject,
    traceparent: str | None,
) -> RunRecord:
    """What ``get_run`` returns for a run this process just created: its ``created_run``
    row with what was stored, rather than the graph and every task row read back."""
    status, error, last_seq, created_at, updated_at, started_at, ended_at = row
    return RunRecord(
        run_id=run_id,
        tenant=tenant,
        status=RunState(status),
        graph=graph,
        inputs=inputs,
        labels=labels,
        idempotency_key=key,
        created_at=required_time(created_at),
        updated_at=required_time(updated_at),
        error=error,
        last_seq=int(last_seq),
        tasks=tasks,
        started_at=as_time(started_at),
        ended_at=as_time(ended_at),
        traceparent=traceparent,
    )


def _new_task(run_id: str, task_id: str) -> TaskRow:
    """The row of a root task as just inserted (nothing to wait for)."""
    return TaskRow(
        run_id=run_id,
        task_id=task_id,
        status=TaskStatus.PENDING,
        progress=0.0,
        attempts=0,
        remaining=0,
        dead=False,
        job_id=None,
        error=None,
    )


def _task_rows(plan: GraphPlan, remaining: Mapping[str, int]) -> list[dict[str, Any]]:
    return [
        {
            "run_id": plan.run_id,
            "task_id": task.id,
            "position": position,
            "type": task.type,
            "remaining": remaining[task.id],
        }
        for position, task in enumerate(plan.graph)
    ]


async def _wait(event: asyncio.Event, timeout_s: float) -> None:
    try:
        await asyncio.wait_for(event.wait(), timeout_s)
    except TimeoutError:
        pass
