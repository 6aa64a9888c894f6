"""The small kit every graphmesh gRPC service shares: settings and the server bootstrap.

It imports neither the engine nor a deployable, so the orchestrator, model servers and
gateways can all build on it.
"""

from graphmesh.services.kit.server import (
    GrpcServer,
    ServiceRegistration,
    TlsFiles,
    wait_for_shutdown_signal,
)
from graphmesh.services.kit.settings import ServiceSettings, load_tokens

__all__ = [
    "GrpcServer",
    "ServiceRegistration",
    "ServiceSettings",
    "TlsFiles",
    "load_tokens",
    "wait_for_shutdown_signal",
]
