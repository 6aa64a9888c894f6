"""The catalog registers every task type and describes each as JSON for no-code clients."""

from __future__ import annotations

import json
from typing import Any

import pytest

from graphmesh.orchestrator import catalog
from graphmesh.orchestrator.catalog import catalog_entries, task_entry
from graphmesh.orchestrator.catalog.ai import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL
from graphmesh.orchestrator.task import default_registry

SEED_TYPES = [
    "DownloadModelTask",
    "TextEmbeddingTask",
    "TextGenerationTask",
    "TextQuestionAnswerTask",
    "TextRewriterTask",
    "TextSummaryTask",
    "TextTranslationTask",
    "DebugLogTask",
    "LambdaTask",
    "JavaScriptTask",
]
OTHER_TYPES = [
    "JsonTask",
    "SimilarityTask",
    "DocumentSplitterTask",
    "FileReadTask",
    "FileWriteTask",
    "SqliteQueryTask",
    "SqliteInsertTask",
    "PostgresQueryTask",
    "PostgresInsertTask",
    "TextEmbeddingMultiModelTask",
    "TextEmbeddingMultiTextTask",
    "TextSummaryMultiTextTask",
    "TextRewriterMultiModelTask",
]


def entries_by_type() -> dict[str, dict[str, Any]]:
    return {entry["type"]: entry for entry in catalog_entries()}


@pytest.mark.parametrize("task_type", SEED_TYPES + OTHER_TYPES)
def test_importing_the_catalog_registers_the_type(task_type: str) -> None:
    assert catalog is not None
    assert task_type in default_registry
    assert task_type in entries_by_type()


def test_entries_are_json_and_complete() -> None:
    entries = catalog_entries()
    assert json.loads(json.dumps(entries)) == entries
    for entry in entries:
        assert set(entry) == {
            "type", "category", "description", "side_effects", "cacheable", "kind",
            "inputs", "outputs",
        }  # fmt: skip
        assert entry["description"], f"{entry['type']} needs a description"
        for port in [*entry["inputs"], *entry["outputs"]]:
            assert set(port) == {
                "id", "name", "value_type", "json_schema", "is_array", "required", "default",
            }  # fmt: skip


def test_an_entry_describes_ports_with_json_schema() -> None:
    entry = entries_by_type()["TextEmbeddingTask"]
    assert entry["category"] == "Text Model"
    assert entry["kind"] == "job_queue"
    assert entry["side_effects"] is False
    model, text = entry["inputs"]
    assert model == {
        "id": "model",
        "name": "Model",
        "value_type": "model",
        "json_schema": {
            "type": "string",
            "description": "routed model name, e.g. hf:all-MiniLM-L6-v2",
            "default": DEFAULT_EMBEDDING_MODEL,
        },
        "is_array": False,
        "required": False,
        "default": DEFAULT_EMBEDDING_MODEL,
    }
    assert (text["id"], text["required"], text["default"]) == ("text", True, None)
    assert entry["outputs"][0]["json_schema"] == {"type": "array", "items": {"type": "number"}}


def test_side_effect_tasks_say_so() -> None:
    entries = entries_by_type()
    for task_type in ["DebugLogTask", "FileWriteTask", "SqliteInsertTask", "PostgresInsertTask"]:
        assert entries[task_type]["side_effects"] is True
        assert entries[task_type]["cacheable"] is False
    assert entries["LambdaTask"]["cacheable"] is False


def test_chat_tasks_default_to_the_packaged_chat_model() -> None:
    entry = task_entry(default_registry.get("TextSummaryTask"))
    assert entry["inputs"][0]["default"] == DEFAULT_CHAT_MODEL
