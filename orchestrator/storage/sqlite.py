"""SQLite repositories (stdlib ``sqlite3``): the embedded mode's storage.

Each repository owns one connection, used only by its own single worker thread, so calls
never block the event loop and never share a connection between threads. The database
runs in WAL mode, so several repositories (and processes) can use one file: readers do not
wait for the writer. Opening a repository applies pending migrations.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self, TypeVar

from graphmesh.orchestrator.ai.client import ModelInfo
from graphmesh.orchestrator.database.migrations import migrate_sqlite
from graphmesh.orchestrator.database.sql import SQLITE_QUERIES as QUERIES
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

T = TypeVar("T")
Row = tuple[Any, ...]


def connect(path: Path | str) -> sqlite3.Connection:
    """A connection in autocommit mode (we issue BEGIN ourselves), WAL and foreign keys on."""
    connection = sqlite3.connect(path, isolation_level=None, timeout=30.0)
    try:
        connection.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL keeps committed data across a process crash; only a power cut may
        # lose the last transactions, which a cache and saved graphs can afford.
        connection.execute("PRAGMA synchronous = NORMAL")
        connection.execute("PRAGMA foreign_keys = ON")
        migrate_sqlite(connection)
    except BaseException:
        connection.close()
        raise
    return connection


class SqliteConnection:
    """One ``sqlite3`` connection driven by its own worker thread."""

    def __init__(self, executor: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self._executor = executor
        self._connection = connection
        self._closed = False

    @classmethod
    async def open(cls, path: Path | str) -> SqliteConnection:
        """Connect to (and migrate) the database at ``path``, creating it if missing."""
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphmesh-sqlite")
        try:
            connection = await asyncio.get_running_loop().run_in_executor(executor, connect, path)
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(executor, connection)

    async def call(self, function: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``function(connection)`` on the worker thread."""
        if self._closed:
            raise RuntimeError("the SQLite repository is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, function, self._connection)

    async def execute(self, query: str, params: dict[str, Any] | None = None) -> int:
        """Run one named query; returns the number of rows it changed."""
        return await self.call(lambda db: db.execute(QUERIES[query], params or {}).rowcount)

    async def fetch(self, query: str, params: dict[str, Any] | None = None) -> list[Row]:
        """Every row of one named query."""
        return await self.call(lambda db: db.execute(QUERIES[query], params or {}).fetchall())

    async def close(self) -> None:
        """Close the connection and stop the worker; safe to call twice."""
        if self._closed:
            return
        await self.call(lambda db: db.close())
        self._closed = True
        self._executor.shutdown(wait=True)


class _SqliteRepository:
    """Shared lifecycle: a repository owns its :class:`SqliteConnection`."""

    def __init__(self, connection: SqliteConnection) -> None:
        self._db = connection

    @classmethod
    @asynccontextmanager
    async def open(cls, path: Path | str) -> AsyncIterator[Self]:
        """Yield a repository on the database file at ``path`` (created and migrated)."""
        repository = cls(await SqliteConnection.open(path))
        try:
            yield repository
        finally:
            await repository.close()

    async def close(self) -> None:
        """Close the connection; safe to call twice."""
        await self._db.close()


class SqliteOutputRepository(_SqliteRepository):
    """Task outputs in ``graphmesh_task_outputs``."""

    async def get_output(self, task_type: str, key: str) -> JsonObject | None:
        """The output saved under ``(task_type, key)``, or ``None``."""
        params = {
            "task_type": require_key("task_type", task_type),
            "cache_key": require_key("key", key),
        }
        rows = await self._db.fetch("get_output", params)
        return decode_json(rows[0][0]) if rows else None

    async def save_output(self, task_type: str, key: str, output: JsonObject) -> None:
        """Save ``output``, replacing any earlier one under the same key."""
        params = {
            "task_type": require_key("task_type", task_type),
            "cache_key": require_key("key", key),
            "output": encode_json(require_object("output", output)),
        }
        await self._db.execute("save_output", params)

    async def clear(self, task_type: str | None = None) -> None:
        """Forget every output, or only those of ``task_type``."""
        if task_type is None:
            await self._db.execute("clear_outputs")
        else:
            await self._db.execute(
                "clear_outputs_of_type", {"task_type": require_key("task_type", task_type)}
            )

    async def size(self) -> int:
        """How many outputs are stored."""
        rows = await self._db.fetch("count_outputs")
        return int(rows[0][0])


class SqliteGraphRepository(_SqliteRepository):
    """Saved graphs in ``graphmesh_task_graphs``."""

    async def save_graph(self, graph_id: str, graph: JsonObject) -> None:
        """Save ``graph`` under ``graph_id``, replacing any earlier one."""
        params = {
            "graph_id": require_key("graph_id", graph_id),
            "graph": encode_json(require_object("graph", graph)),
        }
        await self._db.execute("save_graph", params)

    async def get_graph(self, graph_id: str) -> JsonObject | None:
        """The graph saved under ``graph_id``, or ``None``."""
        rows = await self._db.fetch("get_graph", {"graph_id": require_key("graph_id", graph_id)})
        return decode_json(rows[0][0]) if rows else None

    async def list_graphs(self) -> list[str]:
        """Every saved graph id, sorted."""
        return [row[0] for row in await self._db.fetch("list_graphs")]

    async def delete_graph(self, graph_id: str) -> bool:
        """Delete a graph; ``True`` if it existed."""
        return (
            await self._db.execute("delete_graph", {"graph_id": require_key("graph_id", graph_id)})
            > 0
        )


class SqliteModelRepository(_SqliteRepository):
    """Models in ``graphmesh_models``, links in ``graphmesh_task_models``."""

    async def save_model(self, model: ModelInfo) -> None:
        """Save ``model`` by name, replacing earlier info but keeping its task links."""
        data = model_to_json(model)
        params = {"name": model.name, "provider": model.provider, "info": encode_json(data)}
        await self._db.execute("save_model", params)

    async def get_model(self, name: str) -> ModelInfo | None:
        """The model called ``name``, or ``None``."""
        rows = await self._db.fetch("get_model", {"name": require_key("name", name)})
        return _model(rows[0]) if rows else None

    async def list_models(self) -> list[ModelInfo]:
        """Every model, sorted by name."""
        return [_model(row) for row in await self._db.fetch("list_models")]

    async def delete_model(self, name: str) -> bool:
        """Delete a model and its task links; ``True`` if it existed."""
        return await self._db.execute("delete_model", {"name": require_key("name", name)}) > 0

    async def link_task(self, task_type: str, model: str) -> None:
        """Record that ``task_type`` can run on ``model``; the model must be saved first."""
        params = {
            "task_type": require_key("task_type", task_type),
            "model": require_key("model", model),
        }
        try:
            await self._db.execute("link_task", params)
        except sqlite3.IntegrityError as error:
            # The only constraint left after ON CONFLICT DO NOTHING is the foreign key.
            raise unknown_model(model) from error

    async def models_for_task(self, task_type: str) -> list[ModelInfo]:
        """The models linked to ``task_type``, sorted by name."""
        rows = await self._db.fetch(
            "models_for_task", {"task_type": require_key("task_type", task_type)}
        )
        return [_model(row) for row in rows]

    async def tasks_for_model(self, model: str) -> list[str]:
        """The task types linked to ``model``, sorted."""
        rows = await self._db.fetch("tasks_for_model", {"model": require_key("model", model)})
        return [row[0] for row in rows]


def _model(row: Row) -> ModelInfo:
    return model_from_json(decode_json(row[0]))
