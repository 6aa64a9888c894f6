"""MemoryRunService: runs graphs in this process and keeps runs and events in memory.

Each run is an asyncio task around a :class:`TaskGraphRunner`; its event log is a list per
run (seq from 1, no gaps), and watchers wait on an ``asyncio.Event`` that every append
replaces. Nothing survives the process: the durable services keep the same contract
(``tests/contract/test_run_service.py``) on SQLite and Postgres.
"""

from __future__ import annotations

import asyncio
import copy
import json
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from graphmesh.orchestrator.ai.client import ModelClient
from graphmesh.orchestrator.errors import GraphmeshError, GraphValidationError
from graphmesh.orchestrator.graph import graph_from_json, graph_to_json
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.runner import (
    Handler,
    Middleware,
    RunnerEvent,
    RunStatus,
    TaskCall,
    TaskGraphRunner,
)
from graphmesh.orchestrator.runner.inputs import resolve_inputs
from graphmesh.orchestrator.runs.metrics import count_events
from graphmesh.orchestrator.runs.paging import PageTokens, default_page_tokens, run_scope
from graphmesh.orchestrator.runs.records import (
    JsonObject,
    Page,
    RunEventKind,
    RunEventRecord,
    RunFilter,
    RunNotFoundError,
    RunRecord,
    RunState,
    RunStateError,
    TaskState,
    TenantUsage,
)
from graphmesh.orchestrator.runs.storable import check_output, storable_details, storable_text
from graphmesh.orchestrator.storage.base import TaskOutputRepository
from graphmesh.orchestrator.task.base import TaskEvent, TaskOutput, TaskStatus
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

_FINAL_STATE = {
    RunStatus.COMPLETED: RunState.COMPLETED,
    RunStatus.FAILED: RunState.FAILED,
    RunStatus.TIMED_OUT: RunState.FAILED,
    RunStatus.CANCELLED: RunState.CANCELLED,
}
_FINAL_EVENT = {
    RunState.COMPLETED: RunEventKind.RUN_COMPLETED,
    RunState.FAILED: RunEventKind.RUN_FAILED,
    RunState.CANCELLED: RunEventKind.RUN_CANCELLED,
}
_TASK_EVENT = {
    TaskEvent.START: RunEventKind.TASK_STARTED,
    TaskEvent.PROGRESS: RunEventKind.TASK_PROGRESS,
    TaskEvent.COMPLETE: RunEventKind.TASK_COMPLETED,
    TaskEvent.ERROR: RunEventKind.TASK_FAILED,
    TaskEvent.ABORT: RunEventKind.TASK_ABORTED,
}


_OPEN_TASK = (TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.ABORTING)


def now() -> datetime:
    return datetime.now(UTC)


@dataclass(kw_only=True, eq=False)
class _Run:
    """The mutable state of one run; :meth:`record` takes an immutable snapshot."""

    run_id: str
    tenant: str
    ordinal: int
    graph: JsonObject
    inputs: JsonObject
    labels: dict[str, str]
    idempotency_key: str | None
    timeout: float | None
    created_at: datetime
    traceparent: str | None = None
    status: RunState = RunState.PENDING
    updated_at: datetime = field(default_factory=now)
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error: str | None = None
    cancel_reason: str = ""
    tasks: dict[str, TaskState] = field(default_factory=dict)
    outputs: dict[str, JsonObject] = field(default_factory=dict)
    events: list[RunEventRecord] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    driver: asyncio.Task[None] | None = None

    def record(self, *, deduplicated: bool = False) -> RunRecord:
        return RunRecord(
            run_id=self.run_id,
            tenant=self.tenant,
            status=self.status,
            graph=copy.deepcopy(self.graph),
            inputs=copy.deepcopy(self.inputs),
            labels=dict(self.labels),
            idempotency_key=self.idempotency_key,
            created_at=self.created_at,
            updated_at=self.updated_at,
            error=self.error,
            last_seq=len(self.events),
            tasks=tuple(self.tasks.values()),
            started_at=self.started_at,
            ended_at=self.ended_at,
            traceparent=self.traceparent,
            deduplicated=deduplicated,
        )

    def append(self, kind: RunEventKind, **fields: Any) -> RunEventRecord:
        """Log an event and wake every watcher (they wait on the event being replaced)."""
        self.updated_at = now()
        event = RunEventRecord(
            run_id=self.run_id,
            seq=len(self.events) + 1,
            time=self.updated_at,
            kind=kind,
            run_status=self.status,
            traceparent=self.traceparent,
            **fields,
        )
        self.events.append(event)
        count_events((kind,))
        # Not an asyncio.Condition: runner listeners are synchronous and cannot take its lock.
        woken, self.changed = self.changed, asyncio.Event()
        woken.set()
        return event


class MemoryRunService:
    """A RunService that runs every graph in this process (``async with`` it).

    ``models`` serves AI tasks; ``repository`` caches task outputs across runs;
    ``middleware`` wraps every task call (outermost first); ``resources`` reach every task
    (e.g. the operator's task policy).
    """

    def __init__(
        self,
        models: ModelClient | None = None,
        *,
        repository: TaskOutputRepository | None = None,
        registry: TaskRegistry = default_registry,
        middleware: Sequence[Middleware] = (),
        task_timeout: float | None = None,
        page_tokens: PageTokens | None = None,
        resources: Mapping[str, Any] | None = None,
    ) -> None:
        self._models = models
        self._resources = dict(resources or {})
        self._page_tokens = page_tokens or default_page_tokens()
        self._repository = repository
        self._registry = registry
        self._middleware = tuple(middleware)
        self._task_timeout = task_timeout
        self._runs: dict[str, _Run] = {}
        self._by_key: dict[tuple[str, str], str] = {}
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Cancel every run still going and wait until each has settled."""
        self._closed = True
        drivers = [run.driver for run in self._runs.values() if run.driver is not None]
        for driver in drivers:
            driver.cancel()
        await asyncio.gather(*drivers, return_exceptions=True)

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
        if self._closed:
            raise RunStateError("the run service is shutting down")
        if idempotency_key and (tenant, idempotency_key) in self._by_key:
            return self._runs[self._by_key[tenant, idempotency_key]].record(deduplicated=True)
        task_graph = graph_from_json(graph, self._registry)
        check_run_inputs(task_graph, inputs)
        run = _Run(
            run_id=uuid.uuid4().hex,
            tenant=tenant,
            ordinal=len(self._runs),
            graph=graph_to_json(task_graph),
            inputs=_json_copy(inputs),
            labels=dict(labels or {}),
            idempotency_key=idempotency_key or None,
            timeout=timeout,
            created_at=now(),
            traceparent=traceparent,
        )
        run.tasks = {
            t.id: TaskState(task_id=t.id, type=t.type, status=t.status) for t in task_graph
        }
        self._runs[run.run_id] = run
        if idempotency_key:
            self._by_key[tenant, idempotency_key] = run.run_id
        run.append(RunEventKind.RUN_CREATED)
        self._start(run, task_graph, reused={})
        return run.record()

    async def get_run(self, run_id: str, *, tenant: str) -> RunRecord:
        return self._visible(run_id, tenant).record()

    async def list_runs(
        self, run_filter: RunFilter, *, page_size: int = 50, page_token: str = ""
    ) -> Page[RunRecord]:
        """Newest first; the token holds the ordinal of the page's last run (keyset)."""
        tokens, scope = self._page_tokens, run_scope(run_filter)
        before = len(self._runs)
        if page_token:
            position = tokens.decode(
                page_token, listing="runs", tenant=run_filter.tenant, scope=scope
            )
            before = int(position[0])
        matching = [
            run
            for run in reversed(self._runs.values())  # insertion order is ordinal order
            if run.ordinal < before and _matches(run, run_filter)
        ]
        page = matching[: max(1, page_size)]
        token = ""
        if len(matching) > len(page):
            position = [page[-1].ordinal]
            token = tokens.encode(
                listing="runs", tenant=run_filter.tenant, scope=scope, position=position
            )
        return Page(items=[run.record() for run in page], next_page_token=token)

    async def tenant_usage(self, tenant: str, *, idempotency_key: str | None = None) -> TenantUsage:
        active = [r for r in self._runs.values() if r.tenant == tenant and not r.status.finished]
        open_tasks = sum(
            state.status in _OPEN_TASK for run in active for state in run.tasks.values()
        )
        existing = self._by_key.get((tenant, idempotency_key)) if idempotency_key else None
        return TenantUsage(active_runs=len(active), open_tasks=open_tasks, existing_run=existing)

    async def cancel_run(self, run_id: str, *, tenant: str, reason: str = "") -> RunRecord:
        run = self._visible(run_id, tenant)
        if run.status.finished:
            raise RunStateError(f"run {run_id} already ended ({run.status})")
        if run.status != RunState.CANCELLING:
            run.status = RunState.CANCELLING
            run.cancel_reason = reason
            run.append(RunEventKind.RUN_CANCELLING, message=reason)
            if run.driver is not None:
                run.driver.cancel()  # propagates into every running task and its remote calls
        return run.record()

    async def resume_run(self, run_id: str, *, tenant: str) -> RunRecord:
        run = self._visible(run_id, tenant)
        if run.status not in (RunState.FAILED, RunState.CANCELLED):
            raise RunStateError(
                f"only failed or cancelled runs can resume; {run_id} is {run.status}"
            )
        if self._closed:
            raise RunStateError("the run service is shutting down")
        kept = {task_id: run.outputs[task_id] for task_id in _completed(run)}
        for task_id, state in run.tasks.items():
            if task_id not in kept:
                run.tasks[task_id] = replace(
                    state, status=TaskStatus.PENDING, progress=0.0, error=None
                )
        run.status, run.error, run.ended_at, run.cancel_reason = RunState.PENDING, None, None, ""
        run.append(RunEventKind.RUN_RESUMED, message=f"{len(kept)} completed task(s) kept")
        self._start(run, graph_from_json(run.graph, self._registry), reused=kept)
        return run.record()

    async def watch_run(
        self, run_id: str, *, tenant: str, from_seq: int = 0
    ) -> AsyncIterator[RunEventRecord]:
        run = self._visible(run_id, tenant)
        index = max(0, from_seq)
        while True:
            changed = run.changed  # taken before draining, so no append is missed
            while index < len(run.events):
                index += 1
                yield run.events[index - 1]
            if run.status.finished:
                return
            await changed.wait()

    async def get_task_output(self, run_id: str, task_id: str, *, tenant: str) -> JsonObject:
        run = self._visible(run_id, tenant)
        state = run.tasks.get(task_id)
        if state is None:
            raise RunNotFoundError(f"run {run_id} has no task {task_id!r}")
        if task_id not in run.outputs:
            raise RunStateError(f"task {task_id!r} of run {run_id} has no output ({state.status})")
        return copy.deepcopy(run.outputs[task_id])

    # -- running -----------------------------------------------------------------------
    def _visible(self, run_id: str, tenant: str) -> _Run:
        run = self._runs.get(run_id)
        if run is None or run.tenant != tenant:
            raise RunNotFoundError(f"no run {run_id!r}")
        return run

    def _start(self, run: _Run, graph: TaskGraph, *, reused: Mapping[str, JsonObject]) -> None:
        middleware = [
            *self._middleware,
            _StoredOutputs(graph),
            *([_ReuseOutputs(graph, reused)] if reused else []),
        ]
        runner = TaskGraphRunner(
            graph,
            repository=self._repository,
            models=self._models,
            middleware=middleware,
            listener=_TaskEvents(run, graph, reused),
            task_timeout=self._task_timeout,
            resources=self._resources,
            tenant=run.tenant,
        )
        driver = asyncio.get_running_loop().create_task(self._drive(run, runner))
        run.driver = driver
        driver.add_done_callback(lambda done: _settle(run, done))

    async def _drive(self, run: _Run, runner: TaskGraphRunner) -> None:
        run.status, run.started_at = RunState.RUNNING, run.started_at or now()
        run.append(RunEventKind.RUN_STARTED)
        try:
            result = await runner.run(run.inputs, run_id=run.run_id, timeout=run.timeout)
        except GraphmeshError as exc:  # e.g. a default removed since validation
            _finish(run, RunState.FAILED, str(exc))
            return
        state = _FINAL_STATE[result.status]
        if state == RunState.CANCELLED and run.cancel_reason:
            _finish(run, state, run.cancel_reason)
        else:
            _finish(run, state, result.error)


class _TaskEvents:
    """The runner listener: turns task events into log entries and task states."""

    def __init__(self, run: _Run, graph: TaskGraph, reused: Mapping[str, JsonObject]) -> None:
        self.run, self.graph, self.reused = run, graph, reused

    def __call__(self, event: RunnerEvent) -> None:
        run, task_id = self.run, event.task_id
        output_ref = ""
        top_level = task_id in run.tasks
        if top_level and event.kind == TaskEvent.COMPLETE:
            run.outputs[task_id] = _json_copy(self.graph.get_task(task_id).run_output)
            output_ref = f"{run.run_id}/{task_id}"
        if top_level:
            self._update_state(event, output_ref)
        kind = _TASK_EVENT[event.kind]
        if event.kind == TaskEvent.ABORT and event.status == TaskStatus.SKIPPED:
            kind = RunEventKind.TASK_SKIPPED
        run.append(
            kind,
            task_id=task_id,
            status=event.status,
            progress=event.progress,
            message=storable_text(event.message),
            error=_text(event.error),
            error_type=kind.value if event.error else None,
            output_ref=output_ref,
            details=_json_copy(storable_details(event.details_with_usage()) or {}) or None,
        )

    def _update_state(self, event: RunnerEvent, output_ref: str) -> None:
        state = self.run.tasks[event.task_id]
        started = event.kind == TaskEvent.START and event.task_id not in self.reused
        self.run.tasks[event.task_id] = replace(
            state,
            status=event.status,
            progress=event.progress,
            error=_text(event.error) if event.error is not None else state.error,
            attempts=state.attempts + int(started),
            output_ref=output_ref or state.output_ref,
            usage=state.usage if event.usage is None else event.usage,
        )


class _StoredOutputs:
    """Fail a top-level task whose output no run store could keep, as the durable
    services do (see :mod:`.storable`): stored here, it would break the run's readers."""

    def __init__(self, graph: TaskGraph) -> None:
        self.graph = graph

    async def __call__(self, call: TaskCall, call_next: Handler) -> TaskOutput:
        output = await call_next(call)
        task_id = call.task.id
        if task_id in self.graph and self.graph.get_task(task_id) is call.task:
            check_output(task_id, output)
        return output


class _ReuseOutputs:
    """Resume: serve the previous attempt's output for tasks that already completed."""

    def __init__(self, graph: TaskGraph, outputs: Mapping[str, JsonObject]) -> None:
        self.graph, self.outputs = graph, outputs

    async def __call__(self, call: TaskCall, call_next: Handler) -> TaskOutput:
        task_id = call.task.id
        # Identity, not only the id: a compound's inner task may share a top-level task's id.
        if task_id in self.outputs and self.graph.get_task(task_id) is call.task:
            call.context.progress(100, "kept from the previous attempt")
            return copy.deepcopy(self.outputs[task_id])
        return await call_next(call)


def check_run_inputs(graph: TaskGraph, inputs: Mapping[str, Any]) -> None:
    """Raise GraphValidationError unless ``graph`` can run on ``inputs`` (what the runner
    checks first, done eagerly so that a bad request fails before a run exists)."""
    routed, issues = resolve_inputs(graph, inputs)
    issues += [
        issue
        for issue in graph.validate()
        if not (issue.code == "missing_input" and issue.port in routed.get(issue.task_id or "", {}))
    ]
    if issues:
        raise GraphValidationError(issues)


def _finish(run: _Run, state: RunState, error: str | None) -> None:
    if state == RunState.COMPLETED:
        error = None
    for task_id, task in run.tasks.items():
        if task.status in (TaskStatus.PENDING, TaskStatus.PROCESSING, TaskStatus.ABORTING):
            settled = TaskStatus.SKIPPED if task.status == TaskStatus.PENDING else TaskStatus.FAILED
            run.tasks[task_id] = replace(task, status=settled)
    run.status, run.error, run.ended_at = state, _text(error), now()
    run.append(_FINAL_EVENT[state], error=error, error_type=state.value if error else None)


def _settle(run: _Run, driver: asyncio.Task[None]) -> None:
    """Close a run whose driver ended without finishing it (cancelled, or a bug)."""
    if run.driver is not driver or run.status.finished:
        return
    if driver.cancelled():
        _finish(run, RunState.CANCELLED, run.cancel_reason or "the run was cancelled")
    else:
        error = driver.exception()
        _finish(run, RunState.FAILED, f"internal error: {type(error).__name__}")


def _completed(run: _Run) -> list[str]:
    return [
        task_id
        for task_id, state in run.tasks.items()
        if state.status == TaskStatus.COMPLETED and task_id in run.outputs
    ]


def _matches(run: _Run, run_filter: RunFilter) -> bool:
    return (
        run.tenant == run_filter.tenant
        and (not run_filter.statuses or run.status in run_filter.statuses)
        and all(run.labels.get(key) == value for key, value in run_filter.labels.items())
    )


def _text(text: str | None) -> str | None:
    return None if text is None else storable_text(text)


def _json_copy(value: Mapping[str, Any]) -> JsonObject:
    """A deep, JSON-only copy (what a durable service would store and give back)."""
    return json.loads(json.dumps(value, default=repr))  # type: ignore[no-any-return]
