"""LocalModelClient against the real packaged models: MiniLM-L6 and SmolLM2-135M-Instruct.

The registry (and so each model) is loaded once for the module; every test opens its own
client on it, which is cheap, so each test gets fresh batchers and batch statistics.
Generation is kept to 24 new tokens: SmolLM2 makes roughly 20 tokens/s on a small CPU.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

import pytest

from graphmesh.local_models import LocalModelClient
from graphmesh.model_server.backends.packaged import minilm_directory
from graphmesh.model_server.registry import ModelRegistry
from graphmesh.orchestrator.ai.client import ModelClient, ModelError

pytestmark = pytest.mark.slow

EMBEDDER = "hf:all-MiniLM-L6-v2"
CHAT = "hf:SmolLM2-135M-Instruct"
MAX_NEW_TOKENS = 24
EIFFEL = (
    "The Eiffel Tower is a wrought-iron lattice tower in Paris, France. It was designed by "
    "Gustave Eiffel's company and built between 1887 and 1889 for the World's Fair."
)


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    """Both packaged models, loaded once for the whole module."""
    registry = ModelRegistry()
    registry.embedder(EMBEDDER)
    registry.chat_model(CHAT)
    return registry


@pytest.fixture
async def models(registry: ModelRegistry) -> AsyncIterator[LocalModelClient]:
    async with LocalModelClient(registry, task_max_new_tokens=MAX_NEW_TOKENS) as client:
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_the_client_is_a_model_client() -> None:
    assert isinstance(LocalModelClient(), ModelClient)


async def test_load_model_describes_each_packaged_model(models: LocalModelClient) -> None:
    embedder = await models.load_model("hf:sentence-transformers/all-MiniLM-L6-v2")
    assert (embedder.name, embedder.provider) == ("hf:sentence-transformers/all-MiniLM-L6-v2", "hf")
    assert (embedder.dimensions, embedder.task_kinds) == (384, ("embed",))
    assert embedder.params["canonical_name"] == EMBEDDER
    chat = await models.load_model(CHAT)
    assert chat.dimensions is None and chat.context_window == 8192
    assert {"generate", "summarize", "translate"} <= set(chat.task_kinds)


async def test_embeddings_are_unit_vectors_that_place_paraphrases_close(
    models: LocalModelClient,
) -> None:
    texts = [
        "A man is playing a guitar.",
        "Someone is playing an acoustic guitar.",
        "The stock market fell sharply today.",
    ]
    embedded = await models.embed(EMBEDDER, texts)
    vectors = embedded.vectors
    assert embedded.usage.input_tokens >= sum(len(text.split()) for text in texts)
    assert embedded.usage.output_tokens == 0
    assert [len(v) for v in vectors] == [384] * 3
    assert all(math.isclose(cosine(v, v), 1.0, abs_tol=1e-5) for v in vectors)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3


async def test_concurrent_single_text_embeds_share_batches(models: LocalModelClient) -> None:
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(20)]
    singles = await asyncio.gather(*(models.embed(EMBEDDER, [text]) for text in texts))
    stats = models.batch_stats()[f"embed:{EMBEDDER}"]
    assert stats.items == 20 and stats.batches < 20 and stats.largest > 1
    together = (await models.embed(EMBEDDER, texts)).vectors
    for [single], batched in zip((s.vectors for s in singles), together, strict=True):
        assert cosine(single, batched) > 0.9999


async def test_a_local_model_directory_loads_by_path(models: LocalModelClient) -> None:
    by_path = f"hf:{minilm_directory()}"
    info = await models.load_model(by_path)
    assert (info.name, info.dimensions) == (by_path, 384)
    [vector] = (await models.embed(by_path, ["hello world"])).vectors
    [packaged] = (await models.embed(EMBEDDER, ["hello world"])).vectors
    assert cosine(vector, packaged) > 0.9999
    assert await models.unload_model(by_path) is True


async def test_every_text_task_returns_text(models: LocalModelClient) -> None:
    replies = await asyncio.gather(
        models.generate(CHAT, "What is the capital of France?", max_new_tokens=MAX_NEW_TOKENS),
        models.summarize(CHAT, EIFFEL),
        models.rewrite(CHAT, "hey can u send the report asap thx", "Make this formal and polite."),
        models.translate(CHAT, "Good morning, my friend.", "English", "French"),
        models.answer_question(CHAT, "Who designed the Eiffel Tower?", EIFFEL),
    )
    assert all(reply.text.strip() for reply in replies)
    assert all(reply.usage.input_tokens > 5 and reply.usage.output_tokens > 0 for reply in replies)
    assert all(reply.usage.output_tokens <= MAX_NEW_TOKENS for reply in replies[:1])
    assert "Paris" in replies[0].text
    assert "Eiffel" in replies[4].text
    assert models.batch_stats()[f"chat:{CHAT}"].batches < len(replies)


async def test_greedy_generation_is_repeatable(models: LocalModelClient) -> None:
    prompt = "Name three colours."
    first = await models.generate(CHAT, prompt, max_new_tokens=12)
    again = await models.generate(CHAT, prompt, max_new_tokens=12)
    assert first.text and again.text == first.text and again.usage == first.usage


async def test_an_unknown_model_is_a_model_error_naming_it(models: LocalModelClient) -> None:
    with pytest.raises(ModelError, match="hf:no-such-model") as caught:
        await models.embed("hf:no-such-model", ["text"])
    assert EMBEDDER in str(caught.value) and not caught.value.retryable
    with pytest.raises(ModelError, match="openai:gpt-4o"):
        await models.summarize("openai:gpt-4o", "text")


async def test_using_a_model_for_the_wrong_task_is_a_model_error(models: LocalModelClient) -> None:
    with pytest.raises(ModelError, match="is a chat model, not an embedding model"):
        await models.embed(CHAT, ["text"])
    with pytest.raises(ModelError, match="is an embedding model, not a chat model"):
        await models.generate(EMBEDDER, "hello")


async def test_a_client_that_was_never_opened_says_so(registry: ModelRegistry) -> None:
    with pytest.raises(ModelError, match="async with"):
        await LocalModelClient(registry).embed(EMBEDDER, ["text"])
