"""The embedded engine: the whole runner in one process, models in-process, SQLite cache.

This is a composition root: it is the one place allowed to wire the engine's ModelClient
to the model server's backends without going through gRPC.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from types import TracebackType
from typing import Any, Self

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the task catalog)
from graphmesh.orchestrator.ai.client import ModelClient
from graphmesh.orchestrator.catalog.paths import STATE_DIR_RESOURCE
from graphmesh.orchestrator.graph.task_graph import TaskGraph
from graphmesh.orchestrator.runner import RunnerEvent, RunResult, TaskGraphRunner
from graphmesh.orchestrator.sandbox import SANDBOX_RESOURCE, SandboxPool, SandboxSettings
from graphmesh.orchestrator.storage.base import TaskOutputRepository
from graphmesh.orchestrator.storage.sqlite import SqliteOutputRepository
from graphmesh.settings import EmbeddedSettings


class EmbeddedEngine:
    """``async with EmbeddedEngine() as engine: result = await engine.run(graph)``.

    Models load lazily on first use, so graphs without AI tasks start instantly; so do
    JavaScript sandbox processes (``GRAPHMESH_JS_*`` settings), ended when the engine
    closes.
    """

    def __init__(
        self,
        settings: EmbeddedSettings | None = None,
        *,
        models: ModelClient | None = None,
        repository: TaskOutputRepository | None = None,
    ) -> None:
        self.settings = settings or EmbeddedSettings()
        self.models = models
        self.repository = repository
        self.sandbox: SandboxPool | None = None
        self._stack = AsyncExitStack()

    async def __aenter__(self) -> Self:
        await self._stack.__aenter__()
        self.sandbox = SandboxPool(SandboxSettings())  # its workers start on first use
        self._stack.callback(self.sandbox.close)
        if self.models is None:
            from graphmesh.local_models import LocalModelClient

            self.models = await self._stack.enter_async_context(
                LocalModelClient(task_max_new_tokens=self.settings.max_new_tokens)
            )
        if self.repository is None and self.settings.cache:
            self.settings.state_dir.mkdir(parents=True, exist_ok=True)
            path = self.settings.state_dir / "cache.sqlite"
            self.repository = await self._stack.enter_async_context(
                SqliteOutputRepository.open(path)
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.__aexit__(exc_type, exc, tb)

    def runner(
        self, graph: TaskGraph, listener: Callable[[RunnerEvent], None] | None = None
    ) -> TaskGraphRunner:
        return TaskGraphRunner(
            graph,
            repository=self.repository,
            models=self.models,
            listener=listener,
            task_timeout=self.settings.task_timeout,
            resources=self._resources(),
        )

    def _resources(self) -> dict[str, Any]:
        """What tasks may use: the JavaScript sandbox pool, and the state directory that
        the relative paths of what a graph writes resolve under (so the working directory
        may be read-only)."""
        resources: dict[str, Any] = {STATE_DIR_RESOURCE: self.settings.state_dir}
        if self.sandbox:
            resources[SANDBOX_RESOURCE] = self.sandbox
        return resources

    async def run(
        self,
        graph: TaskGraph,
        inputs: Mapping[str, Any] | None = None,
        *,
        listener: Callable[[RunnerEvent], None] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (a TIMED_OUT result, not an exception)
    ) -> RunResult:
        return await self.runner(graph, listener).run(inputs, timeout=timeout)
