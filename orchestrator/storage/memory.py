"""In-memory repositories: the reference behaviour, used by unit tests and previews.

Values are kept as encoded JSON text, not as the caller's objects, so they behave exactly
like the persistent backends (copies out, JSON normalisation, the same refusals).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Self

from graphmesh.orchestrator.ai.client import ModelInfo
from graphmesh.orchestrator.storage.base import JsonObject
from graphmesh.orchestrator.storage.codec import (
    decode_json,
    encode_json,
    model_from_json,
    model_to_json,
    require_key,
    require_object,
    unknown_model,
)


class _MemoryRepository:
    """Shared lifecycle: nothing to open, ``open()`` exists for symmetry with the others."""

    @classmethod
    @asynccontextmanager
    async def open(cls) -> AsyncIterator[Self]:
        """Yield a fresh, empty repository."""
        repository = cls()
        try:
            yield repository
        finally:
            await repository.close()

    async def close(self) -> None:
        """Nothing to release; the data lives as long as the object."""


class MemoryOutputRepository(_MemoryRepository):
    """Task outputs in a dict keyed by ``(task_type, key)``."""

    def __init__(self) -> None:
        self._outputs: dict[tuple[str, str], str] = {}

    async def get_output(self, task_type: str, key: str) -> JsonObject | None:
        """The output saved under ``(task_type, key)``, or ``None``."""
        text = self._outputs.get((require_key("task_type", task_type), require_key("key", key)))
        return None if text is None else decode_json(text)

    async def save_output(self, task_type: str, key: str, output: JsonObject) -> None:
        """Save ``output``, replacing any earlier one under the same key."""
        entry = (require_key("task_type", task_type), require_key("key", key))
        self._outputs[entry] = encode_json(require_object("output", output))

    async def clear(self, task_type: str | None = None) -> None:
        """Forget every output, or only those of ``task_type``."""
        if task_type is None:
            self._outputs.clear()
            return
        require_key("task_type", task_type)
        for entry in [entry for entry in self._outputs if entry[0] == task_type]:
            del self._outputs[entry]

    async def size(self) -> int:
        """How many outputs are stored."""
        return len(self._outputs)


class MemoryGraphRepository(_MemoryRepository):
    """Saved graphs in a dict keyed by id."""

    def __init__(self) -> None:
        self._graphs: dict[str, str] = {}

    async def save_graph(self, graph_id: str, graph: JsonObject) -> None:
        """Save ``graph`` under ``graph_id``, replacing any earlier one."""
        self._graphs[require_key("graph_id", graph_id)] = encode_json(
            require_object("graph", graph)
        )

    async def get_graph(self, graph_id: str) -> JsonObject | None:
        """The graph saved under ``graph_id``, or ``None``."""
        text = self._graphs.get(require_key("graph_id", graph_id))
        return None if text is None else decode_json(text)

    async def list_graphs(self) -> list[str]:
        """Every saved graph id, sorted."""
        return sorted(self._graphs)

    async def delete_graph(self, graph_id: str) -> bool:
        """Delete a graph; ``True`` if it existed."""
        return self._graphs.pop(require_key("graph_id", graph_id), None) is not None


class MemoryModelRepository(_MemoryRepository):
    """Models by name plus a set of ``(task_type, model)`` links."""

    def __init__(self) -> None:
        self._models: dict[str, str] = {}
        self._links: set[tuple[str, str]] = set()

    async def save_model(self, model: ModelInfo) -> None:
        """Save ``model`` by name, replacing earlier info but keeping its task links."""
        self._models[model.name] = encode_json(model_to_json(model))

    async def get_model(self, name: str) -> ModelInfo | None:
        """The model called ``name``, or ``None``."""
        text = self._models.get(require_key("name", name))
        return None if text is None else model_from_json(decode_json(text))

    async def list_models(self) -> list[ModelInfo]:
        """Every model, sorted by name."""
        return [model_from_json(decode_json(self._models[name])) for name in sorted(self._models)]

    async def delete_model(self, name: str) -> bool:
        """Delete a model and its task links; ``True`` if it existed."""
        existed = self._models.pop(require_key("name", name), None) is not None
        self._links = {link for link in self._links if link[1] != name}
        return existed

    async def link_task(self, task_type: str, model: str) -> None:
        """Record that ``task_type`` can run on ``model``; the model must be saved first."""
        link = (require_key("task_type", task_type), require_key("model", model))
        if model not in self._models:
            raise unknown_model(model)
        self._links.add(link)

    async def models_for_task(self, task_type: str) -> list[ModelInfo]:
        """The models linked to ``task_type``, sorted by name."""
        require_key("task_type", task_type)
        names = sorted(name for linked, name in self._links if linked == task_type)
        return [model_from_json(decode_json(self._models[name])) for name in names]

    async def tasks_for_model(self, model: str) -> list[str]:
        """The task types linked to ``model``, sorted."""
        require_key("model", model)
        return sorted(task_type for task_type, name in self._links if name == model)
