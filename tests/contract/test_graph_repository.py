"""TaskGraphRepository contract: every backend behaves like the in-memory one."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from support.storage import StorageBackend

from graphmesh.orchestrator.storage.base import TaskGraphRepository

GraphCall = Callable[[TaskGraphRepository], Awaitable[Any]]

GRAPH = {
    "tasks": [
        {"id": "read", "type": "TextInput", "defaults": {"text": "Grüße, 世界"}, "config": {}},
        {
            "id": "summarise",
            "type": "Summarize",
            "defaults": {"model": "hf:smollm2"},
            "config": {"provenance": {"source": "unit"}},
            "subgraph": {"tasks": [], "dataflows": []},
        },
    ],
    "dataflows": [
        {
            "source_task": "read",
            "source_port": "text",
            "target_task": "summarise",
            "target_port": "text",
        }
    ],
}


async def test_saved_graph_reads_back_equal(graphs: TaskGraphRepository) -> None:
    await graphs.save_graph("pipeline", GRAPH)
    assert await graphs.get_graph("pipeline") == GRAPH


async def test_missing_graph_is_none(graphs: TaskGraphRepository) -> None:
    assert await graphs.get_graph("nope") is None


async def test_results_are_copies(graphs: TaskGraphRepository) -> None:
    graph = {"tasks": [{"id": "a", "type": "T"}], "dataflows": []}
    await graphs.save_graph("g", graph)
    graph["tasks"].append({"id": "b", "type": "T"})
    loaded = await graphs.get_graph("g")
    assert loaded is not None
    loaded["tasks"][0]["id"] = "changed"
    assert await graphs.get_graph("g") == {"tasks": [{"id": "a", "type": "T"}], "dataflows": []}


async def test_saving_again_overwrites(graphs: TaskGraphRepository) -> None:
    await graphs.save_graph("g", GRAPH)
    await graphs.save_graph("g", {"tasks": [], "dataflows": []})
    assert await graphs.get_graph("g") == {"tasks": [], "dataflows": []}
    assert await graphs.list_graphs() == ["g"]


async def test_list_is_sorted_by_code_point(graphs: TaskGraphRepository) -> None:
    ids = ["b", "a", "B", "é", "a-1", "a_1", "10", "9", "Z", "日本", "🚀"]
    for graph_id in ids:
        await graphs.save_graph(graph_id, {"tasks": [], "dataflows": []})
    assert await graphs.list_graphs() == sorted(ids)


async def test_delete_says_whether_the_graph_existed(graphs: TaskGraphRepository) -> None:
    await graphs.save_graph("g", GRAPH)
    await graphs.save_graph("h", GRAPH)
    assert await graphs.delete_graph("g") is True
    assert await graphs.delete_graph("g") is False
    assert await graphs.delete_graph("never") is False
    assert await graphs.get_graph("g") is None
    assert await graphs.list_graphs() == ["h"]


async def test_unicode_ids_and_values(graphs: TaskGraphRepository) -> None:
    await graphs.save_graph("グラフ/../ä", GRAPH)
    assert await graphs.get_graph("グラフ/../ä") == GRAPH
    assert await graphs.list_graphs() == ["グラフ/../ä"]


@pytest.mark.parametrize(
    "call",
    [
        lambda repo: repo.save_graph("", {}),
        lambda repo: repo.save_graph(None, {}),
        lambda repo: repo.get_graph(""),
        lambda repo: repo.get_graph(3),
        lambda repo: repo.delete_graph(""),
    ],
    ids=["save-empty", "save-none", "get-empty", "get-int", "delete-empty"],
)
async def test_bad_ids_raise_value_error_naming_them(
    graphs: TaskGraphRepository, call: GraphCall
) -> None:
    with pytest.raises(ValueError, match="graph_id"):
        await call(graphs)


async def test_non_object_graph_is_refused(graphs: TaskGraphRepository) -> None:
    with pytest.raises(TypeError, match="graph"):
        await graphs.save_graph("g", "not a graph")  # type: ignore[arg-type]
    assert await graphs.list_graphs() == []


async def test_graphs_persist_across_reopen(persistent_storage: StorageBackend) -> None:
    async with persistent_storage.graphs() as first:
        await first.save_graph("g", GRAPH)
        async with persistent_storage.graphs() as second:
            assert await second.get_graph("g") == GRAPH
            assert await second.delete_graph("g") is True
            await second.save_graph("h", GRAPH)
        assert await first.list_graphs() == ["h"]
    async with persistent_storage.graphs() as reopened:
        assert await reopened.get_graph("h") == GRAPH
        assert await reopened.get_graph("g") is None
