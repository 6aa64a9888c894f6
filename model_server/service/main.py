"""One model-server process: config → registry → host → gRPC server, until SIGTERM/SIGINT.

Health: the overall service and ``graphmesh.v1.ModelService`` are SERVING once the server
listens; each configured or loaded model has a health service of its own (its canonical
routed name, and the name the config used) that turns SERVING once the model is loaded and
NOT_SERVING while it loads or after it is unloaded. Preloading happens after the server
listens, so health can be watched during a long load; calls to a loading model get
UNAVAILABLE. SIGTERM drains: health goes NOT_SERVING, open streams end, calls in flight get
the grace period, queued batches finish, then the process exits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from typing import TextIO

from grpc_health.v1 import health_pb2

from graphmesh.model_server.backends.base import LoadOptions
from graphmesh.model_server.registry import ModelRegistry
from graphmesh.model_server.service.config import ServerConfig
from graphmesh.model_server.service.host import ModelHost
from graphmesh.model_server.service.servicer import SERVICE_NAME, ModelServicer
from graphmesh.services.kit.metrics import metrics_endpoint
from graphmesh.services.kit.server import GrpcServer, ServiceRegistration, wait_for_shutdown_signal
from graphmesh.services.kit.telemetry import tracing
from graphmesh.v1 import model_pb2_grpc

logger = logging.getLogger(__name__)


def build_registry(config: ServerConfig) -> ModelRegistry:
    """The packaged models plus local paths (if allowed), placed as the config says."""
    # A model LoadModel names without a config entry goes where the host's GPU is, warmed.
    registry = ModelRegistry(
        allow_local_paths=config.allow_local_paths,
        default_options=LoadOptions(device="auto", dtype="auto", warm_up=True),
    )
    for model in config.models:
        registry.allow(model.name)  # the operator's own choice, whatever callers may name
        registry.set_options(model.name, model.load_options())
    return registry


async def serve(config: ServerConfig, *, out: TextIO = sys.stdout) -> None:
    """Serve until SIGTERM/SIGINT; prints one line when listening and one per loaded model."""
    registry = build_registry(config)
    server_box: list[GrpcServer] = []
    aliases = {registry.canonical(m.name): m.name for m in config.models}

    async def on_state(name: str, serving: bool) -> None:
        if not server_box:
            return
        status = (
            health_pb2.HealthCheckResponse.SERVING
            if serving
            else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for health_name in {name, aliases.get(name, name)}:
            await server_box[0].health.set(health_name, status)

    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(tracing("graphmesh-model-server"))
        metrics = await stack.enter_async_context(metrics_endpoint(config.metrics_listen))
        host = await stack.enter_async_context(ModelHost(registry, config, on_state=on_state))
        servicer = ModelServicer(host)
        server = GrpcServer(
            address=config.listen,
            services=[
                ServiceRegistration(
                    name=SERVICE_NAME,
                    add=lambda s: model_pb2_grpc.add_ModelServiceServicer_to_server(servicer, s),
                )
            ],
            tls=config.tls.files() if config.tls else None,
            grace_period=config.grace_period,
        )
        await server.start()
        server_box.append(server)
        for model in config.models:
            for name in {model.name, registry.canonical(model.name)}:
                await server.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        scraped = f", metrics on {metrics}" if metrics else ""
        print(f"graphmesh model server listening on {server.target}{scraped}", file=out, flush=True)
        preload = asyncio.get_running_loop().create_task(_preload(host, config, out))
        try:
            signal = await wait_for_shutdown_signal()
            print(f"graphmesh model server: {signal.name}, draining", file=out, flush=True)
        finally:
            preload.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await preload
            # Stops taking calls, ends streams, gives calls in flight the grace period;
            # leaving the stack then finishes queued batches and stops the threads.
            await server.stop()
        print("graphmesh model server stopped", file=out, flush=True)


async def _preload(host: ModelHost, config: ServerConfig, out: TextIO) -> None:
    for model in config.models:
        try:
            loaded = await host.load(model.name)
        except Exception as exc:  # recorded in the model's state; calls get UNAVAILABLE
            logger.error("loading %s failed: %s", model.name, exc)
            print(f"model {model.name} failed to load: {exc}", file=out, flush=True)
            continue
        device = getattr(loaded.backend, "device", "cpu")
        print(f"model {model.name} ready on {device}", file=out, flush=True)
