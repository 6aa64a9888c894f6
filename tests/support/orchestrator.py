"""A live orchestrator on a loopback port for the API tests: real gRPC, in-memory runs.

Two tenants: ``token-a`` is tenant ``a``, ``token-b`` tenant ``b``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the task catalog)
import support.run_tasks  # noqa: F401  (registers the RunTest task types)
from graphmesh.orchestrator.api.server import OrchestratorServer
from graphmesh.orchestrator.runs.memory import MemoryRunService
from graphmesh.orchestrator.storage.memory import MemoryGraphRepository
from graphmesh.services.kit.server import TlsFiles

TOKENS = {"token-a": "a", "token-b": "b"}


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


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    """gRPC metadata carrying a bearer token."""
    return (("authorization", f"Bearer {token}"),)
