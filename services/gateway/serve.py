"""The gateway process: ``graphmesh serve gateway --config FILE`` runs :func:`serve`.

It opens the gateway of the configuration (API keys from env or files, the shared limiter
store), serves ModelService on the kit's :class:`GrpcServer` (health per service,
reflection, graceful drain on SIGTERM/SIGINT), Prometheus ``/metrics`` when
``GRAPHMESH_METRICS_LISTEN`` is set, and OTLP traces as the ``OTEL_*`` variables say.

The limiter database: ``GRAPHMESH_GATEWAY_LIMITER_DSN``, else the file's ``[limiter] dsn``,
else ``GRAPHMESH_DATABASE_URL`` (the mesh's one database); with none, the limits hold in
this process only (a warning says so).
"""

from __future__ import annotations

import logging
import sys
from contextlib import AsyncExitStack
from pathlib import Path

from graphmesh.services.gateway.assembly import open_gateway
from graphmesh.services.gateway.config import GatewayConfig, GatewaySettings
from graphmesh.services.gateway.metrics import GatewayMetrics
from graphmesh.services.gateway.servicer import SERVICE_NAME, GatewayServicer
from graphmesh.services.kit.metrics import metrics_endpoint
from graphmesh.services.kit.server import (
    GrpcServer,
    ServiceRegistration,
    wait_for_shutdown_signal,
)
from graphmesh.services.kit.settings import ServiceSettings
from graphmesh.services.kit.telemetry import tracing

logger = logging.getLogger(__name__)


def load_config(path: Path, service: ServiceSettings) -> GatewayConfig:
    """The configuration at ``path`` with the limiter database the settings give."""
    config = GatewaySettings(config=path).load_config()
    if config.limiter.dsn is None and service.database_url is not None:
        limiter = config.limiter.model_copy(update={"dsn": service.database_url})
        config = config.model_copy(update={"limiter": limiter})
    return config


async def serve(config: GatewayConfig, service: ServiceSettings) -> None:
    """Serve ``config``'s models until SIGTERM or SIGINT, then drain and stop."""
    async with AsyncExitStack() as stack:
        stack.enter_context(tracing("graphmesh-gateway"))
        metrics_address = await stack.enter_async_context(metrics_endpoint(service.metrics_listen))
        providers = {name: name.partition(":")[0] for name in config.models}
        metrics = GatewayMetrics(providers)
        gateway = await stack.enter_async_context(open_gateway(config, observer=metrics))
        servicer = GatewayServicer(gateway, metrics)
        server = await stack.enter_async_context(
            GrpcServer(
                address=service.listen,
                services=[ServiceRegistration(name=SERVICE_NAME, add=servicer.add_to)],
                tls=service.tls(),
                grace_period=service.grace_period,
            )
        )
        scraped = f", metrics on {metrics_address}" if metrics_address else ""
        shared = "shared in Postgres" if config.limiter.dsn is not None else "this process only"
        print(
            f"graphmesh gateway listening on {server.target} "
            f"({len(config.models)} models, limits {shared}{scraped})"
        )
        sys.stdout.flush()
        received = await wait_for_shutdown_signal()
        logger.info("%s: draining", received.name)
        await server.stop()
