"""Task kinds beyond the simple task: output, compound, job-queue and array tasks."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

from graphmesh.orchestrator.task.base import Task, TaskContext, TaskInput, TaskKind, TaskOutput
from graphmesh.orchestrator.task.ports import Port, ValueType

if TYPE_CHECKING:
    from graphmesh.orchestrator.graph.task_graph import TaskGraph


class OutputTask(Task):
    """A task with side effects (writes, logs): never cached, always runs."""

    kind = TaskKind.OUTPUT
    side_effects = True
    cacheable = False


class JobQueueTask(Task):
    """A task whose work goes through a job queue (retries, limits, resumability).

    ``queue_name`` picks the queue; the in-process runner may run it directly.
    """

    kind = TaskKind.JOB_QUEUE

    def queue_name(self, inputs: TaskInput) -> str:
        return "default"


MODEL_PORT = Port(id="model", name="Model", value_type=ValueType.MODEL)


class JobQueueLlmTask(JobQueueTask):
    """A model call. Queued per model provider, so limits apply per provider."""

    category = "Text Model"

    def queue_name(self, inputs: TaskInput) -> str:
        model = str(inputs.get("model", ""))
        return model.split(":", 1)[0] if ":" in model else "default"


class CompoundTask(Task):
    """A task that owns a subgraph.

    Its inputs are the inputs of the subgraph's root tasks and its outputs those of its
    sink tasks. Inputs given to the compound task reach every root task with that port.
    """

    kind = TaskKind.COMPOUND
    category = "Flow"
    cacheable = False

    def __init__(
        self,
        *,
        subgraph: TaskGraph | None = None,
        id: str | None = None,
        defaults: Mapping[str, Any] | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        from graphmesh.orchestrator.graph.task_graph import TaskGraph

        self.subgraph = subgraph if subgraph is not None else TaskGraph()
        super().__init__(id=id, defaults=defaults, config=config)

    @property
    def input_ports(self) -> tuple[Port, ...]:
        ports: dict[str, Port] = {}
        needed: set[str] = set()
        for task in self.subgraph.roots():
            for port in task.input_ports:
                if port.required and port.id not in task.defaults:
                    needed.add(port.id)
                    ports[port.id] = port  # the root that needs a value speaks for the port
                else:
                    ports.setdefault(port.id, port)
        # A port is required only if some root task has no value of its own for it.
        return tuple(
            replace(port, optional=True) if port.required and port.id not in needed else port
            for port in ports.values()
        )

    @property
    def output_ports(self) -> tuple[Port, ...]:
        ports = (port for task in self.subgraph.sinks() for port in task.output_ports)
        return tuple({port.id: port for port in ports}.values())

    def input_port(self, port_id: str) -> Port | None:
        return next((p for p in self.input_ports if p.id == port_id), None)

    def output_port(self, port_id: str) -> Port | None:
        return next((p for p in self.output_ports if p.id == port_id), None)

    def reset_input(self) -> None:
        # Only what the compound itself is given: the subgraph's tasks apply their own port
        # defaults, and copies of those must not override the tasks' configured defaults.
        super().reset_input()
        self.run_input = copy.deepcopy(self.defaults)

    def copy_for_run(self) -> Self:
        clone = super().copy_for_run()
        clone.subgraph = self.subgraph.copy_for_run()
        return clone

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        outputs = await ctx.run_subgraph(self.subgraph, inputs)
        return merge_sink_outputs(self.subgraph, outputs)

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        """Preview the subgraph with these inputs (its PENDING tasks only, as the runner does)."""
        from graphmesh.orchestrator.runner.runner import TaskGraphRunner

        result = TaskGraphRunner(self.subgraph).run_reactive(inputs)
        return merge_sink_outputs(self.subgraph, result.outputs)


def merge_sink_outputs(graph: TaskGraph, outputs: Mapping[str, TaskOutput]) -> TaskOutput:
    merged: TaskOutput = {}
    for task in graph.sinks():
        merged.update(outputs.get(task.id, {}))
    return merged


class ArrayTask(CompoundTask):
    """Runs ``item_task`` once per combination of its array inputs (Cartesian product).

    Create subclasses with :func:`array_task`. Each output becomes an array gathered in
    combination order: squaring ``[6, 7]`` gives ``[36, 49]``.
    """

    kind = TaskKind.ARRAY
    cacheable = False
    item_task: ClassVar[type[Task]]
    array_inputs: ClassVar[tuple[str, ...]] = ()

    @property
    def input_ports(self) -> tuple[Port, ...]:
        return self.inputs

    @property
    def output_ports(self) -> tuple[Port, ...]:
        return self.outputs

    def reset_input(self) -> None:
        Task.reset_input(self)  # its ports are its own, so their defaults apply

    def combinations(self, inputs: TaskInput) -> list[TaskInput]:
        axes = [_as_list(inputs.get(port_id, [])) for port_id in self.array_inputs]
        fixed = {k: v for k, v in inputs.items() if k not in self.array_inputs}
        return [
            {**fixed, **dict(zip(self.array_inputs, combo, strict=True))}
            for combo in itertools.product(*axes)
        ]

    def children(self, inputs: TaskInput) -> list[Task]:
        return [
            self.item_task(id=f"{self.id}[{i}]", defaults=combo)
            for i, combo in enumerate(self.combinations(inputs))
        ]

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        from graphmesh.orchestrator.graph.task_graph import TaskGraph

        children = self.children(inputs)
        self.subgraph = TaskGraph(children)
        outputs = await ctx.run_subgraph(self.subgraph, {})
        return self._gather([outputs.get(child.id, {}) for child in children])

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        children = self.children(inputs)
        for child in children:
            child.reset_input()
        return self._gather([child.run_reactive(child.run_input) for child in children])

    def _gather(self, child_outputs: Sequence[TaskOutput]) -> TaskOutput:
        return {port.id: [output.get(port.id) for output in child_outputs] for port in self.outputs}


def array_task(
    item: type[Task], array_inputs: Sequence[str], *, type_name: str | None = None
) -> type[ArrayTask]:
    """Make (and register) an array variant of ``item`` over the named input ports."""
    unknown = [p for p in array_inputs if p not in {port.id for port in item.inputs}]
    if unknown:
        raise ValueError(f"{item.type} has no input port(s) {unknown} to make an array over")
    namespace: dict[str, Any] = {
        "type": type_name or _array_type_name(item.type, array_inputs),
        "category": item.category,
        "description": f"{item.type} over every combination of {', '.join(array_inputs)}",
        "item_task": item,
        "external_access": item.external_access,
        "array_inputs": tuple(array_inputs),
        "inputs": tuple(
            _array_port(port) if port.id in array_inputs else port for port in item.inputs
        ),
        "outputs": tuple(replace(port, is_array=True) for port in item.outputs),
        "__module__": item.__module__,
    }
    return type(namespace["type"], (ArrayTask,), namespace)


def _array_port(port: Port) -> Port:
    # An item's scalar default is no array default: incoming values would append to it.
    return replace(port, is_array=True, default=[] if port.has_default else port.default)


def _array_type_name(item_type: str, ports: Sequence[str]) -> str:
    base = item_type.removesuffix("Task")
    over = "".join(part.capitalize() for port in ports for part in port.split("_"))
    return f"{base}Multi{over}Task"


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
