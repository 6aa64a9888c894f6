"""Utility tasks: debug logging, in-process Python lambdas and graphs given as JSON."""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Collection, Mapping
from typing import Any, Final

from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.errors import GraphValidationError
from graphmesh.orchestrator.graph import TaskGraph, graph_from_json, loads_graph
from graphmesh.orchestrator.task import (
    CompoundTask,
    OutputTask,
    Port,
    Task,
    TaskContext,
    TaskInput,
    TaskOutput,
    ValueType,
)
from graphmesh.orchestrator.task.kinds import merge_sink_outputs

logger = logging.getLogger(__name__)

LOG_LEVELS: Final = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


class DebugLogTask(OutputTask):
    """Log ``message`` at ``level`` (Python logging) and pass it on unchanged."""

    type = "DebugLogTask"
    category = "Output"
    inputs = (
        Port(id="message", value_type=ValueType.ANY, default=None),
        Port(id="level", value_type=ValueType.LOG_LEVEL, default="info"),
    )
    outputs = (Port(id="message", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        level = LOG_LEVELS.get(str(inputs["level"]).lower())
        if level is None:
            raise TaskInputError(f"level {inputs['level']!r} is not one of {', '.join(LOG_LEVELS)}")
        logger.log(level, "[%s] %s", self.id, _printable(inputs["message"]))
        return {"message": inputs["message"]}

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        return {"message": inputs.get("message")}


def _printable(message: Any) -> str:
    if isinstance(message, str):
        return message
    return json.dumps(message, ensure_ascii=False, default=repr)


class LambdaTask(Task):
    """Call a Python function (sync or async) on ``input``; its result is ``output``.

    In-process only: a callable cannot be written in graph JSON, so a graph arriving over
    the API can never run Python (a name in ``fn`` is refused, never imported).
    """

    type = "LambdaTask"
    cacheable = False
    inputs = (
        Port(id="fn", name="Function", value_type=ValueType.FUNCTION),
        Port(id="input", value_type=ValueType.ANY, default=None),
    )
    outputs = (Port(id="output", value_type=ValueType.ANY),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        fn = inputs.get("fn")
        if not callable(fn):
            raise TaskInputError(
                f"fn must be a Python callable given in process, not {type(fn).__name__}"
            )
        result = fn(inputs["input"])
        if inspect.isawaitable(result):
            result = await result
        return {"output": result}


class JsonTask(CompoundTask):
    """Run a graph given as data: graph JSON (``{"tasks", "dataflows"}``) or the
    dependency-JSON list, as an object, a list or a JSON string.

    ``input`` (an object) reaches the subgraph's root tasks by port name; ``output`` is
    the subgraph's sink outputs merged.
    """

    type = "JsonTask"
    inputs = (
        Port(id="json", name="Graph JSON", value_type=ValueType.JSON),
        Port(id="input", value_type=ValueType.JSON, default=None),
    )
    outputs = (Port(id="output", value_type=ValueType.JSON),)

    # Unlike other compound tasks the ports are fixed: the subgraph exists only per run.
    @property
    def input_ports(self) -> tuple[Port, ...]:
        return self.inputs

    @property
    def output_ports(self) -> tuple[Port, ...]:
        return self.outputs

    def input_port(self, port_id: str) -> Port | None:
        return Task.input_port(self, port_id)

    def output_port(self, port_id: str) -> Port | None:
        return Task.output_port(self, port_id)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        sub_inputs = inputs.get("input") or {}
        if not isinstance(sub_inputs, Mapping):
            raise TaskInputError("input must be an object: port name -> value for root tasks")
        graph = build_graph(inputs["json"], provided=sub_inputs.keys())
        outputs = await ctx.run_subgraph(graph, dict(sub_inputs))
        return {"output": merge_sink_outputs(graph, outputs)}

    def run_reactive(self, inputs: TaskInput) -> TaskOutput:
        return {}


def build_graph(data: Any, provided: Collection[str] = ()) -> TaskGraph:
    """A checked graph from graph JSON, dependency JSON or a JSON string of either.

    Inputs named in ``provided`` count as given to the root tasks.
    """
    if isinstance(data, str | bytes):
        graph = loads_graph(data)
    elif isinstance(data, Mapping | list):
        graph = graph_from_json(data)
    else:
        raise TaskInputError(
            f"json must be a graph object, list or string, not {type(data).__name__}"
        )
    roots = {task.id for task in graph.roots()}
    issues = [
        issue
        for issue in graph.validate()
        if not (issue.code == "missing_input" and issue.task_id in roots and issue.port in provided)
    ]
    if issues:
        raise GraphValidationError(issues)
    return graph
