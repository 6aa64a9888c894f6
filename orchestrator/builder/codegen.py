"""Code generation: a graph as Python builder code, and that code back into a graph.

The generated code is a script that imports :class:`TaskGraphBuilder` and the modules that
define the graph's task types, then rebuilds the graph into a variable named ``builder``
(the convention :func:`code_to_graph` relies on)::

    builder = TaskGraphBuilder(auto_connect=False)
    builder.text_embedding(id="embed", text="hello")
    builder.debug_log(id="log")
    builder.connect("embed", "vector", "log", "message")

Auto-connect is off and every dataflow is written out, so the code never depends on
auto-connect's guesses: ``builder.to_json()`` equals the original graph's JSON, ids,
defaults, config, dataflow order and compound subgraphs included. Each compound task's
subgraph is built first by its own builder (``subgraph_1`` …) passed as ``subgraph=``.
"""

from __future__ import annotations

import keyword
from collections.abc import Mapping
from typing import Any

from graphmesh.orchestrator.builder.builder import TaskGraphBuilder
from graphmesh.orchestrator.builder.naming import method_name, resolve_method
from graphmesh.orchestrator.builder.pyformat import Code, call_source
from graphmesh.orchestrator.errors import GraphError
from graphmesh.orchestrator.graph.json_format import FLOW_KEYS, graph_to_json
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.task.base import Task
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry

BUILDER_VARIABLE = "builder"
_RESERVED = frozenset({"id", "config"})
# Modules imported by the header anyway; importing them again would only add noise.
_IMPLIED_MODULES = ("graphmesh.orchestrator.builder", "graphmesh.orchestrator.task")


def graph_to_code(
    graph: TaskGraph | Mapping[str, Any], *, registry: TaskRegistry = default_registry
) -> str:
    """Python source that rebuilds ``graph`` (a TaskGraph or graph JSON) into ``builder``."""
    data = graph_to_json(graph) if isinstance(graph, TaskGraph) else graph
    writer = _CodeWriter(registry)
    body = writer.graph(data, BUILDER_VARIABLE)
    return writer.header() + "\n\n" + body + "\n"


def code_to_graph(source: str, *, variable: str = BUILDER_VARIABLE) -> TaskGraph:
    """Execute builder code (as :func:`graph_to_code` writes it) and return its graph.

    The code runs with full Python power in a fresh namespace of this process: use it only
    for code you trust, such as code this module generated. Never on code from the API.
    """
    namespace: dict[str, Any] = {"__name__": "graphmesh_generated"}
    exec(compile(source, "<graphmesh builder code>", "exec"), namespace)
    builder = namespace.get(variable)
    if not isinstance(builder, TaskGraphBuilder):
        raise GraphError(f"the code defines no TaskGraphBuilder named {variable!r}")
    return builder.graph


class _CodeWriter:
    """Writes the statements of one graph and its subgraphs; collects the imports."""

    def __init__(self, registry: TaskRegistry) -> None:
        self.registry = registry
        self.modules: set[str] = set()
        self.subgraphs = 0

    def header(self) -> str:
        imports = [
            f"import {module}  # noqa: F401  (registers task types)"
            for module in sorted(self.modules)
        ]
        return "\n".join(
            [
                '"""Rebuilds a task graph into `builder` (written by graphmesh graph_to_code)."""',
                "",
                *imports,
                "from graphmesh.orchestrator.builder import TaskGraphBuilder",
            ]
        )

    def graph(self, data: Mapping[str, Any], variable: str) -> str:
        blocks: list[str] = []
        subgraph_vars: dict[str, str] = {}
        for item in data.get("tasks", []):
            if "subgraph" in item:
                self.subgraphs += 1
                subgraph_vars[item["id"]] = f"subgraph_{self.subgraphs}"
                blocks.append(self.graph(item["subgraph"], subgraph_vars[item["id"]]))
        lines = [f"{variable} = TaskGraphBuilder(auto_connect=False)"]
        lines += [
            self.task(variable, item, subgraph_vars.get(item["id"]))
            for item in data.get("tasks", [])
        ]
        lines += [
            call_source(f"{variable}.connect", [("", flow[key]) for key in FLOW_KEYS])
            for flow in data.get("dataflows", [])
        ]
        return "\n\n".join([*blocks, "\n".join(lines)])

    def task(self, variable: str, item: Mapping[str, Any], subgraph: str | None) -> str:
        cls = self.registry.get(item["type"])
        self._note_module(cls)
        method = self._method(cls.type)
        function = f"{variable}.{method or 'add'}"
        args: list[tuple[str, Any]] = [] if method else [("", cls.type)]
        args.append(("id=", item["id"]))
        if item.get("config"):
            args.append(("config=", item["config"]))
        if subgraph is not None:
            args.append(("subgraph=", Code(subgraph)))
        args += _input_args(item["id"], item.get("defaults", {}), subgraph is not None)
        return call_source(function, args)

    def _method(self, task_type: str) -> str | None:
        """The builder method for a type, when it is a plain name that maps back to it."""
        name = method_name(task_type)
        usable = name.isidentifier() and not keyword.iskeyword(name) and not name.startswith("_")
        if not usable or hasattr(TaskGraphBuilder, name):
            return None
        return name if resolve_method(name, self.registry.names()) == task_type else None

    def _note_module(self, cls: type[Task]) -> None:
        if not cls.__module__.startswith(_IMPLIED_MODULES):
            self.modules.add(cls.__module__)


def _input_args(task_id: str, defaults: Mapping[str, Any], compound: bool) -> list[tuple[str, Any]]:
    """Keyword arguments in the defaults' order; names that cannot be keywords (``class``,
    ``two words``) go into ``**{...}``, consecutive ones sharing one."""
    args: list[tuple[str, Any]] = []
    for key, value in defaults.items():
        if key in _RESERVED or (compound and key == "subgraph"):
            raise GraphError(
                f"task {task_id!r}: input {key!r} has the name of a reserved builder keyword, "
                "so builder code cannot set its default"
            )
        if key.isidentifier() and not keyword.iskeyword(key):
            args.append((f"{key}=", value))
        elif args and args[-1][0] == "**":
            args[-1][1][key] = value
        else:
            args.append(("**", {key: value}))
    return args
