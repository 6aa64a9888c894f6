"""The storage interfaces. Each has memory, filesystem, SQLite and Postgres backends that
pass one contract suite (``tests/contract/``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from graphmesh.orchestrator.ai.client import ModelInfo

JsonObject = dict[str, Any]


class TaskOutputRepository(Protocol):
    """Cached task outputs by cache key (see ``graphmesh.orchestrator.runner.cache_key``).

    Values are JSON-serialisable dicts; a backend returns an equal dict, never the same
    object, so a caller mutating a result cannot corrupt the cache.
    """

    async def get_output(self, task_type: str, key: str) -> JsonObject | None: ...

    async def save_output(self, task_type: str, key: str, output: JsonObject) -> None: ...

    async def clear(self, task_type: str | None = None) -> None: ...

    async def size(self) -> int: ...

    async def close(self) -> None: ...


class TaskGraphRepository(Protocol):
    """Saved graphs by id, stored as graph JSON (``{"tasks": [...], "dataflows": [...]}``)."""

    async def save_graph(self, graph_id: str, graph: JsonObject) -> None: ...

    async def get_graph(self, graph_id: str) -> JsonObject | None: ...

    async def list_graphs(self) -> list[str]: ...

    async def delete_graph(self, graph_id: str) -> bool: ...

    async def close(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class TaskModelLink:
    """A task type that can run on a model (seed: task2model)."""

    task_type: str
    model: str


class ModelRepository(Protocol):
    """Known models and which task types each one serves."""

    async def save_model(self, model: ModelInfo) -> None: ...

    async def get_model(self, name: str) -> ModelInfo | None: ...

    async def list_models(self) -> list[ModelInfo]: ...

    async def delete_model(self, name: str) -> bool: ...

    async def link_task(self, task_type: str, model: str) -> None: ...

    async def models_for_task(self, task_type: str) -> list[ModelInfo]: ...

    async def tasks_for_model(self, model: str) -> list[str]: ...

    async def close(self) -> None: ...
