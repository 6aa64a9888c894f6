"""Three ``graphmesh serve gateway`` processes share one provider account's limit of 60
requests a minute through Postgres. Callers speak gRPC to them round-robin and, refused with
RESOURCE_EXHAUSTED, call again after the delay the status carries (as the orchestrator's
queue reschedules a job): the provider never sees more than 60 requests in any minute (it
enforces the limit itself and would answer 429), and every call completes.

Beside them, a second provider fails in every way, echoing the API key in its messages. After
the run, the key is in no log of the three processes (at DEBUG), no error a caller saw (message
and trailing metadata), no metrics output, and no span exported over OTLP. Each process then
drains on SIGTERM and exits 0.
"""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support.fake_provider import FakeProvider, Fault
from support.gateway import API_KEY, write_config
from support.gateway_service import GatewayProcess, gateway_process
from support.otlp import OtlpReceiver

from graphmesh.services.gateway.servicer import RETRY_AFTER_MS
from graphmesh.v1 import model_pb2, model_pb2_grpc

LIMIT = 60
MINUTE = 60.0
REPLICAS = 3
CALLS = 66  # 60 in the first minute, 6 once it has passed
CALLERS = 12
DEADLINE = 200.0
LIMITED = "openai:gpt-test"
FAILING = "anthropic:claude-test"


class Caller:
    """Round-robin over the replicas; a refusal waits the delay it names and goes again."""

    def __init__(self, stubs: list[model_pb2_grpc.ModelServiceStub]) -> None:
        self._stubs = itertools.cycle(stubs)
        self.refusals = 0
        self.delays: list[float] = []

    async def call(self, number: int) -> model_pb2.GenerateResponse:
        request = model_pb2.GenerateRequest(model=LIMITED, prompt=f"call {number}")
        while True:
            try:
                return await next(self._stubs).Generate(request, timeout=30)
            except grpc.aio.AioRpcError as error:
                if error.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    raise
                self.refusals += 1
                delay = retry_delay(error)
                assert delay is not None and delay > 0, "a refusal without its delay"
                self.delays.append(delay)
                await asyncio.sleep(delay)


def retry_delay(error: grpc.aio.AioRpcError) -> float | None:
    """The delay of RetryInfo; checked against ``retry-after-ms``."""
    status = rpc_status.from_call(error)  # type: ignore[arg-type]
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            detail.Unpack(info)
            seconds = info.retry_delay.ToNanoseconds() / 1e9
            metadata = dict(error.trailing_metadata() or ())
            assert abs(int(metadata[RETRY_AFTER_MS]) / 1000 - seconds) < 0.002
            return seconds
    return None


async def failing_calls(stub: model_pb2_grpc.ModelServiceStub, fake: FakeProvider) -> list[str]:
    """Every kind of failure; what each caller saw (message and trailing metadata)."""
    seen: list[str] = []
    for status in (401, 403, 400, 404, 500, 529, 429):
        fake.inject(*(Fault(status=status, message="bad", echo_key=True) for _ in range(6)))
        request = model_pb2.GenerateRequest(model=FAILING, prompt="x")
        for call in (stub.Generate(request), stub.GenerateStream(request)):
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                if isinstance(call, grpc.aio.UnaryStreamCall):
                    _ = [piece async for piece in call]
                else:
                    await call
            seen.append(f"{caught.value.details()} {caught.value.trailing_metadata()}")
        fake.faults.clear()
        if status == 429:  # the shared pause the 429 set: let it pass
            await asyncio.sleep(1.1)
    return seen


@pytest.mark.slow
@pytest.mark.timeout(DEADLINE + 60)
async def test_three_gateway_services_share_the_limit_and_leak_no_key(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with (
        OtlpReceiver() as otlp,
        FakeProvider.start(api_key=API_KEY) as limited,
        FakeProvider.start(api_key=API_KEY) as failing,
    ):
        limited.enforce(LIMIT, MINUTE)
        config = write_config(
            tmp_path / "gateway.toml",
            limited,
            anthropic=failing,
            dsn=postgres_dsn,
            local_grant_s=0.5,  # grants leased in blocks (lease.py), the bench's setting
            requests_per_minute=LIMIT,
        )
        env = {
            "TEST_PROVIDER_KEY": API_KEY,
            "GRAPHMESH_LOG_LEVEL": "DEBUG",
            **otlp.environment("graphmesh-gateway"),
        }
        async with asyncio.timeout(DEADLINE):
            gateways: list[GatewayProcess] = []
            async with (
                gateway_process(config, log=tmp_path / "g0.log", env=env) as g0,
                gateway_process(config, log=tmp_path / "g1.log", env=env) as g1,
                gateway_process(config, log=tmp_path / "g2.log", env=env) as g2,
            ):
                gateways = [g0, g1, g2]
                channels = [grpc.aio.insecure_channel(g.target) for g in gateways]
                stubs = [model_pb2_grpc.ModelServiceStub(channel) for channel in channels]
                seen = await failing_calls(stubs[0], failing)
                caller = Caller(stubs)
                gate = asyncio.Semaphore(CALLERS)

                async def gated(number: int) -> model_pb2.GenerateResponse:
                    async with gate:
                        return await caller.call(number)

                answers = await asyncio.gather(*(gated(n) for n in range(CALLS)))
                metrics = [gateway.scrape() for gateway in gateways]
                for channel in channels:
                    await channel.close()
                codes = [await gateway.stop() for gateway in gateways]
            await otlp.until(lambda spans: any(s.service == "graphmesh-gateway" for s in spans))

    # Every call completed, within the limit the provider enforces.
    assert len(answers) == CALLS and all(answer.usage.output_tokens for answer in answers)
    assert caller.refusals > 0, "the shared limit never bit"
    assert max(caller.delays) <= MINUTE + 2
    assert limited.over_limit == 0, "the provider had to refuse requests over its limit"
    assert len(limited.received) == CALLS
    assert limited.most_in_any_window(MINUTE) == LIMIT
    # Each process drained and stopped cleanly.
    assert codes == [0, 0, 0]
    # The metrics counted the answers, the refusals and the tokens.
    everything = "\n".join(metrics)
    assert 'code="RESOURCE_EXHAUSTED"' in everything
    assert 'code="OK"' in everything and 'code="PERMISSION_DENIED"' in everything
    assert "graphmesh_gateway_limiter_denials_total" in everything
    assert "graphmesh_gateway_retries_total" in everything
    assert 'direction="output"' in everything
    # The key leaked nowhere, though the failing provider repeated it in every message.
    assert any(r.api_key == API_KEY for r in failing.received)
    logs = "\n".join(gateway.log.read_text(encoding="utf-8") for gateway in gateways)
    assert "DEBUG" in logs and "graphmesh.services.gateway" in logs, "nothing was logged"
    spans = "\n".join(repr(span) for span in otlp.spans)
    places = {"logs": logs, "errors": "\n".join(seen), "metrics": everything, "spans": spans}
    assert any("[redacted]" in text for text in seen)
    for place, text in places.items():
        assert API_KEY not in text, f"the API key leaked into {place}"
