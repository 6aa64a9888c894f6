"""The in-process runner: dependency-driven execution, caching, events and deadlines."""

from graphmesh.orchestrator.runner.cache_key import cache_key, canonical_json, is_cacheable
from graphmesh.orchestrator.runner.middleware import CacheMiddleware, Handler, Middleware, TaskCall
from graphmesh.orchestrator.runner.result import (
    RunFailedError,
    RunnerEvent,
    RunResult,
    RunStatus,
    TaskResult,
)
from graphmesh.orchestrator.runner.runner import TaskGraphRunner

__all__ = [
    "CacheMiddleware",
    "Handler",
    "Middleware",
    "RunFailedError",
    "RunResult",
    "RunStatus",
    "RunnerEvent",
    "TaskCall",
    "TaskGraphRunner",
    "TaskResult",
    "cache_key",
    "canonical_json",
    "is_cacheable",
]
