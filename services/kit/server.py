"""The gRPC server bootstrap every graphmesh service uses.

``async with GrpcServer(...) as server`` binds, starts, and reports SERVING on
``grpc.health.v1`` (overall and per registered service); leaving it reports NOT_SERVING
first, so load balancers stop routing, ends open streams with UNAVAILABLE (see
:mod:`.draining`), then gives in-flight calls the grace period. :meth:`GrpcServer.shutdown`
does the same while the service's workers drain beside it, all within the grace period.
Server reflection lists the registered services, health and reflection itself. While tracing
is on (:mod:`graphmesh.services.kit.telemetry`) every call but health checks makes a span.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from graphmesh.services.kit.draining import Drainable, OpenStreams
from graphmesh.services.kit.telemetry import server_interceptors

ServiceAdder = Callable[[grpc.aio.Server], None]


@dataclass(frozen=True, kw_only=True)
class TlsFiles:
    """PEM files for TLS; with ``client_ca_file`` clients must present a cert (mTLS)."""

    cert_file: Path
    key_file: Path
    client_ca_file: Path | None = None

    def credentials(self) -> grpc.ServerCredentials:
        ca = self.client_ca_file.read_bytes() if self.client_ca_file is not None else None
        return grpc.ssl_server_credentials(
            [(self.key_file.read_bytes(), self.cert_file.read_bytes())],
            root_certificates=ca,
            require_client_auth=ca is not None,
        )


@dataclass(frozen=True, kw_only=True)
class ServiceRegistration:
    """A servicer to add: its full name (``graphmesh.v1.OrchestratorService``) and adder."""

    name: str
    add: ServiceAdder


class GrpcServer:
    """A started ``grpc.aio`` server with health and reflection, as an async context manager.

    ``address`` is ``HOST:PORT``; port 0 binds a free port, read back from :attr:`port`.
    """

    def __init__(
        self,
        *,
        address: str,
        services: Sequence[ServiceRegistration],
        interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
        tls: TlsFiles | None = None,
        grace_period: float = 10.0,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.address = address
        self.services = tuple(services)
        self.tls = tls
        self.grace_period = grace_period
        # The stream tracker first, so it wraps every other interceptor: it ends streams,
        # whoever serves them; then tracing, so the span covers auth and error mapping.
        self._streams = OpenStreams()
        traced = [self._streams, *server_interceptors(), *interceptors]
        self.server = grpc.aio.server(interceptors=traced, options=list(options))
        self._stopped = False
        # The asyncio servicer (health.aio) is missing from the grpc-stubs package.
        self.health = health.aio.HealthServicer()  # type: ignore[attr-defined]
        self.port = 0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    @property
    def target(self) -> str:
        """What a client on this host dials: ``host:port`` with the bound port."""
        host = self.address.rpartition(":")[0]
        host = "127.0.0.1" if host in ("", "0.0.0.0", "[::]") else host
        return f"{host}:{self.port}"

    async def start(self) -> None:
        for service in self.services:
            service.add(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        names = [service.name for service in self.services]
        reflection.enable_server_reflection(
            [*names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self.port = self._bind()
        await self.server.start()
        for name in ("", *names):
            await self.health.set(name, health_pb2.HealthCheckResponse.SERVING)

    def _bind(self) -> int:
        if self.tls is None:
            port = self.server.add_insecure_port(self.address)
        else:
            port = self.server.add_secure_port(self.address, self.tls.credentials())
        if port == 0:
            raise OSError(f"cannot listen on {self.address}")
        return port

    async def stop(self, grace: float | None = None) -> None:
        """NOT_SERVING everywhere, end open streams (UNAVAILABLE), then stop, letting calls
        in flight finish within ``grace`` (default: the grace period). Once stopped, a
        second call does nothing."""
        await self.shutdown(finish_s=self.grace_period if grace is None else grace)

    async def shutdown(self, *, finish_s: float, draining: Iterable[Drainable] = ()) -> None:
        """Stop as :meth:`stop` does, giving calls in flight ``finish_s``, while the
        ``draining`` parts of the service stop taking work at once and get the same time
        to finish theirs (then hand the rest back). Pass less than the grace period: what
        follows (handing work back, closing, exiting) takes time too."""
        if self._stopped:
            return
        self._stopped = True
        parts = list(draining)
        for part in parts:
            part.stop_taking_work()
        await self.health.enter_graceful_shutdown()
        self._streams.close_all()
        await asyncio.gather(self.server.stop(finish_s), *(part.drain(finish_s) for part in parts))

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()


async def wait_for_shutdown_signal(
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> signal.Signals:
    """Wait until the process gets one of ``signals``; return which one."""
    loop = asyncio.get_running_loop()
    received: asyncio.Future[signal.Signals] = loop.create_future()
    for sig in signals:
        loop.add_signal_handler(sig, _resolve, received, sig)
    try:
        return await received
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def _resolve(future: asyncio.Future[signal.Signals], sig: signal.Signals) -> None:
    if not future.done():
        future.set_result(sig)
