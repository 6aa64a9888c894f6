"""The fluent TaskGraphBuilder, its auto-connect rules and graph <-> Python code generation."""

from graphmesh.orchestrator.builder.autoconnect import Rename, plan_dataflows
from graphmesh.orchestrator.builder.builder import TaskGraphBuilder
from graphmesh.orchestrator.builder.codegen import BUILDER_VARIABLE, code_to_graph, graph_to_code
from graphmesh.orchestrator.builder.naming import method_name
from graphmesh.orchestrator.builder.parallel import ParallelTask

__all__ = [
    "BUILDER_VARIABLE",
    "ParallelTask",
    "Rename",
    "TaskGraphBuilder",
    "code_to_graph",
    "graph_to_code",
    "method_name",
    "plan_dataflows",
]
