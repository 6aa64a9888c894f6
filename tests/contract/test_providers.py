"""Provider contract: the in-memory twin and the real SDK adapters (OpenAI, Anthropic, each
against the loopback fake provider through its official SDK) answer alike."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support.fake_provider import FakeProvider
from support.gateway import API_KEY, PROVIDER_KINDS, open_provider

from graphmesh.services.gateway.errors import InvalidRequest
from graphmesh.services.gateway.provider import Provider
from graphmesh.services.gateway.types import ChatRequest, Chunk, Message

TIME = 10.0
REQUEST = ChatRequest(
    messages=(
        Message(role="user", content="first question"),
        Message(role="assistant", content="an answer"),
        Message(role="user", content="hello there world"),
    ),
    system="be brief",
    max_tokens=64,
)


@pytest.fixture(params=PROVIDER_KINDS)
async def provider(request: pytest.FixtureRequest) -> AsyncIterator[Provider]:
    """Each provider kind in turn."""
    if request.param == "memory":
        async with open_provider("memory", None) as opened:
            yield opened
        return
    async with (
        FakeProvider.start(api_key=API_KEY) as fake,
        open_provider(request.param, fake) as opened,
    ):
        yield opened


async def test_generate_answers_the_last_user_turn_with_usage(provider: Provider) -> None:
    completion = await provider.generate("model-x", REQUEST, time_left=TIME)
    assert completion.text == "echo: hello there world"
    assert completion.usage.input_tokens == 9  # words of the system prompt and every turn
    assert completion.usage.output_tokens == 4
    assert completion.request_id
    assert completion.finish_reason in ("stop", "end_turn")


async def test_stream_gives_the_same_text_and_usage_last(provider: Provider) -> None:
    whole = await provider.generate("model-x", REQUEST, time_left=TIME)
    chunks: list[Chunk] = []
    async with provider.stream("model-x", REQUEST, time_left=TIME) as opened:
        assert opened.request_id
        chunks = [chunk async for chunk in opened.chunks]
    assert len(chunks) > 2
    assert "".join(chunk.text for chunk in chunks) == whole.text
    assert chunks[-1].usage == whole.usage
    assert all(chunk.usage is None for chunk in chunks[:-1])


async def test_a_stream_left_early_is_closed(provider: Provider) -> None:
    async with provider.stream("model-x", REQUEST, time_left=TIME) as opened:
        first = await anext(opened.chunks)
    assert first.text
    again = await provider.generate("model-x", REQUEST, time_left=TIME)
    assert again.text == "echo: hello there world"


async def test_embed_gives_one_vector_per_text_or_refuses_clearly(provider: Provider) -> None:
    if provider.name == "anthropic":
        with pytest.raises(InvalidRequest, match="no embeddings"):
            await provider.embed("model-x", ["a"], time_left=TIME)
        return
    embeddings = await provider.embed("model-x", ["one two", "three", "one two"], time_left=TIME)
    assert len(embeddings.vectors) == 3
    assert embeddings.vectors[0] == embeddings.vectors[2] != embeddings.vectors[1]
    assert embeddings.usage.input_tokens == 5
