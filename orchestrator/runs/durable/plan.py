"""A run's graph as the durable scheduler and workers use it, parsed once per process.

A :class:`GraphPlan` keeps the parsed graph, the run's routed inputs, each task's queue and
task instances to run. A task instance holds per-run state (its merged inputs, a compound's
subgraph), so one instance serves one execution at a time: a second execution of the same
task in this process (a stalled attempt and its replacement) gets a fresh copy.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from graphmesh.orchestrator.graph import graph_from_json
from graphmesh.orchestrator.graph.dataflow import DataFlow
from graphmesh.orchestrator.graph.json_format import task_to_json
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.queue.base import JobSpec, RetryPolicy
from graphmesh.orchestrator.runner.inputs import RoutedInputs, route_inputs
from graphmesh.orchestrator.runs.records import RunNotFoundError
from graphmesh.orchestrator.task.base import Task
from graphmesh.orchestrator.task.kinds import JobQueueTask
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

RUN_TASK_JOB = "graphmesh.run_task"
"""The job type of one task of one run; payload ``{"run_id", "task_id"}``."""
TASK_QUEUE = "runs"
"""The queue of tasks that name none; a job-queue task's ``queue_name`` ``x`` is ``runs.x``."""
TASK_RETRY = RetryPolicy(max_attempts=5, initial_backoff_s=0.5, max_backoff_s=60.0)
"""Retries of transient failures (a lost worker, a model server's UNAVAILABLE)."""
Fetch = Callable[[str, Mapping[str, Any]], Awaitable[Sequence[Sequence[Any]]]]


def task_queue(name: str) -> str:
    """The job queue for a task whose ``queue_name`` is ``name``."""
    return TASK_QUEUE if name in ("", "default") else f"{TASK_QUEUE}.{name}"


def job_key(run_id: str, task_id: str, generation: int) -> str:
    """The job's dedup key: ``run_id:task_id`` (the task's idempotency key), with the
    resume generation appended once a run was resumed, so a resumed task gets a new job."""
    key = f"{run_id}:{task_id}"
    return key if generation == 0 else f"{key}#{generation}"


class GraphPlan:
    """One run's parsed graph and routed inputs."""

    def __init__(
        self,
        run_id: str,
        graph: TaskGraph,
        inputs: Mapping[str, Any],
        registry: TaskRegistry = default_registry,
        *,
        traceparent: str | None = None,
        tenant: str | None = None,
    ) -> None:
        self.run_id = run_id
        self.tenant = tenant
        self.graph = graph
        self.inputs = dict(inputs)
        self.traceparent = traceparent
        self.registry = registry
        self.rules = graph.progression()  # the run rules (graph/progression.py)
        self.routed: RoutedInputs = route_inputs(graph, inputs)
        self._queues: dict[str, str] = {}
        self._busy: set[str] = set()

    def outgoing(self, task_id: str) -> list[DataFlow]:
        return self.graph.outgoing(task_id)

    def incoming(self, task_id: str) -> list[DataFlow]:
        return self.graph.incoming(task_id)

    def queue_of(self, task_id: str) -> str:
        """Where the task's job goes: a job-queue task picks by its static inputs (defaults
        and run inputs; values arriving over dataflows are not known yet)."""
        queue = self._queues.get(task_id)
        if queue is None:
            task = self.graph.get_task(task_id)
            name = ""
            if isinstance(task, JobQueueTask):
                name = task.queue_name({**task.defaults, **self.routed.get(task_id, {})})
            queue = self._queues[task_id] = task_queue(name)
        return queue

    def job(self, task_id: str, generation: int) -> JobSpec:
        """The job that runs ``task_id`` in this generation of the run."""
        return JobSpec(
            task=RUN_TASK_JOB,
            payload={"run_id": self.run_id, "task_id": task_id},
            queue=self.queue_of(task_id),
            key=job_key(self.run_id, task_id, generation),
            retry=TASK_RETRY,
            traceparent=self.traceparent,
        )

    @contextmanager
    def instance(self, task_id: str) -> Iterator[Task]:
        """A task instance for one execution, exclusive for the block's duration."""
        task = self.graph.get_task(task_id)
        if task_id in self._busy:
            yield _fresh_copy(task, self.registry)
            return
        self._busy.add(task_id)
        try:
            yield task
        finally:
            self._busy.discard(task_id)


def _fresh_copy(task: Task, registry: TaskRegistry) -> Task:
    graph = graph_from_json({"tasks": [task_to_json(task)], "dataflows": []}, registry)
    return graph.get_task(task.id)


class PlanCache:
    """Parsed plans of recent runs (a run's graph never changes once created)."""

    def __init__(self, registry: TaskRegistry = default_registry, *, size: int = 256) -> None:
        self._registry = registry
        self._size = size
        self._plans: OrderedDict[str, GraphPlan] = OrderedDict()

    async def get(self, run_id: str, fetch: Fetch) -> GraphPlan:
        """The plan of ``run_id``, read with ``fetch`` (``run_plan``) when not cached."""
        plan = self._plans.get(run_id)
        if plan is not None:
            self._plans.move_to_end(run_id)
            return plan
        rows = await fetch("run_plan", {"run_id": run_id})
        if not rows:
            raise RunNotFoundError(f"no run {run_id!r}")
        graph_json, inputs, traceparent, tenant = rows[0]
        graph = graph_from_json(json.loads(graph_json), self._registry)
        plan = GraphPlan(
            run_id,
            graph,
            json.loads(inputs),
            self._registry,
            traceparent=traceparent,
            tenant=tenant,
        )
        return self.adopt(plan)

    def adopt(self, plan: GraphPlan) -> GraphPlan:
        """Cache ``plan`` (e.g. of a run just created, whose graph is parsed already)."""
        self._plans[plan.run_id] = plan
        while len(self._plans) > self._size:
            self._plans.popitem(last=False)
        return plan
