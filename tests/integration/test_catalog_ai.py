"""Catalog text-model tasks through the runner with the real packaged models, in process.

MiniLM-L6 embeds; SmolLM2-135M-Instruct summarizes. Models load once for the module and
summaries are capped at 24 new tokens (SmolLM2 makes roughly 20 tokens/s on a small CPU).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from graphmesh.local_models import LocalModelClient
from graphmesh.model_server.registry import ModelRegistry
from graphmesh.orchestrator.catalog.ai import (
    DEFAULT_CHAT_MODEL,
    DEFAULT_EMBEDDING_MODEL,
    DownloadModelTask,
    TextEmbeddingMultiTextTask,
    TextEmbeddingTask,
    TextSummaryTask,
)
from graphmesh.orchestrator.catalog.documents import DocumentSplitterTask
from graphmesh.orchestrator.catalog.similarity import SimilarityTask
from graphmesh.orchestrator.graph import DataFlow, TaskGraph
from graphmesh.orchestrator.runner import TaskGraphRunner

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 24
DOCUMENT = """# Travel notes

The Eiffel Tower is a wrought-iron lattice tower in Paris, built for the 1889 World's Fair.

## Food

Sourdough bread rises slowly because wild yeast ferments the dough overnight.

## Sport

The goalkeeper saved a penalty in the last minute of the football match.
"""


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    """Both default models, loaded once for the whole module."""
    registry = ModelRegistry()
    registry.embedder(DEFAULT_EMBEDDING_MODEL)
    registry.chat_model(DEFAULT_CHAT_MODEL)
    return registry


@pytest.fixture
async def models(registry: ModelRegistry) -> AsyncIterator[LocalModelClient]:
    async with LocalModelClient(registry, task_max_new_tokens=MAX_NEW_TOKENS) as client:
        yield client


async def test_embedding_task_returns_a_unit_minilm_vector(models: LocalModelClient) -> None:
    task = TextEmbeddingTask(id="emb", defaults={"text": "a tower in Paris"})
    result = (await TaskGraphRunner(TaskGraph([task]), models=models).run()).raise_for_status()
    vector = result.outputs["emb"]["vector"]
    assert len(vector) == 384
    assert all(isinstance(x, float) for x in vector)
    assert sum(x * x for x in vector) == pytest.approx(1.0, abs=1e-3)


async def test_semantic_search_over_a_markdown_document(models: LocalModelClient) -> None:
    graph = TaskGraph(
        [
            DocumentSplitterTask(id="split", defaults={"text": DOCUMENT, "format": "md"}),
            TextEmbeddingMultiTextTask(id="docs"),
            TextEmbeddingTask(id="query", defaults={"text": "How is bread made?"}),
            SimilarityTask(id="rank", defaults={"top_k": 1}),
        ],
        [
            DataFlow(
                source_task="split",
                source_port="paragraphs",
                target_task="docs",
                target_port="text",
            ),
            DataFlow(
                source_task="docs", source_port="vector", target_task="rank", target_port="items"
            ),
            DataFlow(
                source_task="query", source_port="vector", target_task="rank", target_port="query"
            ),
        ],
    )
    result = (await TaskGraphRunner(graph, models=models).run()).raise_for_status()
    paragraphs = result.outputs["split"]["paragraphs"]
    [best] = result.outputs["rank"]["indices"]
    assert "Sourdough" in paragraphs[best]
    assert paragraphs[best].startswith("## Food")


async def test_summary_task_generates_a_short_summary(models: LocalModelClient) -> None:
    paragraph = DOCUMENT.split("\n\n")[1]
    task = TextSummaryTask(id="sum", defaults={"text": paragraph})
    result = (await TaskGraphRunner(TaskGraph([task]), models=models).run()).raise_for_status()
    summary = result.outputs["sum"]["text"]
    assert isinstance(summary, str)
    assert summary.strip()
    assert summary != paragraph


async def test_download_model_task_loads_the_model(models: LocalModelClient) -> None:
    task = DownloadModelTask(id="dl", defaults={"model": DEFAULT_EMBEDDING_MODEL})
    result = (await TaskGraphRunner(TaskGraph([task]), models=models).run()).raise_for_status()
    assert result.outputs["dl"] == {"model": DEFAULT_EMBEDDING_MODEL}
