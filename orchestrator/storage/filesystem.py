"""Repositories kept as JSON files: one file per key under a root directory.

Layout under ``root``: ``outputs/<h(task_type)>/<h(key)>.json``, ``graphs/<h(id)>.json`` and
``models/<h(name)>.json``, where ``h`` is the sha256 hex digest, so any key makes a safe,
fixed-length file name. Each file also holds its original key. Writes go to a temporary
file in the same directory and are moved into place with ``os.replace``, so a reader sees
the old document or the new one, never half of one. Blocking file calls run in worker
threads. Read-modify-write updates (model links) are serialised within one repository;
two processes linking the same model at once may lose a link.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
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

# Match stored files only: not temporary files, nor directories renamed aside for deletion.
_STORED = "[0-9a-f]*.json"
_STORED_IN_SUBDIRECTORIES = f"[0-9a-f]*/{_STORED}"


def hashed(key: str) -> str:
    """A safe, fixed-length name for any key (a directory name as is, a file name + .json)."""
    return hashlib.sha256(key.encode()).hexdigest()


def read_document(path: Path) -> JsonObject | None:
    """The JSON document at ``path``, or ``None`` if there is none."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return decode_json(text)


def write_document(path: Path, document: JsonObject) -> None:
    """Write ``document`` to ``path`` atomically (temp file, fsync, ``os.replace``)."""
    text = encode_json(document)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def delete_file(path: Path) -> bool:
    """Remove ``path``; ``True`` if it existed."""
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def remove_tree(directory: Path) -> None:
    """Remove ``directory`` at once: rename it aside first, so no reader sees it half gone."""
    doomed = directory.with_name(f".{directory.name}.deleted-{uuid.uuid4().hex}")
    try:
        directory.rename(doomed)
    except FileNotFoundError:
        return
    shutil.rmtree(doomed)


def documents(pattern: str, root: Path) -> Iterator[JsonObject]:
    """Every document under ``root`` matching ``pattern`` (temporary files never match)."""
    for path in sorted(root.glob(pattern)):
        document = read_document(path)
        if document is not None:
            yield document


class _FilesystemRepository:
    """Shared lifecycle: a directory under ``root`` named after the repository kind."""

    kind = ""

    def __init__(self, root: Path | str) -> None:
        self._directory = Path(root) / self.kind

    @classmethod
    @asynccontextmanager
    async def open(cls, root: Path | str) -> AsyncIterator[Self]:
        """Yield a repository keeping its files under ``root`` (created if missing)."""
        repository = cls(root)
        await asyncio.to_thread(repository._directory.mkdir, parents=True, exist_ok=True)
        try:
            yield repository
        finally:
            await repository.close()

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own files."""

    async def _documents(self) -> list[JsonObject]:
        return await asyncio.to_thread(lambda: list(documents(_STORED, self._directory)))


class FilesystemOutputRepository(_FilesystemRepository):
    """Task outputs, one file per ``(task_type, key)``, one directory per task type."""

    kind = "outputs"

    def _type_directory(self, task_type: str) -> Path:
        return self._directory / hashed(require_key("task_type", task_type))

    def _path(self, task_type: str, key: str) -> Path:
        return self._type_directory(task_type) / f"{hashed(require_key('key', key))}.json"

    async def get_output(self, task_type: str, key: str) -> JsonObject | None:
        """The output saved under ``(task_type, key)``, or ``None``."""
        document = await asyncio.to_thread(read_document, self._path(task_type, key))
        return None if document is None else require_object("output", document["output"])

    async def save_output(self, task_type: str, key: str, output: JsonObject) -> None:
        """Save ``output``, replacing any earlier one under the same key."""
        path = self._path(task_type, key)
        document = {"task_type": task_type, "key": key, "output": require_object("output", output)}
        await asyncio.to_thread(write_document, path, document)

    async def clear(self, task_type: str | None = None) -> None:
        """Forget every output, or only those of ``task_type``."""
        directory = self._directory if task_type is None else self._type_directory(task_type)
        await asyncio.to_thread(remove_tree, directory)

    async def size(self) -> int:
        """How many outputs are stored."""
        return await asyncio.to_thread(
            lambda: sum(1 for _ in self._directory.glob(_STORED_IN_SUBDIRECTORIES))
        )


class FilesystemGraphRepository(_FilesystemRepository):
    """Saved graphs, one file per id."""

    kind = "graphs"

    def _path(self, graph_id: str) -> Path:
        return self._directory / f"{hashed(require_key('graph_id', graph_id))}.json"

    async def save_graph(self, graph_id: str, graph: JsonObject) -> None:
        """Save ``graph`` under ``graph_id``, replacing any earlier one."""
        path = self._path(graph_id)
        document = {"graph_id": graph_id, "graph": require_object("graph", graph)}
        await asyncio.to_thread(write_document, path, document)

    async def get_graph(self, graph_id: str) -> JsonObject | None:
        """The graph saved under ``graph_id``, or ``None``."""
        document = await asyncio.to_thread(read_document, self._path(graph_id))
        return None if document is None else require_object("graph", document["graph"])

    async def list_graphs(self) -> list[str]:
        """Every saved graph id, sorted."""
        return sorted(document["graph_id"] for document in await self._documents())

    async def delete_graph(self, graph_id: str) -> bool:
        """Delete a graph; ``True`` if it existed."""
        return await asyncio.to_thread(delete_file, self._path(graph_id))


class FilesystemModelRepository(_FilesystemRepository):
    """Models, one file per name holding the model and the task types linked to it."""

    kind = "models"

    def __init__(self, root: Path | str) -> None:
        super().__init__(root)
        # Linking reads, changes and rewrites a model's file; one writer at a time.
        self._lock = asyncio.Lock()

    def _path(self, name: str, argument: str = "name") -> Path:
        return self._directory / f"{hashed(require_key(argument, name))}.json"

    async def save_model(self, model: ModelInfo) -> None:
        """Save ``model`` by name, replacing earlier info but keeping its task links."""
        data = model_to_json(model)
        path = self._path(model.name)
        async with self._lock:
            existing = await asyncio.to_thread(read_document, path)
            tasks = [] if existing is None else existing["tasks"]
            await asyncio.to_thread(write_document, path, {"model": data, "tasks": tasks})

    async def get_model(self, name: str) -> ModelInfo | None:
        """The model called ``name``, or ``None``."""
        document = await asyncio.to_thread(read_document, self._path(name))
        return None if document is None else model_from_json(document["model"])

    async def list_models(self) -> list[ModelInfo]:
        """Every model, sorted by name."""
        models = [model_from_json(document["model"]) for document in await self._documents()]
        return sorted(models, key=lambda model: model.name)

    async def delete_model(self, name: str) -> bool:
        """Delete a model and its task links; ``True`` if it existed."""
        path = self._path(name)
        async with self._lock:
            return await asyncio.to_thread(delete_file, path)

    async def link_task(self, task_type: str, model: str) -> None:
        """Record that ``task_type`` can run on ``model``; the model must be saved first."""
        require_key("task_type", task_type)
        path = self._path(model, "model")
        async with self._lock:
            document = await asyncio.to_thread(read_document, path)
            if document is None:
                raise unknown_model(model)
            if task_type not in document["tasks"]:
                document["tasks"] = sorted([*document["tasks"], task_type])
                await asyncio.to_thread(write_document, path, document)

    async def models_for_task(self, task_type: str) -> list[ModelInfo]:
        """The models linked to ``task_type``, sorted by name."""
        require_key("task_type", task_type)
        found = await self._documents()
        models = [model_from_json(doc["model"]) for doc in found if task_type in doc["tasks"]]
        return sorted(models, key=lambda model: model.name)

    async def tasks_for_model(self, model: str) -> list[str]:
        """The task types linked to ``model``, sorted."""
        document = await asyncio.to_thread(read_document, self._path(model, "model"))
        return [] if document is None else sorted(document["tasks"])
