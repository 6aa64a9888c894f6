"""No API key ever leaks: after a run of calls through both SDKs with every kind of failure
(a provider that even repeats the key in its error messages), the key appears in no log
record (every logger at DEBUG, the SDKs' and HTTP clients' included), no error's text,
repr or traceback, and no config or settings repr."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

import pytest
from support.fake_provider import FakeProvider, Fault
from support.gateway import API_KEY, write_config

from graphmesh.services.gateway import GatewayConfig, GatewayError, GatewaySettings, open_gateway
from graphmesh.services.gateway.gateway import Gateway
from graphmesh.services.gateway.types import ChatRequest

REQUEST = ChatRequest.prompt("tell me", max_tokens=16)
MODELS = ("openai:gpt-test", "anthropic:claude-test")
FAULTS = (401, 403, 400, 404, 429, 500, 529)


async def failing_calls(gateway: Gateway, fake: FakeProvider) -> list[BaseException]:
    """Every kind of failure on every provider; the errors raised."""
    errors: list[BaseException] = []
    for model in MODELS:
        for status in FAULTS:
            # Three of each: enough to exhaust the retries of the retryable ones.
            fake.inject(*(Fault(status=status, message="bad", echo_key=True) for _ in range(3)))
            try:
                await gateway.generate(model, REQUEST)
            except GatewayError as error:
                errors.append(error)
            fake.faults.clear()
        fake.inject(Fault(status=500, echo_key=True), Fault(status=500, echo_key=True))
        async with gateway.stream(model, REQUEST) as chunks:
            assert [chunk async for chunk in chunks][-1].usage is not None
        fake.delay = 1.0
        try:
            await gateway.generate(model, REQUEST, time_limit=0.2)
        except GatewayError as error:
            errors.append(error)
        fake.delay = 0.0
    return errors


def shown(error: BaseException) -> str:
    return "\n".join(
        [str(error), repr(error), *map(str, error.args), *traceback.format_exception(error)]
    )


async def test_the_key_never_leaks(
    tmp_path: Path,
    postgres_dsn: str,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("TEST_PROVIDER_KEY", API_KEY)
    async with FakeProvider.start(api_key=API_KEY) as fake:
        path = write_config(
            tmp_path / "gateway.toml", fake, dsn=postgres_dsn, requests_per_minute=1000
        )
        monkeypatch.setenv("GRAPHMESH_GATEWAY_CONFIG", str(path))
        settings = GatewaySettings()
        config = settings.load_config()
        async with open_gateway(config) as gateway:
            assert (await gateway.generate(MODELS[0], REQUEST)).text
            assert (await gateway.embed("openai:embed-test", ["a"])).vectors
            errors = await failing_calls(gateway, fake)
    assert len(errors) == len(MODELS) * (len(FAULTS) + 1)
    assert any(fake_request.api_key == API_KEY for fake_request in fake.received)
    assert any("[redacted]" in str(error) for error in errors)
    assert caplog.records, "nothing was logged: the check would prove nothing"
    places = {
        "logs": caplog.text,
        "errors": "\n".join(shown(error) for error in errors),
        "config": repr(config) + str(config) + repr(settings) + repr(GatewayConfig),
    }
    for place, text in places.items():
        assert API_KEY not in text, f"the API key leaked into {place}"
