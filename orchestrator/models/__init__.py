"""The model mesh seen from the orchestrator: a gRPC ModelClient routing model names by
prefix to pools of model servers and gateways (``GRAPHMESH_MODEL_ROUTES``)."""

from graphmesh.orchestrator.models.remote import GrpcModelClient
from graphmesh.orchestrator.models.routes import ModelRoutes, UnknownModelRouteError, parse_routes
from graphmesh.orchestrator.models.settings import ModelSettings

__all__ = [
    "GrpcModelClient",
    "ModelRoutes",
    "ModelSettings",
    "UnknownModelRouteError",
    "parse_routes",
]
