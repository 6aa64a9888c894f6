"""TaskGraphRunner: runs a TaskGraph in process, with caching, events and deadlines."""

from __future__ import annotations

import asyncio
import copy
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from graphmesh.orchestrator.ai.client import ModelClient
from graphmesh.orchestrator.errors import GraphValidationError
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.runner.graph_run import GraphRun, Listener, RunEnvironment
from graphmesh.orchestrator.runner.inputs import resolve_inputs, route_inputs
from graphmesh.orchestrator.runner.middleware import CacheMiddleware, Middleware, build_chain
from graphmesh.orchestrator.runner.result import RunResult, RunStatus, TaskResult
from graphmesh.orchestrator.storage.base import TaskOutputRepository
from graphmesh.orchestrator.task.base import Task, TaskInput, TaskStatus


class TaskGraphRunner:
    """Runs a graph: each task starts as soon as its inputs are ready.

    ``repository`` enables output caching (keyed by inputs, type and version; side-effect,
    output and compound tasks are never cached). ``middleware`` wraps every task call,
    outermost first; the cache sits innermost so a hit still passes through the others.
    """

    def __init__(
        self,
        graph: TaskGraph,
        *,
        repository: TaskOutputRepository | None = None,
        models: ModelClient | None = None,
        middleware: Sequence[Middleware] = (),
        listener: Listener | None = None,
        resources: Mapping[str, Any] | None = None,
        task_timeout: float | None = None,
        tenant: str | None = None,
    ) -> None:
        self.graph = graph
        self.repository = repository
        chain = [*middleware, *([CacheMiddleware(repository)] if repository is not None else [])]
        self._handler = build_chain(chain)
        self._env = RunEnvironment(
            models=models,
            listener=listener,
            resources=resources or {},
            task_timeout=task_timeout,
            tenant=tenant,
        )
        self._current: set[asyncio.Future[RunResult]] = set()
        self._checked: tuple[int, frozenset[str]] | None = None

    def layers(self) -> list[list[Task]]:
        """Tasks grouped by dependency depth (for inspection; scheduling has no barriers)."""
        return self.graph.layers()

    async def run(
        self,
        inputs: Mapping[str, Any] | None = None,
        *,
        run_id: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (ends in a TIMED_OUT result, see GraphRun)
        provenance: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Run the whole graph and return every task's status and output.

        ``inputs`` keys are ``port`` (every root task with that input port) or ``task.port``
        (see :mod:`graphmesh.orchestrator.runner.inputs`). Invalid graphs raise
        GraphValidationError before anything runs; task failures are reported in the result.
        """
        self._check(inputs or {})
        with self.graph.claim_for_run() as graph:
            graph_run = GraphRun(
                graph,
                run_id=run_id or uuid.uuid4().hex,
                handler=self._handler,
                env=self._env,
                provenance=provenance or {},
            )
            current = asyncio.ensure_future(graph_run.execute(inputs or {}, timeout))
            self._current.add(current)
            try:
                return await current
            except asyncio.CancelledError:
                if current.cancelled() and not _outer_cancelled():
                    return graph_run._result(RunStatus.CANCELLED, "the run was cancelled")
                raise
            finally:
                self._current.discard(current)

    def _check(self, inputs: Mapping[str, Any]) -> None:
        """Validate the graph, counting routed inputs as given for the tasks they reach.

        A graph that passed is not validated again until its nodes or edges change (a
        required input removed from a task's defaults meanwhile still fails, at run time,
        naming the port)."""
        checked = (self.graph.revision, frozenset(inputs))
        if checked == self._checked:
            return
        routed, issues = resolve_inputs(self.graph, inputs)
        issues += [
            issue
            for issue in self.graph.validate()
            if not (
                issue.code == "missing_input" and issue.port in routed.get(issue.task_id or "", {})
            )
        ]
        if issues:
            raise GraphValidationError(issues)
        self._checked = checked

    def cancel(self) -> None:
        """Abort the current runs: running tasks are cancelled, pending ones skipped."""
        for current in self._current:
            current.cancel()

    def run_reactive(self, inputs: Mapping[str, Any] | None = None) -> RunResult:
        """Preview: only the cheap ``run_reactive`` path of PENDING tasks; no cache, no events."""
        outputs: dict[str, dict[str, Any]] = {}
        for task in self.graph.topological_order():
            if task.status == TaskStatus.PENDING:
                task.run_output = task.run_reactive(self._reactive_input(task, inputs or {}))
            outputs[task.id] = task.run_output
        tasks = {
            t.id: TaskResult(task_id=t.id, type=t.type, status=t.status, output=outputs[t.id])
            for t in self.graph
        }
        sinks = tuple(t.id for t in self.graph.sinks())
        return RunResult(run_id="reactive", status=RunStatus.COMPLETED, tasks=tasks, sink_ids=sinks)

    def _reactive_input(self, task: Task, inputs: Mapping[str, Any]) -> TaskInput:
        """Fresh inputs for a PENDING task, gathered from its upstream tasks in dataflow order
        (upstream tasks come first in topological order, so their outputs are current)."""
        task.reset_input()
        task.run_input.update(copy.deepcopy(route_inputs(self.graph, inputs).get(task.id, {})))
        for flow in self.graph.incoming(task.id):
            source = self.graph.get_task(flow.source_task)
            if flow.source_port in source.run_output:
                port = source.output_port(flow.source_port)
                spread = None if port is None else port.is_array
                task.add_input(flow.target_port, source.run_output[flow.source_port], spread=spread)
        return task.run_input


def _outer_cancelled() -> bool:
    current = asyncio.current_task()
    return current is not None and current.cancelling() > 0
