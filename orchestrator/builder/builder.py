"""TaskGraphBuilder: a fluent, auto-connecting way to write task graphs in Python."""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable, Container, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from graphmesh.orchestrator.ai.client import ModelClient
from graphmesh.orchestrator.builder.autoconnect import Rename, describe_ports, plan_dataflows
from graphmesh.orchestrator.builder.naming import method_name, resolve_method
from graphmesh.orchestrator.builder.parallel import ParallelTask, merge_branches
from graphmesh.orchestrator.errors import GraphError, GraphmeshError
from graphmesh.orchestrator.graph.dataflow import ERROR_PORT, DataFlow
from graphmesh.orchestrator.graph.json_format import (
    graph_from_json,
    graph_to_dependency_json,
    graph_to_json,
)
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.runner.result import RunResult
from graphmesh.orchestrator.runner.runner import TaskGraphRunner
from graphmesh.orchestrator.storage.base import TaskOutputRepository
from graphmesh.orchestrator.task.base import Task
from graphmesh.orchestrator.task.events import EventEmitter
from graphmesh.orchestrator.task.kinds import ArrayTask, CompoundTask
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

TaskAdder = Callable[..., "TaskGraphBuilder"]
Branch = Callable[["TaskGraphBuilder"], object]
# Options of TaskGraphRunner.run(); every other runner option goes to its constructor.
_RUN_OPTIONS = frozenset({"run_id", "timeout", "provenance"})


class TaskGraphBuilder:
    """Builds a TaskGraph one task at a time; every method returns the builder.

    Each registered task type has a method named after it (``TextEmbeddingTask`` ->
    ``text_embedding``) whose keyword arguments are input defaults; ``id=`` and ``config=``
    are reserved. A task added after another is wired by auto-connect (see
    :mod:`graphmesh.orchestrator.builder.autoconnect`) unless ``auto_connect=False``.

    ``events`` emits ``changed`` after every graph change, ``reset``, ``error`` (message),
    ``start`` and ``complete`` (the RunResult).
    """

    def __init__(
        self,
        *,
        registry: TaskRegistry = default_registry,
        repository: TaskOutputRepository | None = None,
        models: ModelClient | None = None,
        auto_connect: bool = True,
    ) -> None:
        self._registry = registry
        self.repository = repository
        self.models = models
        self.auto_connect = auto_connect
        self.events = EventEmitter()
        self._graph = TaskGraph()
        self._renames: list[Rename] = []
        self._ids = _IdAllocator()
        self._runner: TaskGraphRunner | None = None

    # -- task methods by type name ---------------------------------------------------------
    def __getattr__(self, name: str) -> TaskAdder:
        if name.startswith("_"):
            raise AttributeError(name)
        task_type = resolve_method(name, self._registry.names())
        if task_type is None:
            raise AttributeError(self._unknown_method(name))
        return functools.partial(self.add, task_type)

    def __dir__(self) -> list[str]:
        return sorted({*super().__dir__(), *map(method_name, self.registry.names())})

    def _unknown_method(self, name: str) -> str:
        methods = [method_name(t) for t in self.registry.names()]
        close = difflib.get_close_matches(name, methods + _public_methods(), n=5, cutoff=0.6)
        hint = f"; did you mean {', '.join(close)}?" if close else "; no task type has a close name"
        return f"TaskGraphBuilder has no method or task type {name!r}{hint}"

    # -- adding tasks ----------------------------------------------------------------------
    def add(
        self,
        task_type: str | type[Task],
        /,
        *,
        id: str | None = None,
        config: Mapping[str, Any] | None = None,
        **inputs: Any,
    ) -> TaskGraphBuilder:
        """Add a task of ``task_type`` (type name, method name or class).

        Keyword arguments are input defaults. Compound task types (except array tasks) also
        take ``subgraph=`` (a TaskGraph or a TaskGraphBuilder).
        """
        with self._reporting():
            cls = self._task_class(task_type)
            subgraph = inputs.pop("subgraph", None) if _takes_subgraph(cls) else None
            self._append(self._instantiate(cls, id, config, inputs, subgraph))
        return self

    def add_task(self, task: Task) -> TaskGraphBuilder:
        """Add a task built elsewhere, auto-connected like any other."""
        with self._reporting():
            self._append(task)
        return self

    def _task_class(self, task_type: str | type[Task]) -> type[Task]:
        if not isinstance(task_type, str):
            return task_type
        if task_type in self.registry:
            return self.registry.get(task_type)
        resolved = resolve_method(task_type, self.registry.names())
        return self.registry.get(resolved or task_type)

    def _instantiate(
        self,
        cls: type[Task],
        task_id: str | None,
        config: Mapping[str, Any] | None,
        inputs: dict[str, Any],
        subgraph: TaskGraph | TaskGraphBuilder | None,
    ) -> Task:
        kwargs: dict[str, Any] = {
            "id": task_id or self._ids.allocate(method_name(cls.type).rstrip("_"), self._graph),
            "defaults": inputs,
            "config": config,
        }
        if subgraph is not None:
            kwargs["subgraph"] = (
                subgraph.graph if isinstance(subgraph, TaskGraphBuilder) else subgraph
            )
        task = cls(**kwargs)
        unknown = [key for key in inputs if task.input_port(key) is None]
        if unknown:
            raise GraphError(
                f"{cls.type} has no input port(s) {', '.join(map(repr, unknown))}; "
                f"its inputs are {describe_ports(task.input_ports)}"
            )
        return task

    def _append(self, task: Task) -> None:
        if task.id in self._graph:
            raise GraphError(f"duplicate task id {task.id!r}")
        flows = plan_dataflows(self._graph, task, self._renames, auto_connect=self.auto_connect)
        self._graph.add_task(task)
        for flow in flows:
            self._graph.add_dataflow(flow)
        self._renames = []
        self.events.emit("changed")

    # -- wiring ----------------------------------------------------------------------------
    def connect(
        self, source_id: str, source_port: str, target_id: str, target_port: str
    ) -> TaskGraphBuilder:
        """Add a dataflow from output ``source_port`` of ``source_id`` to an input."""
        with self._reporting():
            source, target = self._graph.get_task(source_id), self._graph.get_task(target_id)
            _check_output(source, source_port, "connect")
            if target.input_port(target_port) is None:
                raise GraphError(
                    f"connect: task {target_id!r} ({target.type}) has no input port "
                    f"{target_port!r}; its inputs are {describe_ports(target.input_ports)}"
                )
            flow = DataFlow(
                source_task=source_id,
                source_port=source_port,
                target_task=target_id,
                target_port=target_port,
            )
            self._graph.add_dataflow(flow)
            self.events.emit("changed")
        return self

    def rename(self, source_port: str, target_port: str, index: int = -1) -> TaskGraphBuilder:
        """Feed input ``target_port`` of the next task from output ``source_port`` of the
        task at ``index`` (Python-style, ``-1`` is the last task added), instead of
        letting auto-connect choose that input's source."""
        with self._reporting():
            tasks = self._graph.tasks
            if not -len(tasks) <= index < len(tasks):
                raise GraphError(
                    f"rename: no task at index {index}; the graph has {len(tasks)} task(s)"
                )
            source = tasks[index]
            _check_output(source, source_port, "rename")
            self._renames.append(
                Rename(source_task=source.id, source_port=source_port, target_port=target_port)
            )
        return self

    def parallel(
        self,
        *branches: Branch | TaskGraphBuilder,
        id: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> TaskGraphBuilder:
        """Add one ParallelTask whose subgraph holds every branch; branches run concurrently.

        Each branch is a function that receives a fresh sub-builder (or a builder itself).
        The ParallelTask is auto-connected like any task: its inputs are the branches'
        first tasks' inputs.
        """
        with self._reporting():
            subgraph = merge_branches(self._branch_graph(branch) for branch in branches)
            self._append(self._instantiate(ParallelTask, id, config, {}, subgraph))
        return self

    def _branch_graph(self, branch: Branch | TaskGraphBuilder) -> TaskGraph:
        if isinstance(branch, TaskGraphBuilder):
            return branch.graph
        sub = TaskGraphBuilder(registry=self.registry, auto_connect=self.auto_connect)
        sub._ids = self._ids  # one id sequence, so tasks of sibling branches never clash
        branch(sub)
        return sub.graph

    # -- removing --------------------------------------------------------------------------
    def pop(self) -> TaskGraphBuilder:
        """Remove the last task added, with its dataflows."""
        with self._reporting():
            tasks = self._graph.tasks
            if not tasks:
                raise GraphError("pop: the graph is empty")
            removed = self._graph.remove_task(tasks[-1].id)
            self._renames = [r for r in self._renames if r.source_task != removed.id]
            self.events.emit("changed")
        return self

    def reset(self) -> TaskGraphBuilder:
        """Start over with an empty graph; emits ``changed`` then ``reset``."""
        self._graph = TaskGraph()
        self._renames = []
        self._ids = _IdAllocator()
        self.events.emit("changed")
        self.events.emit("reset")
        return self

    # -- graph forms -----------------------------------------------------------------------
    @property
    def graph(self) -> TaskGraph:
        return self._graph

    @property
    def registry(self) -> TaskRegistry:
        """The task types this builder knows (its methods and ``add`` names)."""
        return self._registry

    def to_json(self) -> dict[str, Any]:
        """Graph JSON: ``{"tasks": [...], "dataflows": [...]}``."""
        return graph_to_json(self._graph)

    def to_dependency_json(self) -> list[dict[str, Any]]:
        """The seed's dependency-JSON form: one item per task naming its inputs' sources."""
        return graph_to_dependency_json(self._graph)

    @classmethod
    def from_json(cls, data: Any, **options: Any) -> TaskGraphBuilder:
        """A builder holding the graph in ``data`` (graph JSON or dependency JSON).

        ``options`` are the constructor's keyword arguments.
        """
        builder = cls(**options)
        builder._graph = graph_from_json(data, builder.registry)
        return builder

    # -- running ---------------------------------------------------------------------------
    async def run(
        self, inputs: Mapping[str, Any] | None = None, **runner_options: Any
    ) -> RunResult:
        """Run the graph with a fresh TaskGraphRunner and return its RunResult.

        ``run_id``, ``timeout`` and ``provenance`` go to ``TaskGraphRunner.run``; other
        options (``middleware``, ``listener``, ``resources``, ``task_timeout``) to its
        constructor. Emits ``start``, then ``complete`` with the result, or ``error`` when
        the run cannot start (an invalid graph).
        """
        run_options = {k: runner_options.pop(k) for k in _RUN_OPTIONS & set(runner_options)}
        runner = TaskGraphRunner(
            self._graph, repository=self.repository, models=self.models, **runner_options
        )
        self.events.emit("start")
        self._runner = runner
        try:
            with self._reporting():
                result = await runner.run(inputs, **run_options)
        finally:
            self._runner = None
        self.events.emit("complete", result)
        return result

    def cancel(self) -> None:
        """Cancel the run in progress, if any."""
        if self._runner is not None:
            self._runner.cancel()

    # -- helpers ---------------------------------------------------------------------------
    @contextmanager
    def _reporting(self) -> Iterator[None]:
        try:
            yield
        except GraphmeshError as exc:
            self.events.emit("error", str(exc))
            raise


class _IdAllocator:
    """Ids ``<method name>_<n>``, numbered per task type and shared with sub-builders."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def allocate(self, base: str, taken: Container[str]) -> str:
        while True:
            count = self._counts.get(base, 0) + 1
            self._counts[base] = count
            candidate = f"{base}_{count}"
            if candidate not in taken:
                return candidate


def _takes_subgraph(cls: type[Task]) -> bool:
    return issubclass(cls, CompoundTask) and not issubclass(cls, ArrayTask)


def _check_output(task: Task, port_id: str, caller: str) -> None:
    if port_id != ERROR_PORT and task.output_port(port_id) is None:
        raise GraphError(
            f"{caller}: task {task.id!r} ({task.type}) has no output port {port_id!r}; "
            f"its outputs are {describe_ports(task.output_ports)} (and {ERROR_PORT!r})"
        )


def _public_methods() -> list[str]:
    return [name for name in vars(TaskGraphBuilder) if not name.startswith("_")]
