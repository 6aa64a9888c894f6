"""One execution of one graph: dependency-driven, a task starts when its inputs are ready."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Callable, Mapping
from typing import Any

from graphmesh.orchestrator.ai.scope import model_scope
from graphmesh.orchestrator.ai.usage import (
    MeteredModelClient,
    PriceTable,
    TaskUsage,
    UsageMeter,
    default_prices,
)
from graphmesh.orchestrator.errors import (
    TaskAbortedError,
    TaskError,
    TaskFailedError,
    TaskTimeoutError,
)
from graphmesh.orchestrator.graph.progression import (
    NOT_REACHED,
    NOTHING,
    Outcome,
    Step,
    error_payload,
)
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.runner.inputs import route_inputs
from graphmesh.orchestrator.runner.middleware import Handler, TaskCall, invoke_task
from graphmesh.orchestrator.runner.result import RunnerEvent, RunResult, RunStatus, TaskResults
from graphmesh.orchestrator.task.base import (
    Task,
    TaskContext,
    TaskEvent,
    TaskInput,
    TaskOutput,
    TaskStatus,
)

Listener = Callable[[RunnerEvent], None]
_COMPLETED = Outcome.COMPLETED
_NO_PROVENANCE: Mapping[str, Any] = {}
_FINAL_EVENTS = frozenset({TaskEvent.COMPLETE, TaskEvent.ERROR, TaskEvent.ABORT})


class GraphRun:
    """Runs ``graph`` once. Failure of a task aborts running tasks and skips pending ones,
    unless the failing task's ``[error]`` port is wired.

    Which tasks a settled task makes ready or skips is the run rules' call
    (:mod:`graphmesh.orchestrator.graph.progression`, shared with the durable scheduler);
    this class carries the answers out with asyncio tasks and events."""

    def __init__(
        self,
        graph: TaskGraph,
        *,
        run_id: str,
        handler: Handler,
        env: RunEnvironment,
        provenance: Mapping[str, Any] = _NO_PROVENANCE,
        path: str = "",
    ) -> None:
        self.graph = graph
        self.run_id = run_id
        self.handler = handler
        self.env = env
        self.parent_provenance = provenance
        self.path = path
        self.rules = graph.progression()
        self.remaining: dict[str, int] = {}  # per task: incoming dataflows not settled yet
        self.dead: set[str] = set()  # tasks to skip once ready (see graph/progression.py)
        self.running: dict[str, asyncio.Task[None]] = {}
        self.started: set[str] = set()
        self.stopped: list[asyncio.Task[None]] = []  # cancelled before they ever ran
        self.accepting_handoff = False
        self.handoff: Task | None = None
        self.provenance: dict[str, Mapping[str, Any]] = {}
        self.usage: dict[str, TaskUsage] = {}  # tasks whose model calls used tokens
        self.nested_usage: dict[str, TaskUsage] = {}  # of compound tasks' subgraph runs
        self.failure: TaskError | None = None
        self.finished: asyncio.Future[None] | None = None

    # -- public --------------------------------------------------------------------------
    # A timeout parameter, not a caller's asyncio.timeout: running past it is a TIMED_OUT
    # result with every task settled, not an exception.
    async def execute(
        self,
        inputs: Mapping[str, Any],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> RunResult:
        self._prepare(inputs)
        loop = asyncio.get_running_loop()
        self.finished = loop.create_future()
        status, error = RunStatus.COMPLETED, None
        try:
            for task_id, count in self.remaining.items():
                if count == 0:
                    self._start(self.graph.get_task(task_id))
            self._finish_if_idle()
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.finished)
        except TimeoutError:
            status, error = RunStatus.TIMED_OUT, f"graph timed out after {timeout} s"
            self.failure = TaskTimeoutError(self.path or "graph", error)
        except asyncio.CancelledError:
            await self._abort("the run was cancelled")
            raise
        if self.failure is not None and status == RunStatus.COMPLETED:
            status, error = RunStatus.FAILED, str(self.failure)
        await self._abort(error or "")
        return self._result(status, error)

    # -- scheduling ------------------------------------------------------------------------
    def _prepare(self, inputs: Mapping[str, Any]) -> None:
        graph = self.graph
        for task in graph:
            task.reset_input()
        self.remaining = self.rules.counts()
        for task_id, values in route_inputs(graph, inputs).items():
            # Copies: array ports are extended in place, and the caller keeps its inputs.
            graph.get_task(task_id).run_input.update(copy.deepcopy(values))

    def _start(self, task: Task) -> None:
        self._gather_inputs(task)
        task.status = TaskStatus.PROCESSING
        if self.accepting_handoff and self.handoff is None:
            self.handoff = task  # the finishing task's asyncio task runs it next (see _run_task)
        else:
            self.running[task.id] = asyncio.get_running_loop().create_task(self._run_task(task))

    def _gather_inputs(self, task: Task) -> None:
        """Merge upstream values in dataflow order, so array ports collect deterministically
        (completion order would depend on timing)."""
        for flow in self.graph.incoming(task.id):
            source = self.graph.get_task(flow.source_task)
            if flow.carries_error:
                if source.status == TaskStatus.FAILED and source.error is not None:
                    task.add_input(flow.target_port, error_payload(source.id, source.error))
            elif flow.source_port in source.run_output:
                port = source.output_port(flow.source_port)
                spread = None if port is None else port.is_array
                task.add_input(flow.target_port, source.run_output[flow.source_port], spread=spread)

    async def _run_task(self, first: Task) -> None:
        """Run ``first``, then go on with a dependent it made ready, if any: a chain of
        tasks runs in one asyncio task instead of paying for a new one per link. The
        asyncio task is registered under whichever graph task it is running, so aborting
        that graph task cancels it as usual."""
        runner = asyncio.current_task()
        upcoming: Task | None = first
        while upcoming is not None:
            task, upcoming = upcoming, None
            self.started.add(task.id)
            try:
                upcoming = await self._attempt(task)
            finally:
                self.running.pop(task.id, None)
                if upcoming is not None and runner is not None:
                    self.running[upcoming.id] = runner
                self._finish_if_idle()

    async def _attempt(self, task: Task) -> Task | None:
        """Run and settle one task; return a dependent it made ready to run next, if any."""
        try:
            output = await self._call(task)
        except asyncio.CancelledError:
            self._fail(task, TaskAbortedError(task.id, "aborted"), TaskEvent.ABORT)
        except TaskError as exc:
            self._handle_failure(task, exc)
        except Exception as exc:
            self._handle_failure(task, _wrap(task, exc))
        else:
            self.accepting_handoff = True
            try:
                self._complete(task, output)
            finally:
                self.accepting_handoff = False
            handoff, self.handoff = self.handoff, None
            return handoff
        return None

    async def _call(self, task: Task) -> TaskOutput:
        missing = task.missing_inputs()
        if missing:
            raise TaskFailedError(
                task.id, f"missing required input(s) {', '.join(map(repr, missing))}"
            )
        provenance = self._provenance_of(task)
        self._emit(task, TaskEvent.START)
        timeout = task.config.get("timeout", self.env.task_timeout)
        if self.env.models is None:
            # No model client: nothing to meter or scope (the runner's fast path).
            return await self._call_metered(task, provenance, None, timeout)
        meter = UsageMeter()
        scope = model_scope(
            run_id=self.run_id, task_id=self.path + task.id, tenant=self.env.tenant, timeout=timeout
        )
        try:
            with scope:
                return await self._call_metered(task, provenance, meter, timeout)
        finally:
            # Also what a failed or aborted task had used until then, and a compound
            # task's subgraph (its tasks were metered on their own).
            nested = self.nested_usage.pop(task.id, None)
            if meter.by_model or nested is not None:
                usage = self.env.prices.task_usage(meter.by_model)
                self.usage[task.id] = usage if nested is None else usage + nested

    async def _call_metered(
        self, task: Task, provenance: Mapping[str, Any], meter: UsageMeter | None, seconds: Any
    ) -> TaskOutput:
        models = self.env.models
        context = TaskContext(
            run_id=self.run_id,
            task_id=task.id,
            provenance=provenance,
            models=models if models is None or meter is None else MeteredModelClient(models, meter),
            report_progress=lambda pct, msg, details: self._progress(task, pct, msg, details),
            run_subgraph=lambda graph, inputs: self._run_subgraph(task, graph, inputs),
            resources=self.env.resources,
            tenant=self.env.tenant,
        )
        if seconds is None and self.handler is invoke_task:
            output = await task.run(task.run_input, context)  # no middleware: skip the chain
        elif seconds is None:
            output = await self.handler(TaskCall(task=task, inputs=task.run_input, context=context))
        else:
            output = await _with_timeout(
                task,
                self.handler,
                TaskCall(task=task, inputs=task.run_input, context=context),
                seconds,
            )
        if type(output) is dict:
            return output
        if not isinstance(output, Mapping):
            raise TaskFailedError(
                task.id, f"run() returned {type(output).__name__}, expected a dict of outputs"
            )
        return dict(output)

    def _complete(self, task: Task, output: TaskOutput) -> None:
        task.run_output = output
        task.status = TaskStatus.COMPLETED
        task.progress = 100.0
        self._emit(task, TaskEvent.COMPLETE)
        step = self.rules.settle(task.id, _COMPLETED, self.remaining, self.dead)
        if step is not NOTHING:  # NOTHING: e.g. one of a join's many sources
            self._follow(step)

    def _follow(self, step: Step) -> None:
        """Start what a settled task made ready and skip what it made ready dead (unless
        the run failed meanwhile: then the run's end settles them)."""
        if self.failure is not None:
            return
        for task_id in step.skipped:
            self._skip(task_id)
        get_task = self.graph.get_task
        for task_id in step.ready:
            self._start(get_task(task_id))

    def _handle_failure(self, task: Task, error: TaskError) -> None:
        self._fail(task, error, TaskEvent.ERROR)
        step = self.rules.settle(task.id, Outcome.FAILED, self.remaining, self.dead)
        if step.run_failed:
            if self.failure is None:
                self.failure = error
                self._abort_running(str(error))
            return
        self._follow(step)  # the handlers run, the other branches are skipped

    def _skip(self, first: str) -> None:
        # A worklist, not recursion: a long chain below a failed task must not hit the
        # recursion limit.
        stack = [first]
        while stack:
            task = self.graph.get_task(stack.pop())
            task.status = TaskStatus.SKIPPED
            self._emit(task, TaskEvent.ABORT, message=NOT_REACHED)
            step = self.rules.settle(task.id, Outcome.SKIPPED, self.remaining, self.dead)
            if self.failure is None:
                stack.extend(step.skipped)  # a skip kills every target: none is ready

    def _fail(self, task: Task, error: TaskError, event: TaskEvent) -> None:
        task.status = TaskStatus.FAILED
        task.error = error
        self._emit(task, event, error=str(error))

    def _finish_if_idle(self) -> None:
        if not self.running and self.finished is not None and not self.finished.done():
            self.finished.set_result(None)

    # -- aborting --------------------------------------------------------------------------
    def _abort_running(self, reason: str) -> None:
        for task_id, runner in list(self.running.items()):
            task = self.graph.get_task(task_id)
            if task.status != TaskStatus.PROCESSING:
                continue  # the failing task itself, already FAILED: keep its status and error
            task.status = TaskStatus.ABORTING
            self._emit(task, TaskEvent.ABORT, message=reason)
            runner.cancel()
            if task_id not in self.started:
                # Its coroutine will never run (so never reach its ``finally``): settle it here.
                self.stopped.append(self.running.pop(task_id))
                self._fail(task, TaskAbortedError(task.id, "aborted"), TaskEvent.ABORT)

    async def _abort(self, reason: str) -> None:
        """Stop what still runs and mark what never started, so every task ends settled."""
        if self.running:
            self._abort_running(reason)
        await asyncio.gather(*self.running.values(), *self.stopped, return_exceptions=True)
        for task in self.graph:
            if task.status == TaskStatus.PENDING:
                task.status = TaskStatus.SKIPPED
                self._emit(task, TaskEvent.ABORT, message=reason or "not reached")

    # -- helpers ---------------------------------------------------------------------------
    def _provenance_of(self, task: Task) -> Mapping[str, Any]:
        incoming = self.graph.incoming(task.id)
        merged: Mapping[str, Any] = self.parent_provenance if not incoming else _NO_PROVENANCE
        for flow in incoming:
            upstream = self.provenance.get(flow.source_task)
            if upstream:
                merged = {**merged, **upstream}
        own = task.config.get("provenance")
        if own:
            merged = {**merged, **own}
        self.provenance[task.id] = merged
        return merged

    def _progress(
        self, task: Task, percent: float, message: str, details: Mapping[str, Any] | None
    ) -> None:
        task.progress = percent
        self._emit(task, TaskEvent.PROGRESS, message=message, details=details)

    async def _run_subgraph(
        self, parent: Task, graph: TaskGraph, inputs: TaskInput
    ) -> dict[str, TaskOutput]:
        nested = GraphRun(
            graph,
            run_id=self.run_id,
            handler=self.handler,
            env=self.env,
            provenance=self.provenance.get(parent.id, _NO_PROVENANCE),
            path=f"{self.path}{parent.id}/",
        )
        result = await nested.execute(inputs)
        spent = result.usage
        if not spent.empty:
            earlier = self.nested_usage.get(parent.id)
            self.nested_usage[parent.id] = spent if earlier is None else earlier + spent
        if not result.ok:
            raise TaskFailedError(parent.id, f"subgraph failed: {result.error}")
        return result.outputs

    def _emit(
        self,
        task: Task,
        kind: TaskEvent,
        *,
        message: str = "",
        details: Mapping[str, Any] | None = None,
        error: str | None = None,
    ) -> None:
        task.events.emit(kind, task)
        listener = self.env.listener
        if listener is not None:
            listener(
                RunnerEvent(
                    run_id=self.run_id,
                    kind=kind,
                    task_id=self.path + task.id,
                    status=task.status,
                    progress=task.progress,
                    message=message,
                    details=details,
                    error=error,
                    usage=self.usage.get(task.id) if kind in _FINAL_EVENTS else None,
                )
            )

    def _result(self, status: RunStatus, error: str | None) -> RunResult:
        provenance = self.provenance
        rows = {
            task.id: (
                task.id,
                task.type,
                task.status,
                task.run_output,
                None if task.error is None else str(task.error),
                provenance.get(task.id, _NO_PROVENANCE),
                self.usage.get(task.id),
            )
            for task in self.graph
        }
        sinks = tuple(task.id for task in self.graph.sinks())
        return RunResult(
            run_id=self.run_id, status=status, tasks=TaskResults(rows), sink_ids=sinks, error=error
        )


class RunEnvironment:
    """What every task of a run (and of its subgraphs) shares."""

    __slots__ = ("listener", "models", "prices", "resources", "task_timeout", "tenant")

    def __init__(
        self,
        *,
        models: Any,
        listener: Listener | None,
        resources: Mapping[str, Any],
        task_timeout: float | None,
        tenant: str | None = None,
        prices: PriceTable | None = None,
    ) -> None:
        self.models = models
        self.prices = prices or default_prices()
        self.listener = listener
        self.resources = resources
        self.task_timeout = task_timeout
        self.tenant = tenant


async def _with_timeout(task: Task, handler: Handler, call: TaskCall, seconds: float) -> TaskOutput:
    try:
        async with asyncio.timeout(seconds):
            return await handler(call)
    except TimeoutError:
        raise TaskTimeoutError(task.id, f"timed out after {seconds} s") from None


def _wrap(task: Task, exc: Exception) -> TaskFailedError:
    error = TaskFailedError(task.id, f"{type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error
