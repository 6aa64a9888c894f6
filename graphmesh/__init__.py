"""graphmesh: AI pipelines as task graphs, embedded in one process or as a gRPC mesh.

The names most programs need are re-exported here; importing ``graphmesh`` registers the
task catalog but loads no model runtime (models load on first use).
"""

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the task catalog)
from graphmesh.client import Client
from graphmesh.embedded import EmbeddedEngine
from graphmesh.orchestrator.builder import TaskGraphBuilder, code_to_graph, graph_to_code
from graphmesh.orchestrator.errors import GraphmeshError, GraphValidationError
from graphmesh.orchestrator.graph import DataFlow, TaskGraph, graph_from_json, graph_to_json
from graphmesh.orchestrator.runner import RunResult, RunStatus, TaskGraphRunner
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskStatus, ValueType

__version__ = "0.1.0"

__all__ = [
    "Client",
    "DataFlow",
    "EmbeddedEngine",
    "GraphValidationError",
    "GraphmeshError",
    "Port",
    "RunResult",
    "RunStatus",
    "Task",
    "TaskContext",
    "TaskGraph",
    "TaskGraphBuilder",
    "TaskGraphRunner",
    "TaskStatus",
    "ValueType",
    "__version__",
    "code_to_graph",
    "graph_from_json",
    "graph_to_code",
    "graph_to_json",
]
