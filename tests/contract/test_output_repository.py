"""TaskOutputRepository contract: every backend behaves like the in-memory one."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from support.storage import StorageBackend

from graphmesh.orchestrator.storage.base import TaskOutputRepository

OutputCall = Callable[[TaskOutputRepository], Awaitable[Any]]

NESTED = {
    "text": "naïve café — 東京 🚀",
    "embedding": [0.25, -1.5, 3.0e-8],
    "nested": {"list": [1, [2, {"deep": None}]], "flag": True, "empty": {}},
    "big": 2**62,
}


async def test_saved_output_reads_back_equal(outputs: TaskOutputRepository) -> None:
    await outputs.save_output("Embed", "k1", {"vector": [1, 2, 3]})
    assert await outputs.get_output("Embed", "k1") == {"vector": [1, 2, 3]}


async def test_unicode_and_nested_values_round_trip(outputs: TaskOutputRepository) -> None:
    await outputs.save_output("Übersetzen", "ключ 🔑", NESTED)
    assert await outputs.get_output("Übersetzen", "ключ 🔑") == NESTED


async def test_values_are_stored_as_json(outputs: TaskOutputRepository) -> None:
    value: dict[Any, Any] = {"pair": (1, 2), 3: "int key"}
    await outputs.save_output("T", "k", value)
    assert await outputs.get_output("T", "k") == {"pair": [1, 2], "3": "int key"}


async def test_missing_output_is_none(outputs: TaskOutputRepository) -> None:
    await outputs.save_output("T", "k", {"a": 1})
    assert await outputs.get_output("T", "other") is None
    assert await outputs.get_output("Other", "k") is None


async def test_results_are_copies(outputs: TaskOutputRepository) -> None:
    original: dict[str, Any] = {"items": [1, 2], "inner": {"x": 1}}
    await outputs.save_output("T", "k", original)
    original["items"].append(99)
    first = await outputs.get_output("T", "k")
    assert first is not None
    first["inner"]["x"] = 42
    first["added"] = True
    assert await outputs.get_output("T", "k") == {"items": [1, 2], "inner": {"x": 1}}


async def test_saving_again_overwrites(outputs: TaskOutputRepository) -> None:
    await outputs.save_output("T", "k", {"v": 1})
    await outputs.save_output("T", "k", {"w": 2})
    assert await outputs.get_output("T", "k") == {"w": 2}
    assert await outputs.size() == 1


async def test_keys_are_scoped_by_task_type(outputs: TaskOutputRepository) -> None:
    await outputs.save_output("A", "k", {"from": "A"})
    await outputs.save_output("B", "k", {"from": "B"})
    assert await outputs.get_output("A", "k") == {"from": "A"}
    assert await outputs.get_output("B", "k") == {"from": "B"}
    assert await outputs.size() == 2


async def test_size_counts_outputs(outputs: TaskOutputRepository) -> None:
    assert await outputs.size() == 0
    for index in range(5):
        await outputs.save_output("A" if index % 2 else "B", f"k{index}", {"i": index})
    assert await outputs.size() == 5


async def test_clear_forgets_everything(outputs: TaskOutputRepository) -> None:
    await outputs.save_output("A", "k", {"v": 1})
    await outputs.save_output("B", "k", {"v": 2})
    await outputs.clear()
    assert await outputs.size() == 0
    assert await outputs.get_output("A", "k") is None
    await outputs.save_output("A", "k", {"v": 3})
    assert await outputs.get_output("A", "k") == {"v": 3}


async def test_clear_one_task_type_keeps_the_others(outputs: TaskOutputRepository) -> None:
    await outputs.save_output("A", "k1", {"v": 1})
    await outputs.save_output("A", "k2", {"v": 2})
    await outputs.save_output("B", "k1", {"v": 3})
    await outputs.clear("A")
    await outputs.clear("NeverSaved")
    assert await outputs.size() == 1
    assert await outputs.get_output("A", "k1") is None
    assert await outputs.get_output("B", "k1") == {"v": 3}


async def test_concurrent_saves_all_land(outputs: TaskOutputRepository) -> None:
    await asyncio.gather(*(outputs.save_output("T", f"k{i}", {"i": i}) for i in range(20)))
    assert await outputs.size() == 20
    assert await outputs.get_output("T", "k13") == {"i": 13}


@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda repo: repo.get_output("", "k"), "task_type"),
        (lambda repo: repo.get_output("T", ""), "key"),
        (lambda repo: repo.get_output(7, "k"), "task_type"),
        (lambda repo: repo.save_output("T", None, {}), "key"),
        (lambda repo: repo.save_output("", "k", {}), "task_type"),
        (lambda repo: repo.clear(""), "task_type"),
    ],
    ids=[
        "get-empty-type",
        "get-empty-key",
        "get-int-type",
        "save-none-key",
        "save-empty-type",
        "clear-empty-type",
    ],
)
async def test_bad_keys_raise_value_error_naming_them(
    outputs: TaskOutputRepository, call: OutputCall, argument: str
) -> None:
    with pytest.raises(ValueError, match=argument):
        await call(outputs)


async def test_values_json_cannot_hold_are_refused(outputs: TaskOutputRepository) -> None:
    with pytest.raises(TypeError, match="output"):
        await outputs.save_output("T", "k", ["not", "an", "object"])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await outputs.save_output("T", "k", {"x": float("nan")})
    with pytest.raises(ValueError, match="NUL"):
        await outputs.save_output("T", "k", {"x": "a\x00b"})
    assert await outputs.size() == 0


async def test_escaped_backslash_before_u0000_is_not_nul(outputs: TaskOutputRepository) -> None:
    await outputs.save_output("T", "k", {"x": "\\u0000"})
    assert await outputs.get_output("T", "k") == {"x": "\\u0000"}


async def test_outputs_persist_across_reopen(persistent_storage: StorageBackend) -> None:
    async with persistent_storage.outputs() as first:
        await first.save_output("T", "k", NESTED)
        async with persistent_storage.outputs() as second:
            assert await second.get_output("T", "k") == NESTED
            await second.save_output("T", "k2", {"from": "second"})
        assert await first.get_output("T", "k2") == {"from": "second"}
    async with persistent_storage.outputs() as reopened:
        assert await reopened.size() == 2
        assert await reopened.get_output("T", "k") == NESTED


async def test_all_repositories_share_one_location(persistent_storage: StorageBackend) -> None:
    async with (
        persistent_storage.outputs() as outputs,
        persistent_storage.graphs() as graphs,
        persistent_storage.models() as models,
    ):
        await outputs.save_output("T", "k", {"v": 1})
        await graphs.save_graph("g", {"tasks": [], "dataflows": []})
        assert await models.list_models() == []
        assert await graphs.list_graphs() == ["g"]
        assert await outputs.size() == 1
