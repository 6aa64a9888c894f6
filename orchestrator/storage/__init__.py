"""Repositories for task outputs, saved graphs and models.

The interfaces live in :mod:`graphmesh.orchestrator.storage.base`. Each has four backends,
imported from their own modules so that a caller only pulls in the driver it uses:
``memory`` (tests, previews), ``filesystem`` (one JSON file per key), ``sqlite`` (embedded
mode) and ``postgres`` (the service mesh). All four pass ``tests/contract/``.
"""

from graphmesh.orchestrator.storage.base import (
    JsonObject,
    ModelRepository,
    TaskGraphRepository,
    TaskModelLink,
    TaskOutputRepository,
)

__all__ = [
    "JsonObject",
    "ModelRepository",
    "TaskGraphRepository",
    "TaskModelLink",
    "TaskOutputRepository",
]
