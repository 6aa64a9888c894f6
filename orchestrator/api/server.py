"""The orchestrator's gRPC server: OrchestratorService with auth and error mapping, on the
shared service bootstrap (health, reflection, TLS/mTLS, graceful stop).

``async with OrchestratorServer(runs, graphs, tokens=...) as server`` serves until the
block ends; :meth:`OrchestratorServer.serve_until_signal` waits for SIGTERM/SIGINT first,
then shuts down within the grace period: the run worker stops claiming at once, open
WatchRun streams end with UNAVAILABLE (the SDK resumes them elsewhere), calls and tasks in
flight get most of the grace period to finish, and tasks still running then are handed
back to the queue for another replica.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Self

import grpc

from graphmesh.orchestrator.api.auth import BearerAuthInterceptor
from graphmesh.orchestrator.api.edge import EdgeInterceptor
from graphmesh.orchestrator.api.errors import ErrorInterceptor
from graphmesh.orchestrator.api.servicer import OrchestratorServicer
from graphmesh.orchestrator.api.settings import EdgeSettings
from graphmesh.orchestrator.api.web.server import ViewerServer, private_socket
from graphmesh.orchestrator.api.web.settings import ViewerSettings
from graphmesh.orchestrator.policy import TaskPolicy, load_policy
from graphmesh.orchestrator.queue.worker_options import finish_share
from graphmesh.orchestrator.runs.quotas import QuotaRunService
from graphmesh.orchestrator.runs.records import RunService
from graphmesh.orchestrator.storage.base import TaskGraphRepository
from graphmesh.orchestrator.storage.saved_graphs import SavedGraphStore
from graphmesh.orchestrator.task.registry import TaskRegistry, default_registry
from graphmesh.services.kit.draining import Drainable
from graphmesh.services.kit.server import (
    GrpcServer,
    ServiceRegistration,
    TlsFiles,
    wait_for_shutdown_signal,
)
from graphmesh.v1 import orchestrator_pb2, orchestrator_pb2_grpc

SERVICE_NAME = orchestrator_pb2.DESCRIPTOR.services_by_name["OrchestratorService"].full_name
logger = logging.getLogger(__name__)


class OrchestratorServer:
    """A started orchestrator server. ``tokens`` maps bearer token to tenant; ``None``
    turns auth off (every caller is tenant ``default``). ``address`` port 0 picks a free
    port (see :attr:`port` and :attr:`target`). ``edge`` holds the request limits and
    quotas (default: from the ``GRAPHMESH_`` environment); runs are created through a
    :class:`QuotaRunService` over ``runs``, whatever store that is. ``viewer`` serves the
    run viewer beside it (see :attr:`viewer`), its API calls entering this server through
    a private Unix socket; ``None`` or a listen address of ``off``: no viewer."""

    def __init__(
        self,
        runs: RunService,
        graphs: TaskGraphRepository,
        *,
        tokens: Mapping[str, str] | None,
        address: str = "127.0.0.1:0",
        tls: TlsFiles | None = None,
        grace_period: float = 10.0,
        registry: TaskRegistry = default_registry,
        edge: EdgeSettings | None = None,
        policy: TaskPolicy | None = None,
        viewer: ViewerSettings | None = None,
    ) -> None:
        edge = edge or EdgeSettings()
        limits, quotas = edge.request_limits(), edge.quota_policy()
        self.viewer: ViewerServer | None = None
        self._viewer = viewer if viewer is not None and viewer.listen else None
        self._largest_request = quotas.largest_request
        self._stack = contextlib.AsyncExitStack()
        servicer = OrchestratorServicer(
            QuotaRunService(runs, quotas),
            SavedGraphStore(graphs, registry),
            registry,
            limits=limits,
            quotas=quotas,
            policy=load_policy() if policy is None else policy,
        )

        def add(server: grpc.aio.Server) -> None:
            orchestrator_pb2_grpc.add_OrchestratorServiceServicer_to_server(servicer, server)

        self.grpc = GrpcServer(
            address=address,
            services=[ServiceRegistration(name=SERVICE_NAME, add=add)],
            # Outermost first: the tenant is known to both inner ones, and the error guard
            # maps what the edge check raises.
            interceptors=[
                BearerAuthInterceptor(tokens),
                ErrorInterceptor(),
                EdgeInterceptor(f"/{SERVICE_NAME}/", limits, quotas),
            ],
            # The guard parses requests itself; a tenant's own size quota is checked then.
            options=[("grpc.max_receive_message_length", quotas.largest_request)],
            tls=tls,
            grace_period=grace_period,
        )

    @property
    def port(self) -> int:
        return self.grpc.port

    @property
    def target(self) -> str:
        return self.grpc.target

    async def __aenter__(self) -> Self:
        async with contextlib.AsyncExitStack() as stack:
            local = None
            if self._viewer is not None:
                local = stack.enter_context(private_socket())
                self.grpc.server.add_insecure_port(local)
            await self.grpc.start()
            stack.push_async_callback(self.grpc.stop)
            if local is not None:
                self.viewer = await stack.enter_async_context(self._viewer_at(local))
            self._stack = stack.pop_all()
        return self

    def _viewer_at(self, grpc_target: str) -> ViewerServer:
        settings = self._viewer or ViewerSettings()
        return ViewerServer(
            listen=settings.listen or "",
            grpc_target=grpc_target,
            request_bytes=self._largest_request,
            trace_url_template=settings.trace_url_template,
        )

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._stack.aclose()

    async def serve_until_signal(self, draining: Iterable[Drainable] = ()) -> None:
        """Serve until SIGTERM or SIGINT, then shut down within the grace period (see the
        module docs); ``draining``: the parts that run work (the run service's worker)."""
        received = await wait_for_shutdown_signal()
        grace = self.grpc.grace_period
        logger.info("received %s, stopping (grace %.1f s)", received.name, grace)
        await self.grpc.shutdown(finish_s=finish_share(grace), draining=draining)
