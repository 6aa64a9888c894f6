"""Text model tasks run through the real runner against the in-memory FakeModelClient."""

from __future__ import annotations

import json
from typing import Any

import pytest

from graphmesh.orchestrator.ai.client import ModelClient, ModelError
from graphmesh.orchestrator.ai.testing import FakeModelClient, hash_embedding
from graphmesh.orchestrator.catalog import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL
from graphmesh.orchestrator.catalog.ai import (
    DownloadModelMultiModelTask,
    DownloadModelTask,
    TextEmbeddingMultiModelTask,
    TextEmbeddingMultiTextTask,
    TextEmbeddingTask,
    TextGenerationTask,
    TextQuestionAnswerTask,
    TextRewriterMultiPromptTask,
    TextRewriterTask,
    TextSummaryMultiTextTask,
    TextSummaryTask,
    TextTranslationMultiTargetTask,
    TextTranslationTask,
)
from graphmesh.orchestrator.graph import DataFlow, TaskGraph, graph_from_json, graph_to_json
from graphmesh.orchestrator.runner import RunnerEvent, RunStatus, TaskGraphRunner
from graphmesh.orchestrator.storage.memory import MemoryOutputRepository
from graphmesh.orchestrator.task import Task, TaskEvent


async def run_one(task: Task, models: FakeModelClient | None) -> dict[str, Any]:
    result = await TaskGraphRunner(TaskGraph([task]), models=models).run()
    result.raise_for_status()
    output = result.outputs[task.id]
    assert json.loads(json.dumps(output)) == output, "outputs must be plain JSON"
    return output


async def test_embedding_uses_the_default_model_and_returns_a_float_list() -> None:
    models = FakeModelClient(dimensions=12)
    output = await run_one(TextEmbeddingTask(defaults={"text": "hello"}), models)
    assert output == {"vector": hash_embedding("hello", 12)}
    assert all(isinstance(x, float) for x in output["vector"])
    assert [(c.method, c.model, c.args) for c in models.calls] == [
        ("embed", DEFAULT_EMBEDDING_MODEL, {"texts": ["hello"]})
    ]


async def test_multi_text_embedding_is_one_batched_call_in_order() -> None:
    models = FakeModelClient()
    texts = ["a", "b", "c"]
    output = await run_one(TextEmbeddingMultiTextTask(defaults={"text": texts}), models)
    assert output == {"vector": [hash_embedding(t, 8) for t in texts]}
    assert len(models.calls_to("embed")) == 1


async def test_multi_text_embedding_of_nothing_calls_no_model() -> None:
    models = FakeModelClient()
    output = await run_one(TextEmbeddingMultiTextTask(defaults={"text": []}), models)
    assert output == {"vector": []}
    assert models.calls == []


async def test_generation_passes_max_new_tokens() -> None:
    models = FakeModelClient()
    task = TextGenerationTask(defaults={"prompt": "one two three four", "max_new_tokens": 3})
    assert await run_one(task, models) == {"text": "generated: one two"}
    call = models.calls_to("generate")[0]
    assert (call.model, call.args["max_new_tokens"]) == (DEFAULT_CHAT_MODEL, 3)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        (
            TextQuestionAnswerTask(defaults={"question": "who?", "context": "Ada wrote it."}),
            {"answer": "answer(who?): Ada wrote it."},
        ),
        (
            TextRewriterTask(defaults={"prompt": "formal", "text": "hi"}),
            {"text": "rewrite[formal]: hi"},
        ),
        (TextSummaryTask(defaults={"text": "long text"}), {"text": "summary: long text"}),
        (TextTranslationTask(defaults={"text": "cat"}), {"text": "[en->fr] cat"}),
        (
            TextTranslationTask(defaults={"text": "cat", "source": "en", "target": "de"}),
            {"text": "[en->de] cat"},
        ),
        (DownloadModelTask(defaults={"model": "hf:tiny"}), {"model": "hf:tiny"}),
    ],
    ids=lambda value: value.type if isinstance(value, Task) else "",
)
async def test_text_tasks_call_their_model(task: Task, expected: dict[str, Any]) -> None:
    models = FakeModelClient()
    assert await run_one(task, models) == expected
    assert len(models.calls) == 1


async def test_a_model_can_be_chosen_per_task() -> None:
    models = FakeModelClient()
    await run_one(TextSummaryTask(defaults={"text": "x", "model": "openai:gpt-4o-mini"}), models)
    assert models.calls[0].model == "openai:gpt-4o-mini"


async def test_array_variants_run_once_per_value_in_order() -> None:
    models = FakeModelClient()
    summaries = TextSummaryMultiTextTask(defaults={"text": ["one", "two"]})
    assert await run_one(summaries, models) == {"text": ["summary: one", "summary: two"]}
    targets = TextTranslationMultiTargetTask(defaults={"text": "cat", "target": ["de", "es"]})
    assert await run_one(targets, models) == {"text": ["[en->de] cat", "[en->es] cat"]}
    rewrites = TextRewriterMultiPromptTask(defaults={"prompt": ["a", "b"], "text": "t"})
    assert await run_one(rewrites, models) == {"text": ["rewrite[a]: t", "rewrite[b]: t"]}


async def test_multi_model_variants_fan_out_over_models() -> None:
    models = FakeModelClient()
    embed = TextEmbeddingMultiModelTask(defaults={"model": ["hf:a", "hf:b"], "text": "x"})
    output = await run_one(embed, models)
    assert output == {"vector": [hash_embedding("x", 8)] * 2}
    assert [c.model for c in models.calls] == ["hf:a", "hf:b"]
    download = DownloadModelMultiModelTask(defaults={"model": ["hf:a", "openai:b"]})
    assert await run_one(download, models) == {"model": ["hf:a", "openai:b"]}


async def test_progress_is_reported_from_0_to_100() -> None:
    events: list[RunnerEvent] = []
    task = TextSummaryTask(id="sum", defaults={"text": "x"})
    runner = TaskGraphRunner(TaskGraph([task]), models=FakeModelClient(), listener=events.append)
    (await runner.run()).raise_for_status()
    progress = [e.progress for e in events if e.kind == TaskEvent.PROGRESS]
    assert progress == [0.0, 100.0]


async def test_without_a_model_client_the_task_fails_clearly() -> None:
    task = TextSummaryTask(id="sum", defaults={"text": "x"})
    result = await TaskGraphRunner(TaskGraph([task])).run()
    assert result.status == RunStatus.FAILED
    assert "no ModelClient" in (result.tasks["sum"].error or "")


async def test_a_model_error_fails_the_task_with_its_message() -> None:
    models = FakeModelClient(failures={"hf:broken": ModelError("model hf:broken is not loaded")})
    task = TextEmbeddingTask(id="emb", defaults={"text": "x", "model": "hf:broken"})
    result = await TaskGraphRunner(TaskGraph([task]), models=models).run()
    assert result.status == RunStatus.FAILED
    assert "model hf:broken is not loaded" in (result.tasks["emb"].error or "")


async def test_model_tasks_queue_by_provider() -> None:
    assert TextEmbeddingTask().queue_name({"model": "openai:text-embedding-3-small"}) == "openai"
    assert TextSummaryTask().queue_name({"model": DEFAULT_CHAT_MODEL}) == "hf"


async def test_model_outputs_are_cached_by_input() -> None:
    models = FakeModelClient()
    repository = MemoryOutputRepository()
    graph = TaskGraph([TextEmbeddingTask(id="emb", defaults={"text": "same"})])
    runner = TaskGraphRunner(graph, models=models, repository=repository)
    first = (await runner.run()).raise_for_status().outputs["emb"]
    second = (await runner.run()).raise_for_status().outputs["emb"]
    assert first == second
    assert len(models.calls) == 1


async def test_text_flows_from_summary_into_translation_and_round_trips_as_json() -> None:
    graph = TaskGraph(
        [TextSummaryTask(id="sum", defaults={"text": "story"}), TextTranslationTask(id="tr")],
        [DataFlow(source_task="sum", source_port="text", target_task="tr", target_port="text")],
    )
    copy = graph_from_json(graph_to_json(graph))
    result = await TaskGraphRunner(copy, models=FakeModelClient()).run()
    assert result.raise_for_status().output == {"text": "[en->fr] summary: story"}


def test_the_fake_is_a_model_client_with_stable_unit_embeddings() -> None:
    assert isinstance(FakeModelClient(), ModelClient)
    vector = hash_embedding("x", 16)
    assert vector == hash_embedding("x", 16) != hash_embedding("y", 16)
    assert sum(v * v for v in vector) == pytest.approx(1.0)
