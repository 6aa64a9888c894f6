"""The orchestrator's gRPC ModelClient against a real model server process.

``graphmesh serve model-server`` with the packaged embedding model on loopback; a graph of
DownloadModelTask and embedding tasks runs through ``GrpcModelClient``: LoadModel reaches
the server, vectors are the model's (unit length, 384 dimensions, paraphrases close), usage
is the server's token counts, and the server's refusals arrive as permanent ModelErrors.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Iterator

import pytest
from support.model_server import MINILM, model_server_process

from graphmesh.orchestrator.ai.client import ModelError
from graphmesh.orchestrator.catalog.ai import (
    DownloadModelTask,
    TextEmbeddingMultiTextTask,
    TextEmbeddingTask,
)
from graphmesh.orchestrator.graph import TaskGraph
from graphmesh.orchestrator.models import GrpcModelClient, parse_routes
from graphmesh.orchestrator.runner import TaskGraphRunner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with model_server_process(tmp_path_factory.mktemp("model-server")) as server:
        yield server.address


@pytest.fixture
async def models(server_address: str) -> AsyncIterator[GrpcModelClient]:
    async with GrpcModelClient(parse_routes(f"hf:={server_address}")) as client:
        yield client


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


async def test_a_graph_of_ai_tasks_runs_through_the_model_server(models: GrpcModelClient) -> None:
    texts = ["A man is playing a guitar.", "Someone plays an acoustic guitar.", "Stocks fell."]
    graph = TaskGraph()
    graph.add_task(DownloadModelTask(id="load", defaults={"model": MINILM}))
    graph.add_task(TextEmbeddingTask(id="one", defaults={"model": MINILM, "text": texts[0]}))
    graph.add_task(TextEmbeddingMultiTextTask(id="many", defaults={"model": MINILM, "text": texts}))
    result = await TaskGraphRunner(graph, models=models).run()
    assert result.ok, result.error
    assert result.outputs["load"] == {"model": MINILM}
    one = result.outputs["one"]["vector"]
    many = result.outputs["many"]["vector"]
    assert len(one) == 384 and math.isclose(cosine(one, one), 1.0, rel_tol=1e-4)
    assert cosine(one, many[0]) > 0.9999
    assert cosine(many[0], many[1]) > cosine(many[0], many[2]) + 0.3
    assert result.tasks["load"].usage.empty
    single = result.tasks["one"].usage.input_tokens
    assert single >= len(texts[0].split())
    assert result.tasks["many"].usage.input_tokens > 2 * single
    assert result.usage.input_tokens == single + result.tasks["many"].usage.input_tokens


async def test_the_servers_refusals_are_permanent_model_errors(models: GrpcModelClient) -> None:
    with pytest.raises(ModelError, match="no-such-model") as unknown:
        await models.embed("hf:no-such-model", ["text"])
    assert unknown.value.retryable is False
    with pytest.raises(ModelError, match="INVALID_ARGUMENT") as empty:
        await models.embed(MINILM, [])
    assert empty.value.retryable is False


async def test_a_graph_with_no_route_for_its_model_fails_naming_the_setting() -> None:
    graph = TaskGraph()
    graph.add_task(TextEmbeddingTask(id="e", defaults={"model": "openai:text-embedding-3-small"}))
    async with GrpcModelClient(parse_routes("")) as models:
        result = await TaskGraphRunner(graph, models=models).run({"text": "x"})
    assert not result.ok
    assert "GRAPHMESH_MODEL_ROUTES" in (result.error or "")
    assert "openai:text-embedding-3-small" in (result.error or "")
