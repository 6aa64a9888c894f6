"""A gateway whose limiter database is unreachable fails closed: a clear
``LimiterUnavailable`` and not one request to the provider, never calls let through
unlimited."""

from __future__ import annotations

from pathlib import Path

import pytest
from support.fake_provider import FakeProvider
from support.gateway import API_KEY, write_config
from support.tcp_proxy import CuttingProxy

from graphmesh.services.gateway import GatewayConfig, LimiterUnavailable, open_gateway
from graphmesh.services.gateway.types import ChatRequest

REQUEST = ChatRequest.prompt("hello", max_tokens=8)


@pytest.fixture(autouse=True)
def provider_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_PROVIDER_KEY", API_KEY)


async def test_an_unreachable_limiter_database_stops_the_gateway_from_opening(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with FakeProvider.start(api_key=API_KEY) as fake, CuttingProxy(postgres_dsn) as proxy:
        await proxy.close()
        path = write_config(tmp_path / "g.toml", fake, dsn=proxy.dsn, requests_per_minute=60)
        with pytest.raises(LimiterUnavailable, match="cannot be reached"):
            async with open_gateway(GatewayConfig.load(path)):
                pytest.fail("the gateway must not open")


async def test_a_limiter_database_gone_down_refuses_every_call(
    tmp_path: Path, postgres_dsn: str
) -> None:
    async with FakeProvider.start(api_key=API_KEY) as fake, CuttingProxy(postgres_dsn) as proxy:
        path = write_config(
            tmp_path / "g.toml", fake, dsn=proxy.dsn, requests_per_minute=60, max_concurrent=4
        )
        async with open_gateway(GatewayConfig.load(path)) as gateway:
            assert (await gateway.generate("openai:gpt-test", REQUEST)).text
            await proxy.close()
            for model in ("openai:gpt-test", "anthropic:claude-test"):
                with pytest.raises(LimiterUnavailable, match="no provider call is made"):
                    await gateway.generate(model, REQUEST)
                with pytest.raises(LimiterUnavailable):
                    async with gateway.stream(model, REQUEST):
                        pytest.fail("the stream must not open")
    assert len(fake.received) == 1
