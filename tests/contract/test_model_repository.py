"""ModelRepository contract: every backend behaves like the in-memory one.

Decided here: linking a task type to a model that was never saved raises ``ValueError``
(and stores nothing); links are a set (linking twice keeps one); saving a model again
replaces its info but keeps its links; deleting a model deletes its links.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

import pytest
from support.storage import StorageBackend

from graphmesh.orchestrator.ai.client import ModelInfo
from graphmesh.orchestrator.storage.base import ModelRepository

ModelCall = Callable[[ModelRepository], Awaitable[Any]]

MINILM = ModelInfo(
    name="hf:all-MiniLM-L6-v2",
    provider="hf",
    task_kinds=("embed",),
    dimensions=384,
    context_window=256,
    location="/models/minilm",
    params={"batch_size": 64, "pooling": {"mode": "mean", "normalize": True}},
)
SMOLLM = ModelInfo(
    name="hf:SmolLM2-135M-Instruct",
    provider="hf",
    task_kinds=("generate", "summarize", "translate"),
    context_window=8192,
)
GPT = ModelInfo(name="openai:gpt-4o", provider="openai", task_kinds=("generate",))


async def test_saved_model_reads_back_equal(models: ModelRepository) -> None:
    await models.save_model(MINILM)
    await models.save_model(GPT)
    assert await models.get_model(MINILM.name) == MINILM
    assert await models.get_model(GPT.name) == GPT


async def test_missing_model_is_none(models: ModelRepository) -> None:
    assert await models.get_model("hf:unknown") is None


async def test_results_are_copies(models: ModelRepository) -> None:
    await models.save_model(MINILM)
    loaded = await models.get_model(MINILM.name)
    assert loaded is not None
    loaded.params["pooling"]["mode"] = "cls"
    assert await models.get_model(MINILM.name) == MINILM


async def test_unicode_names_and_params(models: ModelRepository) -> None:
    model = ModelInfo(name="hf:モデル-ü", provider="hf", params={"prompt": "Résumé 🚀\n"})
    await models.save_model(model)
    await models.link_task("Zusammenfassen", model.name)
    assert await models.get_model(model.name) == model
    assert await models.models_for_task("Zusammenfassen") == [model]


async def test_list_is_sorted_by_name(models: ModelRepository) -> None:
    for model in (SMOLLM, GPT, MINILM):
        await models.save_model(model)
    # Code point order: "hf:S..." sorts before "hf:a...".
    assert await models.list_models() == [SMOLLM, MINILM, GPT]


async def test_saving_again_replaces_info_and_keeps_links(models: ModelRepository) -> None:
    await models.save_model(MINILM)
    await models.link_task("Embed", MINILM.name)
    changed = replace(MINILM, dimensions=768, params={})
    await models.save_model(changed)
    assert await models.get_model(MINILM.name) == changed
    assert await models.list_models() == [changed]
    assert await models.tasks_for_model(MINILM.name) == ["Embed"]


async def test_links_are_many_to_many(models: ModelRepository) -> None:
    for model in (MINILM, SMOLLM, GPT):
        await models.save_model(model)
    await models.link_task("Summarize", GPT.name)
    await models.link_task("Summarize", SMOLLM.name)
    await models.link_task("Translate", SMOLLM.name)
    await models.link_task("Embed", MINILM.name)
    assert await models.models_for_task("Summarize") == [SMOLLM, GPT]
    assert await models.tasks_for_model(SMOLLM.name) == ["Summarize", "Translate"]
    assert await models.models_for_task("Embed") == [MINILM]
    assert await models.tasks_for_model(GPT.name) == ["Summarize"]


async def test_linking_twice_keeps_one_link(models: ModelRepository) -> None:
    await models.save_model(GPT)
    await models.link_task("Generate", GPT.name)
    await models.link_task("Generate", GPT.name)
    assert await models.tasks_for_model(GPT.name) == ["Generate"]
    assert await models.models_for_task("Generate") == [GPT]


async def test_linking_an_unknown_model_raises(models: ModelRepository) -> None:
    with pytest.raises(ValueError, match="unknown model"):
        await models.link_task("Generate", "openai:never-saved")
    assert await models.tasks_for_model("openai:never-saved") == []
    assert await models.models_for_task("Generate") == []


async def test_unknown_names_have_no_links(models: ModelRepository) -> None:
    await models.save_model(GPT)
    assert await models.tasks_for_model(GPT.name) == []
    assert await models.models_for_task("NoSuchTask") == []


async def test_delete_says_whether_it_existed_and_drops_links(models: ModelRepository) -> None:
    await models.save_model(GPT)
    await models.save_model(SMOLLM)
    await models.link_task("Generate", GPT.name)
    await models.link_task("Generate", SMOLLM.name)
    assert await models.delete_model(GPT.name) is True
    assert await models.delete_model(GPT.name) is False
    assert await models.get_model(GPT.name) is None
    assert await models.list_models() == [SMOLLM]
    assert await models.models_for_task("Generate") == [SMOLLM]
    assert await models.tasks_for_model(GPT.name) == []
    await models.save_model(GPT)
    assert await models.tasks_for_model(GPT.name) == []


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda repo: repo.get_model(""), "name"),
        (lambda repo: repo.delete_model(None), "name"),
        (lambda repo: repo.link_task("", GPT.name), "task_type"),
        (lambda repo: repo.link_task("Generate", ""), "model"),
        (lambda repo: repo.models_for_task(1), "task_type"),
        (lambda repo: repo.tasks_for_model(""), "model"),
        (lambda repo: repo.save_model(replace(GPT, name="")), "model.name"),
    ],
    ids=["get", "delete", "link-task", "link-model", "models-for-task", "tasks-for-model", "save"],
)
async def test_bad_names_raise_value_error_naming_them(
    models: ModelRepository, call: ModelCall, argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        await call(models)


async def test_saving_something_else_is_refused(models: ModelRepository) -> None:
    with pytest.raises(TypeError, match="ModelInfo"):
        await models.save_model({"name": "x", "provider": "hf"})  # type: ignore[arg-type]


async def test_models_and_links_persist_across_reopen(persistent_storage: StorageBackend) -> None:
    async with persistent_storage.models() as first:
        await first.save_model(MINILM)
        await first.link_task("Embed", MINILM.name)
        async with persistent_storage.models() as second:
            assert await second.get_model(MINILM.name) == MINILM
            await second.save_model(GPT)
            await second.link_task("Generate", GPT.name)
        assert await first.models_for_task("Generate") == [GPT]
    async with persistent_storage.models() as reopened:
        assert await reopened.list_models() == [MINILM, GPT]
        assert await reopened.tasks_for_model(MINILM.name) == ["Embed"]
