"""Routing a run's inputs to tasks.

A key ``"port"`` reaches every root task that has that input port; a key ``"task.port"``
reaches that one task (any task, root or not). A key that reaches nothing is an error, so a
typo never silently runs the graph on its defaults. Routed values replace defaults.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from graphmesh.orchestrator.errors import GraphIssue, GraphValidationError
from graphmesh.orchestrator.graph.task_graph import TaskGraph

RoutedInputs = dict[str, dict[str, Any]]


def route_inputs(graph: TaskGraph, inputs: Mapping[str, Any]) -> RoutedInputs:
    """``{task_id: {port: value}}`` for every input; raises naming keys that reach no task."""
    routed, issues = resolve_inputs(graph, inputs)
    if issues:
        raise GraphValidationError(issues)
    return routed


def resolve_inputs(
    graph: TaskGraph, inputs: Mapping[str, Any]
) -> tuple[RoutedInputs, list[GraphIssue]]:
    """The routed inputs, and one issue per key that reaches no task."""
    routed: RoutedInputs = {}
    issues: list[GraphIssue] = []
    for key, value in inputs.items():
        targets = _targets(graph, key)
        if not targets:
            issues.append(_unknown(graph, key))
        for task_id, port in targets:
            routed.setdefault(task_id, {})[port] = value
    return routed, issues


def _targets(graph: TaskGraph, key: str) -> list[tuple[str, str]]:
    task_id, dot, port = key.rpartition(".")
    if dot and task_id in graph and graph.get_task(task_id).input_port(port) is not None:
        return [(task_id, port)]
    return [(task.id, key) for task in graph.roots() if task.input_port(key) is not None]


def _unknown(graph: TaskGraph, key: str) -> GraphIssue:
    ports = sorted({port.id for task in graph.roots() for port in task.input_ports})
    return GraphIssue(
        code="unknown_input",
        port=key,
        message=(
            f"input {key!r} reaches no task: give a root input port "
            f"({', '.join(map(repr, ports)) or 'none'}) or TASK.PORT"
        ),
    )
