"""Auto-connect: which dataflows feed a task newly added to a builder's graph.

The rules (DESIGN.md §3, after the seed's TaskGraphBuilder):

1. Pending ``rename`` requests wire their named ports first.
2. When the previous task (the last one added) has no outgoing dataflow, its output ports
   are matched to the new task's input ports in three passes:
   (1) same port id and a compatible type, (2) output ``output`` into input ``input``,
   (3) a compatible type under any name (an ``any`` output fills only required typed
   inputs, never one with a default). Each
   input is connected at most once, and inputs given as keyword defaults are never
   connected. The third pass is a guess, so it is kept narrow: each output that the first
   two passes left unused feeds at most one input, the first compatible one without a
   default, else the first compatible one with a default. (The seed let one text output
   feed both ``question`` and ``context``; here the second is left to the look-back, or
   to an error that asks for it.)
3. Required inputs still missing are looked for in earlier tasks, most recent first:
   the same port id with a compatible type, then the same value type.
4. A required input that is still unconnected raises :class:`AutoConnectError`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from graphmesh.orchestrator.errors import AutoConnectError, GraphError
from graphmesh.orchestrator.graph.dataflow import DataFlow
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.task.base import Task
from graphmesh.orchestrator.task.ports import Port, ValueType

PortRule = Callable[[Port, Port], bool]


@dataclass(frozen=True, kw_only=True)
class Rename:
    """A pending ``rename``: output ``source_port`` of ``source_task`` feeds ``target_port``
    of the next task added."""

    source_task: str
    source_port: str
    target_port: str


def plan_dataflows(
    graph: TaskGraph, task: Task, renames: Sequence[Rename], *, auto_connect: bool = True
) -> list[DataFlow]:
    """The dataflows that feed ``task`` when it is added to ``graph``; changes nothing.

    Raises GraphError for a rename into an unknown input and AutoConnectError when a
    required input finds no source.
    """
    flows = [_renamed_flow(rename, task) for rename in renames]
    if not auto_connect or len(graph) == 0:
        return flows
    taken = set(task.defaults) | {flow.target_port for flow in flows}
    earlier = list(reversed(graph.tasks))
    previous = earlier[0] if not graph.outgoing(earlier[0].id) else None
    if previous is not None:
        renamed = {flow.source_port for flow in flows if flow.source_task == previous.id}
        flows += match_ports(previous, task, taken, renamed)
        earlier = earlier[1:]
    flows += look_back(earlier, task, taken)
    missing = [port for port in task.input_ports if port.required and port.id not in taken]
    if missing:
        raise AutoConnectError(_missing_message(task, missing, previous))
    return flows


def _renamed_flow(rename: Rename, task: Task) -> DataFlow:
    if task.input_port(rename.target_port) is None:
        raise GraphError(
            f"rename({rename.source_port!r}, {rename.target_port!r}): {task.type} has no input "
            f"port {rename.target_port!r}; its inputs are {describe_ports(task.input_ports)}"
        )
    return DataFlow(
        source_task=rename.source_task,
        source_port=rename.source_port,
        target_task=task.id,
        target_port=rename.target_port,
    )


# -- matching the previous task --------------------------------------------------------------
def _same_id(source: Port, target: Port) -> bool:
    return source.id == target.id and target.accepts(source)


def _output_to_input(source: Port, target: Port) -> bool:
    return source.id == "output" and target.id == "input" and target.accepts(source)


def match_ports(
    source: Task, target: Task, taken: set[str], renamed: Iterable[str] = ()
) -> list[DataFlow]:
    """Connect ``source``'s outputs to ``target``'s free inputs in the three passes.

    ``taken`` (inputs already given or wired) is updated with every input connected;
    outputs in ``renamed`` are already wired by a rename and are not guessed again.
    """
    flows: list[DataFlow] = []
    for rule in (_same_id, _output_to_input):
        for output in source.output_ports:
            for port in target.input_ports:
                if port.id not in taken and rule(output, port):
                    taken.add(port.id)
                    flows.append(_flow(source, output, target, port))
    used = {flow.source_port for flow in flows} | set(renamed)
    for output in source.output_ports:
        guess = None if output.id in used else _guess_input(output, target, taken)
        if guess is not None:
            taken.add(guess.id)
            flows.append(_flow(source, output, target, guess))
    return flows


def _guess_input(output: Port, target: Task, taken: set[str]) -> Port | None:
    free = [p for p in target.input_ports if p.id not in taken and _may_guess(output, p)]
    return next((p for p in free if p.required), free[0] if free else None)


def _may_guess(output: Port, port: Port) -> bool:
    """An ``any`` output may fill a missing typed input, but never overrides a typed default
    (a log level, a model name) just because nothing forbids it."""
    if not port.accepts(output):
        return False
    untyped = output.value_type == ValueType.ANY and port.value_type != ValueType.ANY
    return port.required or not untyped


# -- looking back ----------------------------------------------------------------------------
def _same_type(source: Port, target: Port) -> bool:
    return source.value_type == target.value_type


def look_back(earlier: Sequence[Task], target: Task, taken: set[str]) -> list[DataFlow]:
    """Feed each still-missing required input from the most recent earlier task that fits."""
    flows: list[DataFlow] = []
    for port in target.input_ports:
        if not port.required or port.id in taken:
            continue
        found = _find_source(earlier, port, _same_id) or _find_source(earlier, port, _same_type)
        if found is not None:
            taken.add(port.id)
            flows.append(_flow(found[0], found[1], target, port))
    return flows


def _find_source(tasks: Iterable[Task], target: Port, rule: PortRule) -> tuple[Task, Port] | None:
    for task in tasks:
        for output in task.output_ports:
            if rule(output, target):
                return task, output
    return None


# -- helpers ---------------------------------------------------------------------------------
def _flow(source: Task, output: Port, target: Task, port: Port) -> DataFlow:
    return DataFlow(
        source_task=source.id, source_port=output.id, target_task=target.id, target_port=port.id
    )


def describe_ports(ports: Iterable[Port]) -> str:
    """``'text' (text), 'vectors' (vector[])`` — port ids with their value types."""
    described = [f"{p.id!r} ({p.value_type}{'[]' if p.is_array else ''})" for p in ports]
    return ", ".join(described) or "none"


def _missing_message(task: Task, missing: Sequence[Port], previous: Task | None) -> str:
    if previous is None:
        tried = "the previous task already has an outgoing dataflow, so only earlier tasks"
    else:
        tried = (
            f"outputs of the previous task {previous.id!r} ({previous.type}) tried: "
            f"{describe_ports(previous.output_ports)}"
        )
    return (
        f"cannot auto-connect {task.type} (id {task.id!r}): no source for required input(s) "
        f"{describe_ports(missing)}; {tried}. Give the input as a keyword argument, or wire it "
        f"with rename() before adding the task. The task was not added."
    )
