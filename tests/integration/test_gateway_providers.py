"""The SDK adapters against the loopback fake provider, through the official SDKs: every
HTTP failure becomes the right error of the gateway's tree, with the provider's message and
request id and never the key, and rate-limit headers become signals."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest
from support.fake_provider import FakeProvider, Fault
from support.gateway import API_KEY, SDK_KINDS, sdk_provider

from graphmesh.services.gateway.errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
)
from graphmesh.services.gateway.provider import Provider
from graphmesh.services.gateway.types import ChatRequest

REQUEST = ChatRequest.prompt("hello", max_tokens=16)
TIME = 10.0
STATUS_ERRORS: list[tuple[int, type[GatewayError]]] = [
    (400, InvalidRequest),
    (422, InvalidRequest),
    (401, PermissionDenied),
    (403, PermissionDenied),
    (404, ModelNotFound),
    (408, ProviderUnavailable),
    (409, ProviderUnavailable),
    (500, ProviderUnavailable),
    (503, ProviderUnavailable),
    (529, ProviderUnavailable),
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeProvider]:
    async with FakeProvider.start(api_key=API_KEY) as server:
        yield server


@pytest.fixture(params=SDK_KINDS)
async def provider(request: pytest.FixtureRequest, fake: FakeProvider) -> AsyncIterator[Provider]:
    adapter = sdk_provider(request.param, fake)
    try:
        yield adapter
    finally:
        await adapter.aclose()


@pytest.mark.parametrize(("status", "kind"), STATUS_ERRORS)
async def test_statuses_map_to_the_error_tree(
    provider: Provider, fake: FakeProvider, status: int, kind: type[GatewayError]
) -> None:
    fake.inject(Fault(status=status, message="the provider says no"))
    with pytest.raises(kind) as raised:
        await provider.generate("m", REQUEST, time_left=TIME)
    error = raised.value
    assert type(error) is kind
    assert error.retryable == (kind is ProviderUnavailable)
    assert "the provider says no" in str(error) and str(status) in str(error)
    assert error.request_id == "req_1" and error.request_id in str(error)
    assert error.provider == provider.name
    assert error.__cause__ is None and error.__suppress_context__


async def test_a_429_carries_the_retry_after_and_signals(
    provider: Provider, fake: FakeProvider
) -> None:
    fake.inject(Fault(status=429, headers={"retry-after": "7"}))
    with pytest.raises(RateLimited) as raised:
        await provider.generate("m", REQUEST, time_left=TIME)
    assert raised.value.retry_after == 7.0
    fake.inject(Fault(status=429, headers={"retry-after-ms": "250", "retry-after": "9"}))
    with pytest.raises(RateLimited) as raised:
        await provider.generate("m", REQUEST, time_left=TIME)
    assert raised.value.retry_after == 0.25


async def test_a_429_without_a_wait_still_names_one(provider: Provider, fake: FakeProvider) -> None:
    fake.inject(Fault(status=429))
    with pytest.raises(RateLimited) as raised:
        await provider.generate("m", REQUEST, time_left=TIME)
    assert raised.value.retry_after > 0


async def test_exhausted_buckets_on_success_become_a_pause(
    provider: Provider, fake: FakeProvider
) -> None:
    fake.success_headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "1m30s",
        "anthropic-ratelimit-tokens-remaining": "5",
        "anthropic-ratelimit-tokens-reset": "2099-01-01T00:00:00Z",
    }
    completion = await provider.generate("m", REQUEST, time_left=TIME)
    assert completion.signals.pause == 90.0


async def test_a_slow_provider_runs_into_the_time_left(
    provider: Provider, fake: FakeProvider
) -> None:
    fake.delay = 2.0
    with pytest.raises(DeadlineExceeded, match="did not answer in time"):
        await provider.generate("m", REQUEST, time_left=0.3)


async def test_an_unreachable_provider_is_unavailable(fake: FakeProvider) -> None:
    fake.port = closed_port()
    for kind in SDK_KINDS:
        adapter = sdk_provider(kind, fake)
        try:
            with pytest.raises(ProviderUnavailable, match="could not reach"):
                await adapter.generate("m", REQUEST, time_left=TIME)
        finally:
            await adapter.aclose()


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_a_stream_failing_before_its_first_chunk_raises_on_entry(
    provider: Provider, fake: FakeProvider
) -> None:
    fake.inject(Fault(status=503))
    with pytest.raises(ProviderUnavailable):
        async with provider.stream("m", REQUEST, time_left=TIME):
            pytest.fail("the stream must not open")


async def test_a_key_in_the_provider_message_is_redacted(
    provider: Provider, fake: FakeProvider
) -> None:
    fake.inject(Fault(status=401, message="Incorrect API key provided", echo_key=True))
    with pytest.raises(PermissionDenied) as raised:
        await provider.generate("m", REQUEST, time_left=TIME)
    assert API_KEY not in str(raised.value) and API_KEY not in repr(raised.value)
    assert "[redacted]" in str(raised.value)
    assert API_KEY not in repr(vars(provider))  # nor in what the adapter holds


async def test_a_wrong_key_is_permission_denied_without_showing_it(fake: FakeProvider) -> None:
    for kind in SDK_KINDS:
        adapter = sdk_provider(kind, fake, key="sk-wrong-key-0123456789")
        try:
            with pytest.raises(PermissionDenied) as raised:
                await adapter.generate("m", REQUEST, time_left=TIME)
        finally:
            await adapter.aclose()
        assert "sk-wrong-key-0123456789" not in str(raised.value)
