"""Task graphs: dataflows, the TaskGraph DAG, validation and JSON forms."""

from graphmesh.orchestrator.graph.dataflow import ERROR_PORT, DataFlow
from graphmesh.orchestrator.graph.json_format import (
    graph_from_dependency_json,
    graph_from_json,
    graph_to_dependency_json,
    graph_to_json,
    loads_graph,
)
from graphmesh.orchestrator.graph.task_graph import TaskGraph

__all__ = [
    "ERROR_PORT",
    "DataFlow",
    "TaskGraph",
    "graph_from_dependency_json",
    "graph_from_json",
    "graph_to_dependency_json",
    "graph_to_json",
    "loads_graph",
]
