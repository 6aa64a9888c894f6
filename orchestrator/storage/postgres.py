"""Postgres repositories (psycopg 3, async, ``psycopg_pool``): the service mesh's storage.

Values are ``jsonb``. ``open(dsn)`` gives a repository its own pool; to share one pool
between repositories, open it with :func:`open_pool` and pass it to the constructors
(the pool's owner closes it). Opening a pool applies pending migrations. The pool is a
:class:`~graphmesh.orchestrator.database.pool.PostgresPool`: while the database is
unreachable, calls fail at once (``psycopg.OperationalError``) instead of waiting for a
connection.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Self

import psycopg
from psycopg.rows import TupleRow

from graphmesh.orchestrator.ai.client import ModelInfo
from graphmesh.orchestrator.database.migrations import migrate_postgres
from graphmesh.orchestrator.database.pool import PostgresPool
from graphmesh.orchestrator.database.sql import POSTGRES_QUERIES as QUERIES
from graphmesh.orchestrator.errors import StoreUnavailableError
from graphmesh.orchestrator.storage.base import JsonObject
from graphmesh.orchestrator.storage.codec import (
    encode_json,
    model_from_json,
    model_to_json,
    require_key,
    require_object,
    unknown_model,
)

log = logging.getLogger(__name__)

Pool = PostgresPool


@asynccontextmanager
async def open_pool(dsn: str, *, max_size: int = 4, migrate: bool = True) -> AsyncIterator[Pool]:
    """An open connection pool on ``dsn`` (after applying pending migrations), closed on exit."""
    async with PostgresPool.open(dsn, min_size=1, max_size=max_size) as pool:
        if migrate:
            async with pool.connection() as connection:
                await migrate_postgres(connection)
        yield pool


class _PostgresRepository:
    """Shared plumbing: named queries run on a connection borrowed from the pool."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    @classmethod
    @asynccontextmanager
    async def open(cls, dsn: str, *, max_size: int = 4) -> AsyncIterator[Self]:
        """Yield a repository with its own pool on ``dsn``, closed on exit."""
        async with open_pool(dsn, max_size=max_size) as pool:
            yield cls(pool)

    async def close(self) -> None:
        """Nothing of its own to release: the pool belongs to whoever opened it."""

    async def _execute(self, query: str, params: dict[str, Any] | None = None) -> int:
        async with self._connection() as connection:
            cursor = await connection.execute(QUERIES[query], params)
            return cursor.rowcount

    async def _fetch(self, query: str, params: dict[str, Any] | None = None) -> list[TupleRow]:
        async with self._connection() as connection:
            cursor = await connection.execute(QUERIES[query], params)
            return await cursor.fetchall()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        """A pooled connection; an unreachable database, or a connection that broke, is
        StoreUnavailableError (UNAVAILABLE to API callers, without the driver's text)."""
        connection: psycopg.AsyncConnection[TupleRow] | None = None
        try:
            async with self._pool.connection() as connection:
                yield connection
        except psycopg.OperationalError as error:
            if connection is not None and not (connection.closed or connection.broken):
                raise
            log.warning("the database is unavailable: %s", error)
            raise StoreUnavailableError("the database is unavailable; try again later") from error


class PostgresOutputRepository(_PostgresRepository):
    """Task outputs in ``graphmesh_task_outputs``."""

    async def get_output(self, task_type: str, key: str) -> JsonObject | None:
        """The output saved under ``(task_type, key)``, or ``None``."""
        params = {
            "task_type": require_key("task_type", task_type),
            "cache_key": require_key("key", key),
        }
        rows = await self._fetch("get_output", params)
        return require_object("output", rows[0][0]) if rows else None

    async def save_output(self, task_type: str, key: str, output: JsonObject) -> None:
        """Save ``output``, replacing any earlier one under the same key."""
        params = {
            "task_type": require_key("task_type", task_type),
            "cache_key": require_key("key", key),
            "output": encode_json(require_object("output", output)),
        }
        await self._execute("save_output", params)

    async def clear(self, task_type: str | None = None) -> None:
        """Forget every output, or only those of ``task_type``."""
        if task_type is None:
            await self._execute("clear_outputs")
        else:
            await self._execute(
                "clear_outputs_of_type", {"task_type": require_key("task_type", task_type)}
            )

    async def size(self) -> int:
        """How many outputs are stored."""
        rows = await self._fetch("count_outputs")
        return int(rows[0][0])


class PostgresGraphRepository(_PostgresRepository):
    """Saved graphs in ``graphmesh_task_graphs``."""

    async def save_graph(self, graph_id: str, graph: JsonObject) -> None:
        """Save ``graph`` under ``graph_id``, replacing any earlier one."""
        params = {
            "graph_id": require_key("graph_id", graph_id),
            "graph": encode_json(require_object("graph", graph)),
        }
        await self._execute("save_graph", params)

    async def get_graph(self, graph_id: str) -> JsonObject | None:
        """The graph saved under ``graph_id``, or ``None``."""
        rows = await self._fetch("get_graph", {"graph_id": require_key("graph_id", graph_id)})
        return require_object("graph", rows[0][0]) if rows else None

    async def list_graphs(self) -> list[str]:
        """Every saved graph id, sorted."""
        return [row[0] for row in await self._fetch("list_graphs")]

    async def delete_graph(self, graph_id: str) -> bool:
        """Delete a graph; ``True`` if it existed."""
        return (
            await self._execute("delete_graph", {"graph_id": require_key("graph_id", graph_id)}) > 0
        )


class PostgresModelRepository(_PostgresRepository):
    """Models in ``graphmesh_models``, links in ``graphmesh_task_models``."""

    async def save_model(self, model: ModelInfo) -> None:
        """Save ``model`` by name, replacing earlier info but keeping its task links."""
        data = model_to_json(model)
        params = {"name": model.name, "provider": model.provider, "info": encode_json(data)}
        await self._execute("save_model", params)

    async def get_model(self, name: str) -> ModelInfo | None:
        """The model called ``name``, or ``None``."""
        rows = await self._fetch("get_model", {"name": require_key("name", name)})
        return model_from_json(rows[0][0]) if rows else None

    async def list_models(self) -> list[ModelInfo]:
        """Every model, sorted by name."""
        return [model_from_json(row[0]) for row in await self._fetch("list_models")]

    async def delete_model(self, name: str) -> bool:
        """Delete a model and its task links; ``True`` if it existed."""
        return await self._execute("delete_model", {"name": require_key("name", name)}) > 0

    async def link_task(self, task_type: str, model: str) -> None:
        """Record that ``task_type`` can run on ``model``; the model must be saved first."""
        params = {
            "task_type": require_key("task_type", task_type),
            "model": require_key("model", model),
        }
        try:
            await self._execute("link_task", params)
        except psycopg.errors.ForeignKeyViolation as error:
            raise unknown_model(model) from error

    async def models_for_task(self, task_type: str) -> list[ModelInfo]:
        """The models linked to ``task_type``, sorted by name."""
        rows = await self._fetch(
            "models_for_task", {"task_type": require_key("task_type", task_type)}
        )
        return [model_from_json(row[0]) for row in rows]

    async def tasks_for_model(self, model: str) -> list[str]:
        """The task types linked to ``model``, sorted."""
        rows = await self._fetch("tasks_for_model", {"model": require_key("model", model)})
        return [row[0] for row in rows]
