"""One execution of one task of a durable run, inside its job.

Inputs are merged as the in-process runner merges them (``runner/graph_run.py``): the
task's defaults, then the run inputs routed to it, then each incoming dataflow in dataflow
order (array ports append; the source port's ``is_array`` decides whether a list is one
item or many; an ``[error]`` dataflow delivers the failed source's error payload). A
compound or array task runs its subgraph in this process, inside this job.
"""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from graphmesh.orchestrator.ai.scope import model_scope
from graphmesh.orchestrator.ai.usage import (
    NO_TASK_USAGE,
    MeteredModelClient,
    TaskUsage,
    UsageMeter,
    default_prices,
)
from graphmesh.orchestrator.errors import TaskError, TaskFailedError, TaskTimeoutError
from graphmesh.orchestrator.graph.progression import error_payload
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.queue.base import Job
from graphmesh.orchestrator.runner.graph_run import GraphRun, RunEnvironment
from graphmesh.orchestrator.runner.middleware import Handler, TaskCall
from graphmesh.orchestrator.runner.result import RunnerEvent
from graphmesh.orchestrator.runner.tracing import continued
from graphmesh.orchestrator.runs.durable.batch import Committer, Note, Progress
from graphmesh.orchestrator.runs.durable.plan import GraphPlan
from graphmesh.orchestrator.runs.durable.rows import Upstream
from graphmesh.orchestrator.runs.records import JsonObject, RunEventKind
from graphmesh.orchestrator.runs.storable import check_output, storable_details, storable_text
from graphmesh.orchestrator.task.base import (
    Task,
    TaskContext,
    TaskEvent,
    TaskInput,
    TaskOutput,
    TaskStatus,
)

if TYPE_CHECKING:
    from graphmesh.orchestrator.runs.durable.worker import WorkerSettings

_NESTED_EVENT = {
    TaskEvent.START: RunEventKind.TASK_STARTED,
    TaskEvent.PROGRESS: RunEventKind.TASK_PROGRESS,
    TaskEvent.COMPLETE: RunEventKind.TASK_COMPLETED,
    TaskEvent.ERROR: RunEventKind.TASK_FAILED,
    TaskEvent.ABORT: RunEventKind.TASK_ABORTED,
}


@dataclass(kw_only=True, eq=False)
class TaskExecution:
    """Runs the task of ``job`` once; :meth:`run` returns its output and provenance."""

    plan: GraphPlan
    job: Job
    upstream: Mapping[str, Upstream]
    chain: Handler
    settings: WorkerSettings
    committer: Committer
    _nested_usage: TaskUsage = field(default=NO_TASK_USAGE, init=False)

    @property
    def task_id(self) -> str:
        return str(self.job.payload["task_id"])

    async def run(self) -> tuple[JsonObject, JsonObject, TaskUsage]:
        """Run the task: its output, provenance, and what its model calls used."""
        with continued(self.job.traceparent), self.plan.instance(self.task_id) as task:
            provenance = self._prepare(task)
            missing = task.missing_inputs()
            if missing:
                names = ", ".join(map(repr, missing))
                raise TaskFailedError(task.id, f"missing required input(s) {names}")
            meter = UsageMeter()
            seconds = task.config.get("timeout", self.settings.task_timeout)
            with model_scope(
                run_id=self.plan.run_id, task_id=task.id, tenant=self.plan.tenant, timeout=seconds
            ):
                output = await self._call(task, self._context(task, provenance, meter))
            usage = default_prices().task_usage(meter.by_model) + self._nested_usage
            return output, provenance, usage

    def _prepare(self, task: Task) -> JsonObject:
        """Merge the inputs (see the module docs); return the task's provenance."""
        task.reset_input()
        routed = self.plan.routed.get(task.id)
        if routed:  # most tasks get no run inputs: nothing to copy
            task.run_input.update(copy.deepcopy(routed))
        provenance: JsonObject = {}
        graph = self.plan.graph
        for flow in self.plan.incoming(task.id):
            source = self.upstream[flow.source_task]
            provenance.update(source.provenance)
            if flow.carries_error:
                if source.status == TaskStatus.FAILED and source.error_payload is not None:
                    task.add_input(flow.target_port, source.error_payload)
            elif source.output is not None and flow.source_port in source.output:
                port = graph.get_task(flow.source_task).output_port(flow.source_port)
                spread = None if port is None else port.is_array
                task.add_input(flow.target_port, source.output[flow.source_port], spread=spread)
        provenance.update(task.config.get("provenance") or {})
        return provenance

    def _context(self, task: Task, provenance: JsonObject, meter: UsageMeter) -> TaskContext:
        models = self.settings.models
        return TaskContext(
            run_id=self.plan.run_id,
            task_id=task.id,
            provenance=provenance,
            models=None if models is None else MeteredModelClient(models, meter),
            report_progress=self._progress,
            run_subgraph=lambda graph, inputs: self._subgraph(task, graph, inputs, provenance),
            resources=self.settings.resources,
            tenant=self.plan.tenant,
        )

    async def _call(self, task: Task, context: TaskContext) -> JsonObject:
        call = TaskCall(task=task, inputs=task.run_input, context=context)
        seconds = task.config.get("timeout", self.settings.task_timeout)
        if seconds is None:  # the common case: no timeout to set up
            output = await self.chain(call)
        else:
            try:
                async with asyncio.timeout(seconds):
                    output = await self.chain(call)
            except TimeoutError:
                raise TaskTimeoutError(task.id, f"timed out after {seconds} s") from None
        if not isinstance(output, Mapping):
            raise TaskFailedError(
                task.id, f"run() returned {type(output).__name__}, expected a dict of outputs"
            )
        check_output(task.id, output)  # fails the task for good: no retry could store it
        return dict(output)

    def _progress(self, percent: float, message: str, details: Mapping[str, Any] | None) -> None:
        self.committer.post(
            Progress(
                job=self.job,
                percent=percent,
                message=storable_text(message),
                details=storable_details(details),
            )
        )

    async def _subgraph(
        self, parent: Task, graph: TaskGraph, inputs: TaskInput, provenance: JsonObject
    ) -> dict[str, TaskOutput]:
        env = RunEnvironment(
            models=self.settings.models,
            listener=self._nested_event,
            resources=self.settings.resources,
            task_timeout=self.settings.task_timeout,
            tenant=self.plan.tenant,
        )
        nested = GraphRun(
            graph,
            run_id=self.plan.run_id,
            handler=self.chain,
            env=env,
            provenance=provenance,
            path=f"{parent.id}/",
        )
        result = await nested.execute(inputs)
        self._nested_usage = self._nested_usage + result.usage  # the compound task's too
        if not result.ok:
            raise TaskFailedError(parent.id, f"subgraph failed: {result.error}")
        return result.outputs

    def _nested_event(self, event: RunnerEvent) -> None:
        kind = _NESTED_EVENT[event.kind]
        if event.kind == TaskEvent.ABORT and event.status == TaskStatus.SKIPPED:
            kind = RunEventKind.TASK_SKIPPED
        fields: JsonObject = {
            "task_id": event.task_id,
            "status": event.status,
            "progress": event.progress,
            "message": storable_text(event.message),
            "error": None if event.error is None else storable_text(event.error),
            "error_type": kind.value if event.error else None,
            "details": storable_details(event.details_with_usage()),
        }
        self.committer.post(Note(job=self.job, kind=kind, fields=fields))


def describe_failure(task_id: str, error: BaseException) -> tuple[str, JsonObject]:
    """The run's error message for a failed task (as the in-process runner words it) and
    the payload its ``[error]`` dataflows deliver: the original exception's type and text,
    both made storable (a task may raise with any text)."""
    wrapped = (
        error
        if isinstance(error, TaskError)
        else TaskFailedError(task_id, f"{type(error).__name__}: {error}")
    )
    payload = error_payload(task_id, error)  # the run rules' payload, as the runner delivers
    payload["message"] = storable_text(payload["message"])
    return storable_text(str(wrapped)), payload
