"""A service's graceful stop (``services/kit``): open streams end at once with UNAVAILABLE,
and the parts that run work stop taking it first, then drain beside the calls.

The stream here is the health service's Watch, which every graphmesh server serves and
which never ends by itself (WatchRun of a long run behaves the same way). A stop with a
long grace period must not wait for it.
"""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from graphmesh.services.kit.draining import SHUTTING_DOWN
from graphmesh.services.kit.server import GrpcServer

LONG_GRACE_S = 60.0


class Recorder:
    """A Drainable that notes what it was told, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def stop_taking_work(self) -> None:
        self.calls.append("stop")

    async def drain(self, finish_s: float) -> None:
        self.calls.append(f"drain {finish_s}")


async def test_a_stop_ends_an_open_stream_with_unavailable_without_waiting_for_it() -> None:
    server = GrpcServer(address="127.0.0.1:0", services=[], grace_period=LONG_GRACE_S)
    async with server, grpc.aio.insecure_channel(server.target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        first = await watch.read()
        assert first.status == health_pb2.HealthCheckResponse.SERVING
        async with asyncio.timeout(LONG_GRACE_S / 4):  # far less than the grace period
            await server.stop()
            with pytest.raises(grpc.aio.AioRpcError) as ended:
                while True:
                    await watch.read()
    assert ended.value.code() == grpc.StatusCode.UNAVAILABLE
    assert ended.value.details() == SHUTTING_DOWN


async def test_work_stops_first_and_drains_beside_the_calls() -> None:
    server = GrpcServer(address="127.0.0.1:0", services=[], grace_period=LONG_GRACE_S)
    worker = Recorder()
    async with server:
        await server.shutdown(finish_s=1.5, draining=[worker])
        await server.shutdown(finish_s=1.5, draining=[worker])  # once stopped, nothing more
    assert worker.calls == ["stop", "drain 1.5"]
