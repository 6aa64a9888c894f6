"""Graph validation: every problem found is reported, each naming its task and port."""

from __future__ import annotations

from graphmesh.orchestrator.errors import GraphIssue, GraphValidationError
from graphmesh.orchestrator.graph.dataflow import DataFlow
from graphmesh.orchestrator.graph.task_graph import TaskGraph


def validate_graph(graph: TaskGraph) -> list[GraphIssue]:
    issues: list[GraphIssue] = []
    for flow in graph.dataflows:
        issues.extend(_check_dataflow(graph, flow))
    for task in graph:
        issues.extend(_check_required_inputs(graph, task.id))
    try:
        graph.topological_order()
    except GraphValidationError as cycle:
        issues.extend(cycle.issues)
    return issues


def _check_dataflow(graph: TaskGraph, flow: DataFlow) -> list[GraphIssue]:
    source, target = graph.get_task(flow.source_task), graph.get_task(flow.target_task)
    target_port = target.input_port(flow.target_port)
    issues = []
    if target_port is None:
        issues.append(_unknown_port(flow.target_task, flow.target_port, "input", target.type))
    if flow.carries_error:
        return issues
    source_port = source.output_port(flow.source_port)
    if source_port is None:
        issues.append(_unknown_port(flow.source_task, flow.source_port, "output", source.type))
    elif target_port is not None and not target_port.accepts(source_port):
        issues.append(
            GraphIssue(
                code="type_mismatch",
                message=(
                    f"dataflow {flow}: output {flow.source_port!r} of task {flow.source_task!r} "
                    f"carries {source_port.value_type}, but input {flow.target_port!r} of task "
                    f"{flow.target_task!r} expects {target_port.value_type}"
                ),
                task_id=flow.target_task,
                port=flow.target_port,
            )
        )
    return issues


def _unknown_port(task_id: str, port: str, direction: str, task_type: str) -> GraphIssue:
    return GraphIssue(
        code=f"unknown_{direction}_port",
        message=f"task {task_id!r} ({task_type}) has no {direction} port {port!r}",
        task_id=task_id,
        port=port,
    )


def _check_required_inputs(graph: TaskGraph, task_id: str) -> list[GraphIssue]:
    task = graph.get_task(task_id)
    needed = [port for port in task.input_ports if port.required and port.id not in task.defaults]
    if not needed:
        return []
    wired = {flow.target_port for flow in graph.incoming(task_id)}
    return [
        GraphIssue(
            code="missing_input",
            message=(
                f"task {task_id!r} ({task.type}) needs input {port.id!r}: "
                "give a default or wire a dataflow"
            ),
            task_id=task_id,
            port=port.id,
        )
        for port in needed
        if port.id not in wired
    ]
