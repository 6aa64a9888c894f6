"""TaskGraph: tasks (nodes) joined by dataflows (edges), forming a DAG."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from graphmesh.orchestrator.errors import GraphError, GraphIssue, GraphValidationError
from graphmesh.orchestrator.graph.dataflow import DataFlow
from graphmesh.orchestrator.graph.progression import Progression
from graphmesh.orchestrator.task.base import Task


class TaskGraph:
    """A directed acyclic graph of tasks. Insertion order is kept and is the tie-breaker."""

    def __init__(self, tasks: Iterable[Task] = (), dataflows: Iterable[DataFlow] = ()) -> None:
        self._tasks: dict[str, Task] = {}
        self._incoming: dict[str, list[DataFlow]] = {}
        self._outgoing: dict[str, list[DataFlow]] = {}
        self._dataflows: list[DataFlow] = []
        self._flow_set: set[DataFlow] = set()
        self.revision = 0  # bumped by every change of nodes or edges (caches key on it)
        self._in_run = False
        self._progression: tuple[int, Progression] | None = None
        for task in tasks:
            self.add_task(task)
        for flow in dataflows:
            self.add_dataflow(flow)

    # -- nodes -------------------------------------------------------------------------
    @property
    def tasks(self) -> list[Task]:
        return list(self._tasks.values())

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks.values())

    def __len__(self) -> int:
        return len(self._tasks)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._tasks

    def copy_for_run(self) -> TaskGraph:
        """The same tasks and dataflows with fresh run state (see :meth:`Task.copy_for_run`)."""
        return TaskGraph((task.copy_for_run() for task in self), self._dataflows)

    @contextmanager
    def claim_for_run(self) -> Iterator[TaskGraph]:
        """This graph for the block's run, or a copy when another run holds it: a run keeps
        its state on the tasks, so two overlapping runs must not share them."""
        if self._in_run:
            yield self.copy_for_run()
            return
        self._in_run = True
        try:
            yield self
        finally:
            self._in_run = False

    def get_task(self, task_id: str) -> Task:
        try:
            return self._tasks[task_id]
        except KeyError:
            raise GraphError(f"no task with id {task_id!r} in the graph") from None

    def add_task(self, task: Task) -> Task:
        if task.id in self._tasks:
            raise GraphError(f"duplicate task id {task.id!r}")
        self._tasks[task.id] = task
        self._incoming[task.id] = []
        self._outgoing[task.id] = []
        self.revision += 1
        return task

    def remove_task(self, task_id: str) -> Task:
        task = self.get_task(task_id)
        # dict.fromkeys: a self-loop is both incoming and outgoing, but is removed once.
        for flow in dict.fromkeys([*self._incoming[task_id], *self._outgoing[task_id]]):
            self.remove_dataflow(flow)
        del self._tasks[task_id], self._incoming[task_id], self._outgoing[task_id]
        self.revision += 1
        return task

    # -- edges -------------------------------------------------------------------------
    @property
    def dataflows(self) -> list[DataFlow]:
        return list(self._dataflows)

    def add_dataflow(self, flow: DataFlow) -> DataFlow:
        for task_id in (flow.source_task, flow.target_task):
            if task_id not in self._tasks:
                raise GraphError(f"dataflow {flow} names unknown task {task_id!r}")
        if flow in self._flow_set:
            return flow
        self._dataflows.append(flow)
        self._flow_set.add(flow)
        self._outgoing[flow.source_task].append(flow)
        self._incoming[flow.target_task].append(flow)
        self.revision += 1
        return flow

    def remove_dataflow(self, flow: DataFlow) -> None:
        if flow not in self._flow_set:
            raise GraphError(f"no dataflow {flow} in the graph")
        self._dataflows.remove(flow)
        self._flow_set.discard(flow)
        self.revision += 1
        self._outgoing[flow.source_task].remove(flow)
        self._incoming[flow.target_task].remove(flow)

    def incoming(self, task_id: str) -> list[DataFlow]:
        return self._incoming[task_id]

    def outgoing(self, task_id: str) -> list[DataFlow]:
        return self._outgoing[task_id]

    def progression(self) -> Progression:
        """The run rules precomputed for this graph's dataflows (rebuilt after a change)."""
        cached = self._progression
        if cached is None or cached[0] != self.revision:
            cached = self._progression = (self.revision, Progression(self._tasks, self._dataflows))
        return cached[1]

    def roots(self) -> list[Task]:
        return [t for t in self._tasks.values() if not self._incoming[t.id]]

    def sinks(self) -> list[Task]:
        return [t for t in self._tasks.values() if not self._outgoing[t.id]]

    # -- order -------------------------------------------------------------------------
    def layers(self) -> list[list[Task]]:
        """Tasks grouped by depth: layer n depends only on layers < n (for inspection)."""
        depth: dict[str, int] = {}
        for task in self.topological_order():
            sources = (depth[flow.source_task] + 1 for flow in self._incoming[task.id])
            depth[task.id] = max(sources, default=0)
        grouped: list[list[Task]] = [[] for _ in range(max(depth.values(), default=-1) + 1)]
        for task_id, level in depth.items():
            grouped[level].append(self._tasks[task_id])
        return grouped

    def topological_order(self) -> list[Task]:
        """Kahn's algorithm, stable by insertion order; a cycle raises naming its tasks."""
        indegree = {
            tid: len({f.source_task for f in flows}) for tid, flows in self._incoming.items()
        }
        ready = deque(tid for tid, n in indegree.items() if n == 0)
        order: list[Task] = []
        while ready:
            task_id = ready.popleft()
            order.append(self._tasks[task_id])
            for target in dict.fromkeys(f.target_task for f in self._outgoing[task_id]):
                indegree[target] -= 1
                if indegree[target] == 0:
                    ready.append(target)
        if len(order) < len(self._tasks):
            stuck = {tid for tid, n in indegree.items() if n > 0}
            raise GraphValidationError([_cycle_issue(sorted(self._on_cycles(stuck)))])
        return order

    def _on_cycles(self, stuck: set[str]) -> set[str]:
        """Of the tasks Kahn's algorithm could not order, drop those merely downstream of a
        cycle: repeatedly remove each task that feeds no other remaining task."""
        cyclic = set(stuck)
        changed = True
        while changed:
            feeding = {f.source_task for f in self._dataflows if f.target_task in cyclic}
            changed = bool(cyclic - feeding)
            cyclic &= feeding
        return cyclic

    def validate(self) -> list[GraphIssue]:
        from graphmesh.orchestrator.graph.validation import validate_graph

        return validate_graph(self)

    def check(self) -> TaskGraph:
        """Raise GraphValidationError listing every issue; return self when valid."""
        issues = self.validate()
        if issues:
            raise GraphValidationError(issues)
        return self


def _cycle_issue(task_ids: list[str]) -> GraphIssue:
    return GraphIssue(
        code="cycle",
        message=f"the graph has a cycle through tasks {', '.join(map(repr, task_ids))}",
        task_id=task_ids[0] if task_ids else None,
    )
