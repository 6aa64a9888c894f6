"""The cloud gateway: latency it adds to a call, and how exactly three replicas keep a limit.

**Added latency.** One chat completion at a time against the loopback fake provider
(``tests/support/fake_provider.py``): made directly with the official OpenAI SDK (the
reference, measured in the same run, interleaved call by call) and through the gateway
(a gRPC ``Generate`` to a ``GatewayServicer`` on loopback, which makes the same SDK call).
The gateway's route has the limits of a real deployment: requests and tokens per minute,
shared through Postgres, with grants leased in blocks (``local_grant_s = 0.5``, see
``services/gateway/lease.py``). ``added_*_ms`` are the percentiles of the gateway's latency
less the direct call's; ``added_p50_ms_round_trip_per_call`` adds a concurrency cap (which
cannot be leased: one Postgres round trip per call), ``added_p50_ms_unlimited`` has no limits.

**Limiter accuracy.** Three ``graphmesh serve gateway`` processes share a limit of
``LIMIT`` requests a minute through Postgres; callers send them three times the limit at
once, round-robin, without retrying, grants leased as above. ``limiter_accuracy`` =
requests the provider received / limit (target: at most 1.0, at least 0.95).

Everything runs in this process but the three replicas; the database is created and
dropped here. Prints one JSON line.
"""

from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))

import asyncio
import itertools
import json
import statistics
import tempfile
import time
from pathlib import Path

import grpc
from openai import AsyncOpenAI
from support.fake_provider import FakeProvider
from support.gateway import API_KEY, write_config
from support.gateway_service import gateway_process
from support.postgres import fresh_database, postgres_server

from graphmesh.services.gateway import GatewayConfig, open_gateway
from graphmesh.services.gateway.servicer import SERVICE_NAME, GatewayServicer
from graphmesh.services.kit.server import GrpcServer, ServiceRegistration
from graphmesh.v1 import model_pb2, model_pb2_grpc

CALLS = int(os.environ.get("BENCH_GATEWAY_CALLS", "400"))
WARMUP = 30
LIMIT = 300
REPLICAS = 3
MODEL = "openai:gpt-test"
PROMPT = "how far is the moon"


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


async def added_latency(fake: FakeProvider, config: Path) -> tuple[list[float], list[float]]:
    """Per call: (direct seconds, through-the-gateway seconds), interleaved."""
    direct: list[float] = []
    gateway_s: list[float] = []
    client = AsyncOpenAI(api_key=API_KEY, base_url=fake.openai_url, max_retries=0)
    async with open_gateway(GatewayConfig.load(config)) as gateway:
        servicer = GatewayServicer(gateway)
        registration = ServiceRegistration(name=SERVICE_NAME, add=servicer.add_to)
        async with (
            GrpcServer(address="127.0.0.1:0", services=[registration]) as server,
            grpc.aio.insecure_channel(server.target) as channel,
        ):
            stub = model_pb2_grpc.ModelServiceStub(channel)
            request = model_pb2.GenerateRequest(
                model=MODEL, prompt=PROMPT, params=model_pb2.GenerationParams(max_new_tokens=16)
            )
            messages = [{"role": "user", "content": PROMPT}]
            for number in range(WARMUP + CALLS):
                started = time.perf_counter()
                await client.chat.completions.create(
                    model="gpt-test",
                    messages=messages,  # type: ignore[arg-type]
                    max_tokens=16,
                )
                middle = time.perf_counter()
                await stub.Generate(request, timeout=10)
                ended = time.perf_counter()
                if number >= WARMUP:
                    direct.append(middle - started)
                    gateway_s.append(ended - middle)
    await client.close()
    return direct, gateway_s


async def limiter_accuracy(fake: FakeProvider, config: Path, workdir: Path) -> float:
    env = {"TEST_PROVIDER_KEY": API_KEY, "GRAPHMESH_LOG_LEVEL": "WARNING"}
    async with (
        gateway_process(config, log=workdir / "g0.log", env=env) as g0,
        gateway_process(config, log=workdir / "g1.log", env=env) as g1,
        gateway_process(config, log=workdir / "g2.log", env=env) as g2,
    ):
        channels = [grpc.aio.insecure_channel(g.target) for g in (g0, g1, g2)]
        stubs = itertools.cycle([model_pb2_grpc.ModelServiceStub(c) for c in channels])
        request = model_pb2.GenerateRequest(model=MODEL, prompt=PROMPT)
        gate = asyncio.Semaphore(30)

        async def one() -> None:
            async with gate:
                try:
                    await next(stubs).Generate(request, timeout=30)
                except grpc.aio.AioRpcError as error:
                    if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                        raise

        await asyncio.gather(*(one() for _ in range(3 * LIMIT)))
        for channel in channels:
            await channel.close()
    return len(fake.received) / LIMIT


async def main() -> None:
    with postgres_server() as server, fresh_database(server) as dsn:
        workdir = Path(tempfile.mkdtemp(prefix="gateway-bench-"))
        os.environ["TEST_PROVIDER_KEY"] = API_KEY
        rates = {"requests_per_minute": 10**6, "tokens_per_minute": 10**9}
        async with FakeProvider.start(api_key=API_KEY) as fake:
            leased = write_config(
                workdir / "leased.toml", fake, dsn=dsn, local_grant_s=0.5, **rates
            )
            direct, through = await added_latency(fake, leased)
            per_call = write_config(
                workdir / "per-call.toml", fake, dsn=dsn, max_concurrent=64, **rates
            )
            direct_c, through_c = await added_latency(fake, per_call)
            unlimited = write_config(workdir / "unlimited.toml", fake, dsn=None)
            direct_u, through_u = await added_latency(fake, unlimited)
    # A database of its own: the latency runs' grants must not count against this limit.
    with postgres_server() as server, fresh_database(server) as shared_dsn:
        async with FakeProvider.start(api_key=API_KEY) as fake:
            fake.enforce(LIMIT, 60.0)
            shared = write_config(
                workdir / "shared.toml",
                fake,
                dsn=shared_dsn,
                local_grant_s=0.5,
                requests_per_minute=LIMIT,
            )
            accuracy = await limiter_accuracy(fake, shared, workdir)
    added = [g - d for d, g in zip(direct, through, strict=True)]
    added_u = [g - d for d, g in zip(direct_u, through_u, strict=True)]
    added_c = [g - d for d, g in zip(direct_c, through_c, strict=True)]
    print(
        json.dumps(
            {
                "bench": "gateway",
                "calls": CALLS,
                "direct_p50_ms": round(statistics.median(direct) * 1000, 3),
                "gateway_p50_ms": round(statistics.median(through) * 1000, 3),
                "added_p50_ms": round(statistics.median(added) * 1000, 3),
                "added_p99_ms": round(percentile(added, 0.99) * 1000, 3),
                "added_p50_ms_unlimited": round(statistics.median(added_u) * 1000, 3),
                "added_p50_ms_round_trip_per_call": round(statistics.median(added_c) * 1000, 3),
                "limiter_accuracy": round(accuracy, 4),
                "limit_per_minute": LIMIT,
                "replicas": REPLICAS,
            }
        )
    )


if __name__ == "__main__":
    asyncio.run(main())
