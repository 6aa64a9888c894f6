"""A live orchestrator on a loopback port for the API tests: real gRPC, runs in memory
(``orchestrator``) or on any store (``orchestrator_on``: memory, sqlite, postgres).

Two tenants: ``token-a`` is tenant ``a``, ``token-b`` tenant ``b``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the task catalog)
import support.run_tasks  # noqa: F401  (registers the RunTest task types)
from graphmesh.orchestrator.api.server import OrchestratorServer
from graphmesh.orchestrator.api.settings import EdgeSettings
from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService
from graphmesh.orchestrator.runs.durable.sqlite import SqliteRunService
from graphmesh.orchestrator.runs.memory import MemoryRunService
from graphmesh.orchestrator.runs.records import RunService
from graphmesh.orchestrator.storage.base import TaskGraphRepository
from graphmesh.orchestrator.storage.memory import MemoryGraphRepository
from graphmesh.orchestrator.storage.postgres import PostgresGraphRepository
from graphmesh.orchestrator.storage.sqlite import SqliteGraphRepository
from graphmesh.services.kit.server import TlsFiles

TOKENS = {"token-a": "a", "token-b": "b"}
STORES = ("memory", "sqlite", "postgres")


@asynccontextmanager
async def orchestrator(
    *, tokens: dict[str, str] | None = TOKENS, tls: TlsFiles | None = None
) -> AsyncIterator[OrchestratorServer]:
    """A started server; leaving stops it with no grace and cancels its runs."""
    async with (
        MemoryRunService() as runs,
        MemoryGraphRepository.open() as graphs,
        OrchestratorServer(runs, graphs, tokens=tokens, tls=tls, grace_period=0) as server,
    ):
        yield server


@dataclass(frozen=True, kw_only=True)
class Served:
    """A started server and the stores it serves (for writes made in process, past the
    API's edge)."""

    server: OrchestratorServer
    runs: RunService
    graphs: TaskGraphRepository


@asynccontextmanager
async def orchestrator_on(
    store: str, *, location: str | Path = "", edge: EdgeSettings | None = None
) -> AsyncIterator[Served]:
    """A started server on ``store`` (``location``: the SQLite path or Postgres DSN)."""
    async with AsyncExitStack() as stack:
        runs, graphs = await _open_store(stack, store, location)
        server = await stack.enter_async_context(
            OrchestratorServer(
                runs, graphs, tokens=TOKENS, grace_period=0, edge=edge or EdgeSettings()
            )
        )
        yield Served(server=server, runs=runs, graphs=graphs)


async def _open_store(
    stack: AsyncExitStack, store: str, location: str | Path
) -> tuple[RunService, TaskGraphRepository]:
    runs: RunService
    graphs: TaskGraphRepository
    if store == "memory":
        runs = await stack.enter_async_context(MemoryRunService())
        graphs = await stack.enter_async_context(MemoryGraphRepository.open())
    elif store == "sqlite":
        runs = await stack.enter_async_context(SqliteRunService.open(location))
        graphs = await stack.enter_async_context(SqliteGraphRepository.open(location))
    else:
        runs = await stack.enter_async_context(PostgresRunService.open(str(location)))
        graphs = await stack.enter_async_context(PostgresGraphRepository.open(str(location)))
    return runs, graphs


def store_location(store: str, request: object, tmp_path: Path) -> str | Path:
    """Where ``store`` keeps its data in a test: a fresh database of its own."""
    if store == "sqlite":
        return tmp_path / "orchestrator.sqlite"
    if store == "postgres":
        return str(request.getfixturevalue("postgres_dsn"))  # type: ignore[attr-defined]
    return ""


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying a bearer token."""
    return (("authorization", f"Bearer {token}"),)
