"""SimilarityTask: most similar first, three metrics, dimension checks, top_k."""

from __future__ import annotations

import math
from typing import Any

import pytest

from graphmesh.orchestrator.ai.testing import FakeModelClient
from graphmesh.orchestrator.catalog.ai import TextEmbeddingMultiTextTask, TextEmbeddingTask
from graphmesh.orchestrator.catalog.similarity import SimilarityTask
from graphmesh.orchestrator.graph import DataFlow, TaskGraph
from graphmesh.orchestrator.runner import RunStatus, TaskGraphRunner


async def similarity(**inputs: Any) -> dict[str, Any]:
    result = await TaskGraphRunner(TaskGraph([SimilarityTask(id="s", defaults=inputs)])).run()
    return result.raise_for_status().outputs["s"]


async def test_cosine_ranks_most_similar_first() -> None:
    items = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    output = await similarity(query=[1.0, 0.0], items=items)
    assert output["indices"] == [1, 2, 0]
    assert output["items"] == [[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]
    assert output["scores"] == pytest.approx([1.0, 1 / math.sqrt(2), 0.0])


async def test_top_k_keeps_the_best() -> None:
    items = [[0.0, 1.0], [1.0, 0.0], [1.0, 1.0]]
    output = await similarity(query=[1.0, 0.1], items=items, top_k=2)
    assert output["indices"] == [1, 2]
    assert len(output["scores"]) == len(output["items"]) == 2


async def test_ties_keep_input_order() -> None:
    output = await similarity(query=[1, 0], items=[[2, 0], [1, 0], [3, 0]])
    assert output["indices"] == [0, 1, 2]


async def test_jaccard_is_weighted_overlap() -> None:
    output = await similarity(
        query=[1, 1, 0, 0], items=[[1, 0, 0, 0], [1, 1, 1, 0], [0, 0, 1, 1]], metric="jaccard"
    )
    assert output["indices"] == [1, 0, 2]
    assert output["scores"] == pytest.approx([2 / 3, 1 / 2, 0.0])


async def test_hamming_counts_equal_positions() -> None:
    output = await similarity(
        query=[1, 0, 1, 0], items=[[0, 1, 0, 1], [1, 0, 1, 1], [1, 0, 1, 0]], metric="hamming"
    )
    assert output["indices"] == [2, 1, 0]
    assert output["scores"] == [1.0, 0.75, 0.0]


async def test_zero_vectors_score_zero_under_cosine() -> None:
    output = await similarity(query=[0.0, 0.0], items=[[1.0, 2.0]])
    assert output["scores"] == [0.0]


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"query": [1, 2], "items": [[1, 2], [1, 2, 3]]},
            "items[1] has 3 dimensions but query has 2",
        ),
        ({"query": [1, 2], "items": [[1, 2]], "metric": "euclid"}, "metric 'euclid' is not one of"),
        ({"query": [1, 2], "items": [[1, 2]], "top_k": -1}, "top_k must be a non-negative integer"),
        ({"query": "abc", "items": [[1, 2]]}, "query must be an array of numbers"),
        ({"query": [1, 2], "items": [[1, "x"]]}, "items[0] must be an array of numbers"),
    ],
)
async def test_bad_inputs_fail_clearly(inputs: dict[str, Any], message: str) -> None:
    result = await TaskGraphRunner(TaskGraph([SimilarityTask(id="s", defaults=inputs)])).run()
    assert result.status == RunStatus.FAILED
    assert message in (result.error or "")


async def test_reactive_preview_ranks_too() -> None:
    graph = TaskGraph(
        [SimilarityTask(id="s", defaults={"query": [1, 0], "items": [[0, 1], [1, 0]]})]
    )
    assert TaskGraphRunner(graph).run_reactive().outputs["s"]["indices"] == [1, 0]


async def test_semantic_search_pipeline_finds_the_query_text_first() -> None:
    texts = ["red apples", "blue sky", "green grass"]
    graph = TaskGraph(
        [
            TextEmbeddingTask(id="q", defaults={"text": "blue sky"}),
            TextEmbeddingMultiTextTask(id="docs", defaults={"text": texts}),
            SimilarityTask(id="s"),
        ],
        [
            DataFlow(source_task="q", source_port="vector", target_task="s", target_port="query"),
            DataFlow(
                source_task="docs", source_port="vector", target_task="s", target_port="items"
            ),
        ],
    )
    result = await TaskGraphRunner(graph, models=FakeModelClient()).run()
    output = result.raise_for_status().outputs["s"]
    assert output["indices"][0] == 1
    assert output["scores"][0] == pytest.approx(1.0)


async def test_single_vectors_wired_into_items_stay_one_item_each() -> None:
    from graphmesh.orchestrator.ai.testing import FakeModelClient
    from graphmesh.orchestrator.catalog.ai import TextEmbeddingTask
    from graphmesh.orchestrator.catalog.similarity import SimilarityTask
    from graphmesh.orchestrator.graph import DataFlow, TaskGraph
    from graphmesh.orchestrator.runner import TaskGraphRunner

    def flow(source: str, port: str) -> DataFlow:
        return DataFlow(
            source_task=source, source_port="vector", target_task="rank", target_port=port
        )

    graph = TaskGraph(
        [
            TextEmbeddingTask(id="query", defaults={"text": "cats"}),
            TextEmbeddingTask(id="a", defaults={"text": "dogs"}),
            TextEmbeddingTask(id="b", defaults={"text": "cats"}),
            SimilarityTask(id="rank"),
        ],
        [flow("query", "query"), flow("a", "items"), flow("b", "items")],
    )
    result = await TaskGraphRunner(graph, models=FakeModelClient()).run()
    result.raise_for_status()
    assert result.outputs["rank"]["indices"] == [1, 0]
    assert len(result.outputs["rank"]["items"]) == 2
