"""The gateway core against the in-memory provider and limit store: routing, the one retry
loop, shared limits (wait briefly or refuse with the wait), provider signals pausing the
key, usage corrections, streams, and failing closed without the limiter's store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from graphmesh.limits import (
    LimitStoreUnavailable,
    MemoryLimitStore,
    RateLimiter,
    TokenRateLimiter,
    seconds_from_now,
)
from graphmesh.limits.store import Taken
from graphmesh.services.gateway.errors import (
    InvalidRequest,
    LimiterUnavailable,
    ModelNotFound,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
)
from graphmesh.services.gateway.gateway import Gateway, Route
from graphmesh.services.gateway.limiting import (
    LimiterOptions,
    ModelLimits,
    RouteLimiter,
    estimate_tokens,
)
from graphmesh.services.gateway.memory import MemoryProvider
from graphmesh.services.gateway.retry import RetryPolicy
from graphmesh.services.gateway.types import ChatRequest, RateSignals, Usage

MODEL = "openai:gpt-test"
REQUEST = ChatRequest.prompt("hello there", max_tokens=8)
WINDOW = 61.0  # a minute and the default margin
UNLIMITED = ModelLimits()


class NoSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def gateway(
    provider: MemoryProvider,
    store: object,
    limits: ModelLimits = UNLIMITED,
    *,
    max_wait: float = 0.2,
    sleep: NoSleep | None = None,
    local_grant: float = 0.0,
) -> Gateway:
    limiter = RouteLimiter(
        store,  # type: ignore[arg-type]
        key="acct/gpt-test",
        limits=limits,
        options=LimiterOptions(max_wait=max_wait, local_grant=local_grant),
    )
    route = Route(provider=provider, model="gpt-test", limiter=limiter, timeout=5.0)
    built = Gateway(
        {MODEL: route},
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02),
        sleep=sleep or NoSleep(),
    )
    OPENED.append(built)
    return built


OPENED: list[Gateway] = []


@pytest.fixture(autouse=True)
async def settle_bookkeeping() -> AsyncIterator[None]:
    """Each test's gateways write their calls' bookkeeping before the loop closes."""
    yield
    while OPENED:
        await OPENED.pop().settled()


async def test_calls_reach_the_provider_model_behind_the_routed_name() -> None:
    provider = MemoryProvider()
    core = gateway(provider, MemoryLimitStore())
    completion = await core.generate(MODEL, REQUEST)
    assert completion.text == "echo: hello there"
    embeddings = await core.embed(MODEL, ["a", "b"])
    assert len(embeddings.vectors) == 2
    assert provider.calls == [("generate", "gpt-test"), ("embed", "gpt-test")]
    assert core.models() == [MODEL]


async def test_text_tasks_are_prompts_of_the_chat_model() -> None:
    provider = MemoryProvider()
    core = gateway(provider, MemoryLimitStore())
    summary = await core.summarize(MODEL, "a long text")
    assert "a long text" in summary.text
    answer = await core.answer_question(MODEL, "who?", "the context")
    assert answer.text.endswith("Question: who?")
    translated = await core.translate(MODEL, "bonjour", source="", target="English")
    assert translated.text == "echo: bonjour"
    rewritten = await core.rewrite(MODEL, "text", "Make it formal.")
    assert "Make it formal." in rewritten.text


async def test_an_unknown_model_is_not_found() -> None:
    with pytest.raises(ModelNotFound, match="openai:nope"):
        await gateway(MemoryProvider(), MemoryLimitStore()).generate("openai:nope", REQUEST)


async def test_a_bad_time_limit_is_an_invalid_request() -> None:
    core = gateway(MemoryProvider(), MemoryLimitStore())
    with pytest.raises(InvalidRequest, match="time limit"):
        await core.generate(MODEL, REQUEST, time_limit=0)


async def test_retryable_failures_are_retried_then_succeed() -> None:
    provider, sleep = MemoryProvider(), NoSleep()
    provider.fail_next(ProviderUnavailable("503"), ProviderUnavailable("529"))
    completion = await gateway(provider, MemoryLimitStore(), sleep=sleep).generate(MODEL, REQUEST)
    assert completion.text == "echo: hello there"
    assert len(provider.calls) == 3 and len(sleep.waits) == 2


async def test_final_failures_are_not_retried() -> None:
    provider = MemoryProvider()
    provider.fail_next(PermissionDenied("401"))
    with pytest.raises(PermissionDenied):
        await gateway(provider, MemoryLimitStore()).generate(MODEL, REQUEST)
    assert len(provider.calls) == 1


async def test_every_retry_takes_a_request_slot() -> None:
    provider, store = MemoryProvider(), MemoryLimitStore()
    provider.fail_next(ProviderUnavailable("503"))
    core = gateway(provider, store, ModelLimits(requests_per_minute=2))
    await core.generate(MODEL, REQUEST)
    with pytest.raises(RateLimited) as refused:
        await core.generate(MODEL, REQUEST)
    assert WINDOW - 1 < refused.value.retry_after <= WINDOW
    assert len(provider.calls) == 2


async def test_a_provider_429_pauses_the_key_for_every_replica() -> None:
    provider, store = MemoryProvider(), MemoryLimitStore()
    provider.fail_next(RateLimited("429", retry_after=30.0, signals=RateSignals(retry_after=30)))
    limits = ModelLimits(requests_per_minute=100)
    with pytest.raises(RateLimited):
        await gateway(provider, store, limits).generate(MODEL, REQUEST)
    other_replica = gateway(MemoryProvider(), store, limits)
    with pytest.raises(RateLimited) as refused:
        await other_replica.generate(MODEL, REQUEST)
    assert 29 < refused.value.retry_after <= 30


async def test_an_exhausted_bucket_on_success_pauses_the_key() -> None:
    provider, store = MemoryProvider(), MemoryLimitStore()
    provider.signals = RateSignals(pause=20.0)
    core = gateway(provider, store, ModelLimits(max_concurrent=4))
    await core.generate(MODEL, REQUEST)
    with pytest.raises(RateLimited) as refused:
        await core.generate(MODEL, REQUEST)
    assert 19 < refused.value.retry_after <= 20


async def test_a_near_slot_is_waited_for_a_far_one_refused() -> None:
    store = MemoryLimitStore()
    core = gateway(MemoryProvider(), store, ModelLimits(requests_per_minute=5), max_wait=1.0)
    limiter = RateLimiter(store, name="gateway-requests", limit=5, window=WINDOW)
    await limiter.set_next_available("acct/gpt-test", seconds_from_now(0.2))
    assert (await core.generate(MODEL, REQUEST)).text  # waited 0.2 s
    await limiter.set_next_available("acct/gpt-test", seconds_from_now(5))
    with pytest.raises(RateLimited) as refused:
        await core.generate(MODEL, REQUEST)
    assert 4 < refused.value.retry_after <= 5


async def test_token_estimates_are_corrected_from_the_usage() -> None:
    store = MemoryLimitStore()
    limits = ModelLimits(tokens_per_minute=100)
    core = gateway(MemoryProvider(), store, limits)
    request = ChatRequest.prompt("one two three", max_tokens=90)
    assert estimate_tokens(["", "one two three"], 90) > 90
    await core.generate(MODEL, request)  # charged its usage: 3 in + 4 out
    await core.settled()
    tokens = TokenRateLimiter(store, name="gateway-tokens", limit=100, window=WINDOW)
    assert (await tokens.try_acquire("acct/gpt-test", 93)).granted
    assert not (await tokens.try_acquire("acct/gpt-test", 1)).granted


async def test_a_stream_holds_its_slot_and_is_charged_its_usage() -> None:
    store = MemoryLimitStore()
    limits = ModelLimits(max_concurrent=1, tokens_per_minute=1000)
    core = gateway(MemoryProvider(), store, limits, max_wait=0.05)
    async with core.stream(MODEL, REQUEST) as chunks:
        pieces = [chunk async for chunk in chunks]
        with pytest.raises(RateLimited):  # the one slot is held until the block ends
            await core.generate(MODEL, REQUEST)
    assert "".join(piece.text for piece in pieces) == "echo: hello there"
    assert pieces[-1].usage == Usage(input_tokens=2, output_tokens=3)
    assert (await core.generate(MODEL, REQUEST)).text
    await core.settled()  # the release and the correction are written after the answer
    tokens = TokenRateLimiter(store, name="gateway-tokens", limit=1000, window=WINDOW)
    assert (await tokens.try_acquire("acct/gpt-test", 1000 - 5 - 5)).granted


async def test_a_stream_left_early_frees_its_slot_and_keeps_the_estimate() -> None:
    store = MemoryLimitStore()
    limits = ModelLimits(max_concurrent=1, tokens_per_minute=1000)
    core = gateway(MemoryProvider(), store, limits, max_wait=0.05)
    async with core.stream(MODEL, REQUEST) as chunks:
        assert (await anext(chunks)).text == "echo:"
    assert (await core.generate(MODEL, REQUEST)).text  # the slot came back
    await core.settled()  # the release and the correction are written after the answer
    tokens = TokenRateLimiter(store, name="gateway-tokens", limit=1000, window=WINDOW)
    estimate = estimate_tokens(["", "hello there"], REQUEST.max_tokens)
    assert (await tokens.try_acquire("acct/gpt-test", 1000 - estimate - 5)).granted
    assert not (await tokens.try_acquire("acct/gpt-test", 1)).granted


async def test_a_stream_failing_to_open_is_retried() -> None:
    provider = MemoryProvider()
    provider.fail_next(ProviderUnavailable("503"))
    core = gateway(provider, MemoryLimitStore(), ModelLimits(max_concurrent=1))
    async with core.stream(MODEL, REQUEST) as chunks:
        assert [chunk async for chunk in chunks][-1].usage is not None
    assert len(provider.calls) == 2


class DownStore:
    """A limit store whose database is gone."""

    async def take(self, **_: object) -> Taken:
        raise LimitStoreUnavailable("the limiter database cannot be reached")

    async def take_all(self, **_: object) -> list[Taken]:
        raise LimitStoreUnavailable("the limiter database cannot be reached")

    async def next_available(self, **_: object) -> float:
        raise LimitStoreUnavailable("the limiter database cannot be reached")


async def test_without_its_store_the_limiter_fails_closed() -> None:
    provider = MemoryProvider()
    core = gateway(provider, DownStore(), ModelLimits(requests_per_minute=10))
    with pytest.raises(LimiterUnavailable, match="no provider call is made"):
        await core.generate(MODEL, REQUEST)
    assert provider.calls == []


async def test_an_unlimited_model_needs_no_store() -> None:
    provider = MemoryProvider()
    assert (await gateway(provider, DownStore()).generate(MODEL, REQUEST)).text


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (ChatRequest.prompt("nul \x00 here"), "NUL"),
        (ChatRequest.prompt("lone \ud800 surrogate"), "UTF-8"),
        (ChatRequest.prompt("x" * 2_000_001), "characters"),
        (ChatRequest.prompt("hi", max_tokens=0), "max_tokens"),
        (ChatRequest(messages=()), "messages must not be empty"),
        (
            ChatRequest(messages=ChatRequest.prompt("hi").messages, temperature=float("nan")),
            "temperature",
        ),
        (ChatRequest(messages=ChatRequest.prompt("hi").messages, stop=("a",) * 5), "stop"),
    ],
)
async def test_hostile_requests_are_refused_by_name_before_any_call(
    request_: ChatRequest, field: str
) -> None:
    provider = MemoryProvider()
    core = gateway(provider, DownStore(), ModelLimits(requests_per_minute=1))
    with pytest.raises(InvalidRequest, match=field):
        await core.generate(MODEL, request_)
    with pytest.raises(InvalidRequest, match=field):
        async with core.stream(MODEL, request_):
            pytest.fail("must not open")
    assert provider.calls == []


@pytest.mark.parametrize(
    ("texts", "field"),
    [([], "1 to 2048"), (["a"] * 2049, "1 to 2048"), (["ok", "\x00"], r"texts\[1\]")],
)
async def test_hostile_embed_batches_are_refused(texts: list[str], field: str) -> None:
    provider = MemoryProvider()
    with pytest.raises(InvalidRequest, match=field):
        await gateway(provider, MemoryLimitStore()).embed(MODEL, texts)
    assert provider.calls == []


class CountingStore(MemoryLimitStore):
    """A memory store that counts the round trips a database store would make."""

    def __init__(self) -> None:
        super().__init__()
        self.takes = 0

    async def take_all(self, **kwargs: Any) -> list[Taken]:
        self.takes += 1
        return await super().take_all(**kwargs)


async def test_leased_grants_save_round_trips_and_never_pass_the_limit() -> None:
    store = CountingStore()
    limits = ModelLimits(requests_per_minute=1000, tokens_per_minute=10**7)
    core = gateway(MemoryProvider(), store, limits, max_wait=0.0, local_grant=0.5)
    admitted = refused = 0
    takes = 0
    for _ in range(1030):
        try:
            await core.generate(MODEL, REQUEST)
            admitted += 1
            takes = store.takes
        except RateLimited as refusal:
            refused += 1
            assert refusal.retry_after > 50  # the window frees up in about a minute
    assert (admitted, refused) == (1000, 30)
    assert takes < 250, f"{takes} store round trips for 1000 calls"
    # Every replica sees the grants: another limiter on the store has no room left.
    requests = RateLimiter(store, name="gateway-requests", limit=1000, window=WINDOW)
    assert not (await requests.try_acquire("acct/gpt-test")).granted


async def test_a_leased_block_lapses_after_its_hold() -> None:
    store = CountingStore()
    limits = ModelLimits(requests_per_minute=1000)
    core = gateway(MemoryProvider(), store, limits, local_grant=0.05)
    for _ in range(8):
        await core.generate(MODEL, REQUEST)
    taken = store.takes
    await asyncio.sleep(0.08)
    await core.generate(MODEL, REQUEST)
    assert store.takes == taken + 1, "a lapsed block was still handed out"


async def test_leased_token_estimates_are_corrected_and_pauses_drop_the_block() -> None:
    store = CountingStore()
    limits = ModelLimits(tokens_per_minute=1000)
    provider = MemoryProvider()
    core = gateway(provider, store, limits, max_wait=0.0, local_grant=0.5)
    request = ChatRequest.prompt("one two three", max_tokens=90)
    await core.generate(MODEL, request)  # estimated > 90, used 7: the rest comes back
    await core.settled()
    tokens = TokenRateLimiter(store, name="gateway-tokens", limit=1000, window=WINDOW)
    estimate = estimate_tokens(["", "one two three"], 90)
    granted = await tokens.try_acquire("acct/gpt-test", 1000 - estimate)
    assert granted.granted  # the block holds at most the estimate
    await tokens.cancel(granted.permit)  # type: ignore[arg-type]
    provider.signals = RateSignals(retry_after=30.0)
    await core.generate(MODEL, request)
    with pytest.raises(RateLimited):  # the pause holds here at once, the block dropped
        await core.generate(MODEL, request)
