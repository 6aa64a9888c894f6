"""Graph JSON and dependency JSON: round trips and every way a document can be malformed."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tasks import Add, Collect, Compound, Echo, Handler, Square, SquareArray

from graphmesh.orchestrator.errors import GraphValidationError
from graphmesh.orchestrator.graph import (
    ERROR_PORT,
    DataFlow,
    TaskGraph,
    graph_from_dependency_json,
    graph_from_json,
    graph_to_dependency_json,
    graph_to_json,
    loads_graph,
)
from graphmesh.orchestrator.task import TaskRegistry, TaskStatus


def df(source: str, source_port: str, target: str, target_port: str) -> DataFlow:
    return DataFlow(
        source_task=source, source_port=source_port, target_task=target, target_port=target_port
    )


def nested_graph() -> TaskGraph:
    """Two levels of compound tasks, an array task, an error edge and non-trivial JSON."""
    innermost = TaskGraph([Square(id="deep", defaults={"input": 2})])
    inner = TaskGraph(
        [Compound(id="level2", subgraph=innermost), Echo(id="echo", config={"name": "Echo"})],
        [df("level2", "output", "echo", "value")],
    )
    return TaskGraph(
        [
            Square(id="a", defaults={"input": 3}, config={"name": "first", "provenance": {"s": 1}}),
            Square(id="b", config={"timeout": 2.5, "nested": {"z": [1, {"y": None}]}}),
            Collect(id="collect", defaults={"items": ["x"]}),
            Compound(id="level1", subgraph=inner),
            SquareArray(id="many", defaults={"input": [6, 7]}),
            Handler(id="on_error"),
        ],
        [
            df("a", "output", "collect", "items"),
            df("b", "output", "collect", "items"),
            df("a", ERROR_PORT, "on_error", "error"),
        ],
    )


# -- graph JSON -------------------------------------------------------------------------------


def test_to_json_shape() -> None:
    graph = TaskGraph(
        [Square(id="a", defaults={"input": 3}), Square(id="b", config={"name": "B"})],
        [df("a", "output", "b", "input")],
    )
    assert graph_to_json(graph) == {
        "tasks": [
            {"id": "a", "type": "TestSquare", "defaults": {"input": 3}, "config": {}},
            {"id": "b", "type": "TestSquare", "defaults": {}, "config": {"name": "B"}},
        ],
        "dataflows": [
            {
                "source_task": "a",
                "source_port": "output",
                "target_task": "b",
                "target_port": "input",
            }
        ],
    }


def test_compound_tasks_carry_their_subgraph_and_array_tasks_do_not() -> None:
    data = graph_to_json(nested_graph())
    by_id = {task["id"]: task for task in data["tasks"]}
    level1 = by_id["level1"]["subgraph"]
    assert [task["id"] for task in level1["tasks"]] == ["level2", "echo"]
    assert level1["tasks"][0]["subgraph"]["tasks"][0]["id"] == "deep"
    assert "subgraph" not in by_id["many"]
    assert "subgraph" not in by_id["a"]


def test_round_trip_through_graph_json() -> None:
    original = nested_graph()
    data = graph_to_json(original)
    loaded = graph_from_json(data)
    assert graph_to_json(loaded) == data
    assert [type(task) for task in loaded] == [type(task) for task in original]
    level1 = loaded.get_task("level1")
    assert isinstance(level1, Compound)
    level2 = level1.subgraph.get_task("level2")
    assert isinstance(level2, Compound)
    assert level2.subgraph.get_task("deep").defaults == {"input": 2}


def test_round_trip_through_json_text() -> None:
    data = graph_to_json(nested_graph())
    assert graph_to_json(loads_graph(json.dumps(data))) == data
    assert graph_to_json(loads_graph(json.dumps(data).encode())) == data


def test_loaded_graph_shares_nothing_with_the_document() -> None:
    data = graph_to_json(nested_graph())
    loaded = graph_from_json(data)
    data["tasks"][0]["defaults"]["input"] = 99
    assert loaded.get_task("a").defaults == {"input": 3}


def test_to_json_refuses_values_that_are_not_json() -> None:
    graph = TaskGraph([Echo(id="e", defaults={"value": object()})])
    with pytest.raises(GraphValidationError) as info:
        graph_to_json(graph)
    [issue] = info.value.issues
    assert issue.code == "not_json"
    assert issue.task_id == "e"
    assert "task 'e' (TestEcho) defaults are not JSON" in issue.message


@pytest.mark.parametrize("what", ["defaults", "config"])
@pytest.mark.parametrize("value", [object(), {1, 2}, [object()], {"nested": object()}])
def test_to_json_refuses_flat_and_nested_values_that_are_not_json(what: str, value: Any) -> None:
    graph = TaskGraph([Echo(id="e", **{what: {"value": value}})])
    with pytest.raises(GraphValidationError) as info:
        graph_to_json(graph)
    [issue] = info.value.issues
    assert (issue.code, issue.task_id) == ("not_json", "e")
    assert f"task 'e' (TestEcho) {what} are not JSON" in issue.message


def test_to_json_gives_what_json_text_would_and_shares_nothing_with_the_graph() -> None:
    flat = {"s": "x", "i": 1, "f": 2.5, "b": True, "n": None}
    odd = {1: (1, 2), "status": TaskStatus.PENDING}
    graph = TaskGraph([Echo(id="e", defaults=flat, config={"odd": odd})])
    [task] = graph_to_json(graph)["tasks"]
    assert task["defaults"] == flat
    assert task["config"] == json.loads(json.dumps({"odd": odd}))
    assert type(task["config"]["odd"]["status"]) is str
    task["defaults"]["s"] = "changed"
    task["config"]["odd"]["1"].append(3)
    assert graph.get_task("e").defaults == flat
    assert graph.get_task("e").config == {"odd": odd}


def test_loading_uses_the_given_registry() -> None:
    registry = TaskRegistry()
    registry.register(Square)
    doc = {"tasks": [{"id": "s", "type": "TestSquare"}, {"id": "x", "type": "TestAdd"}]}
    with pytest.raises(GraphValidationError, match="unknown task type 'TestAdd'"):
        graph_from_json(doc, registry)
    assert isinstance(graph_from_json(doc).get_task("x"), Add)


def test_empty_graph_and_missing_optional_fields() -> None:
    assert len(graph_from_json({"tasks": []})) == 0
    graph = graph_from_json({"tasks": [{"id": "c", "type": "TestCompound"}]})
    compound = graph.get_task("c")
    assert isinstance(compound, Compound)
    assert len(compound.subgraph) == 0
    assert compound.defaults == {} and compound.config == {}


# -- dependency JSON --------------------------------------------------------------------------


def dependency_graph() -> TaskGraph:
    # Dataflows grouped by target in task order, which is the order dependency JSON keeps.
    inner = TaskGraph([Square(id="inner", defaults={"input": 5})])
    return TaskGraph(
        [
            Square(id="a", defaults={"input": 3}, config={"name": "first", "provenance": {"s": 1}}),
            Square(id="b", config={"timeout": 1}),
            Collect(id="collect"),
            Compound(id="comp", subgraph=inner),
            Handler(id="on_error"),
        ],
        [
            df("a", "output", "b", "input"),
            df("a", "output", "collect", "items"),
            df("b", "output", "collect", "items"),
            df("b", ERROR_PORT, "on_error", "error"),
        ],
    )


def test_dependency_json_shape() -> None:
    items = graph_to_dependency_json(dependency_graph())
    assert items == [
        {
            "id": "a",
            "type": "TestSquare",
            "input": {"input": 3},
            "name": "first",
            "provenance": {"s": 1},
        },
        {
            "id": "b",
            "type": "TestSquare",
            "input": {},
            "config": {"timeout": 1},
            "dependencies": {"input": {"id": "a", "output": "output"}},
        },
        {
            "id": "collect",
            "type": "TestCollect",
            "input": {},
            "dependencies": {
                "items": [{"id": "a", "output": "output"}, {"id": "b", "output": "output"}]
            },
        },
        {
            "id": "comp",
            "type": "TestCompound",
            "input": {},
            "subtasks": [{"id": "inner", "type": "TestSquare", "input": {"input": 5}}],
        },
        {
            "id": "on_error",
            "type": "TestHandler",
            "input": {},
            "dependencies": {"error": {"id": "b", "output": ERROR_PORT}},
        },
    ]


def test_dependency_json_round_trip() -> None:
    original = dependency_graph()
    items = graph_to_dependency_json(original)
    loaded = graph_from_dependency_json(json.loads(json.dumps(items)))
    assert graph_to_json(loaded) == graph_to_json(original)
    assert graph_to_dependency_json(loaded) == items


def test_graph_from_json_accepts_dependency_json() -> None:
    items = graph_to_dependency_json(dependency_graph())
    assert graph_to_json(graph_from_json(items)) == graph_to_json(dependency_graph())
    assert graph_to_json(loads_graph(json.dumps(items))) == graph_to_json(dependency_graph())


def test_dependency_json_round_trips_any_dataflow_order() -> None:
    original = nested_graph()
    loaded = graph_from_dependency_json(graph_to_dependency_json(original))
    reloaded = graph_to_json(loaded)
    expected = graph_to_json(original)
    assert reloaded["tasks"] == expected["tasks"]
    assert sorted(map(str, loaded.dataflows)) == sorted(map(str, original.dataflows))


# -- malformed documents ----------------------------------------------------------------------


def issues_of(data: Any) -> list[str]:
    with pytest.raises(GraphValidationError) as info:
        graph_from_json(data)
    return [issue.message for issue in info.value.issues]


TASK = {"id": "a", "type": "TestSquare"}
FLOW = {"source_task": "a", "source_port": "output", "target_task": "a", "target_port": "input"}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (42, "the graph must be a JSON object with 'tasks'"),
        ("a string", "the graph must be a JSON object with 'tasks'"),
        (None, "the graph must be a JSON object with 'tasks'"),
        ({}, "the graph must be a JSON object with 'tasks'"),
        ({"task": [TASK]}, "the graph must be a JSON object with 'tasks'"),
        ({"tasks": {"a": TASK}}, "'tasks' must be a list"),
        ({"tasks": [TASK], "dataflows": {}}, "'dataflows' must be a list"),
        ({"tasks": [5]}, "tasks[0] must be an object"),
        ({"tasks": [{"type": "TestSquare"}]}, "tasks[0] needs a non-empty string 'id'"),
        (
            {"tasks": [TASK, {"id": "", "type": "TestSquare"}]},
            "tasks[1] needs a non-empty string 'id'",
        ),
        ({"tasks": [{"id": 7, "type": "TestSquare"}]}, "tasks[0] needs a non-empty string 'id'"),
        ({"tasks": [{"id": "a"}]}, "task 'a' needs a non-empty string 'type'"),
        ({"tasks": [{"id": "a", "type": 3}]}, "task 'a' needs a non-empty string 'type'"),
        ({"tasks": [{**TASK, "defaults": [1]}]}, "task 'a': 'defaults' must be an object"),
        ({"tasks": [{**TASK, "config": "x"}]}, "task 'a': 'config' must be an object"),
        ({"tasks": [TASK, TASK]}, "duplicate task id 'a'"),
        (
            {"tasks": [TASK], "dataflows": [7]},
            "dataflows[0] must be an object with string fields "
            "source_task, source_port, target_task, target_port",
        ),
        (
            {"tasks": [TASK], "dataflows": [{**FLOW, "target_port": None}]},
            "dataflows[0] must be an object with string fields",
        ),
        (
            {
                "tasks": [TASK],
                "dataflows": [FLOW, {k: v for k, v in FLOW.items() if k != "source_task"}],
            },
            "dataflows[1] must be an object with string fields",
        ),
        (
            {"tasks": [TASK], "dataflows": [{**FLOW, "target_task": "ghost"}]},
            "dataflow a.output -> ghost.input names unknown task 'ghost'",
        ),
        (
            {"tasks": [TASK], "dataflows": [{**FLOW, "source_task": "ghost"}]},
            "dataflow ghost.output -> a.input names unknown task 'ghost'",
        ),
    ],
)
def test_malformed_graph_json(data: Any, message: str) -> None:
    messages = issues_of(data)
    assert len(messages) == 1, messages
    assert message in messages[0]


def test_unknown_type_names_the_task_and_the_type() -> None:
    with pytest.raises(GraphValidationError) as info:
        graph_from_json({"tasks": [{"id": "a", "type": "NoSuchTask"}]})
    [issue] = info.value.issues
    assert issue.code == "unknown_type"
    assert issue.task_id == "a"
    assert issue.message.startswith("task 'a': unknown task type 'NoSuchTask'")


def test_every_problem_is_listed_at_once() -> None:
    doc = {
        "tasks": [
            5,
            {"id": "a"},
            {"id": "b", "type": "NoSuchTask"},
            {"id": "c", "type": "TestSquare"},
            {"id": "c", "type": "TestSquare"},
            {"id": "d", "type": "TestSquare", "defaults": "x"},
        ],
        "dataflows": [
            {"source_task": "c"},
            {**FLOW, "source_task": "c", "target_task": "ghost"},
        ],
    }
    messages = issues_of(doc)
    assert len(messages) == 7, messages
    for fragment in [
        "tasks[0] must be an object",
        "task 'a' needs a non-empty string 'type'",
        "unknown task type 'NoSuchTask'",
        "duplicate task id 'c'",
        "task 'd': 'defaults' must be an object",
        "dataflows[0] must be an object",
        "names unknown task 'ghost'",
    ]:
        assert any(fragment in message for message in messages), fragment
    with pytest.raises(GraphValidationError) as info:
        graph_from_json(doc)
    assert str(info.value).count(";") == 6  # one message joining all seven


def test_problems_inside_a_subgraph_say_where_they_are() -> None:
    doc = {
        "tasks": [
            {
                "id": "outer",
                "type": "TestCompound",
                "subgraph": {"tasks": [{"id": "x", "type": "NoSuchTask"}, 4]},
            }
        ]
    }
    messages = issues_of(doc)
    assert len(messages) == 2
    assert all(message.startswith("in subgraph of 'outer': ") for message in messages)
    with pytest.raises(GraphValidationError) as info:
        graph_from_json(doc)
    assert info.value.issues[0].task_id == "x"


def test_invalid_json_text() -> None:
    with pytest.raises(GraphValidationError) as info:
        loads_graph('{"tasks": [')
    [issue] = info.value.issues
    assert issue.code == "bad_shape"
    assert issue.message.startswith("graph is not valid JSON: ")
    with pytest.raises(GraphValidationError, match="graph is not valid JSON"):
        loads_graph(b"\xff\xfe not json")


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([7], "dependency-JSON item 0 must be an object"),
        ([TASK, "b"], "dependency-JSON item 1 must be an object"),
        ([{**TASK, "dependencies": ["a"]}], "task 'a': 'dependencies' must be an object"),
        (
            [{**TASK, "dependencies": {"input": "a"}}],
            "task 'a': the source of input 'input' must be an object with 'id' and 'output'",
        ),
        ([{"id": "c", "type": "TestCompound", "subtasks": {"x": 1}}], "'subtasks' must be a list"),
        ([{"id": "a"}], "task 'a' needs a non-empty string 'type'"),
        (
            [{**TASK, "dependencies": {"input": {"id": "ghost", "output": "output"}}}],
            "names unknown task 'ghost'",
        ),
        (
            [{**TASK, "dependencies": {"input": {"id": "a"}}}],
            "must be an object with string fields",
        ),
        (
            [{"id": "c", "type": "TestCompound", "subtasks": [{"id": "x", "type": "Nope"}]}],
            "in subgraph of 'c': task 'x': unknown task type 'Nope'",
        ),
    ],
)
def test_malformed_dependency_json(items: list[Any], message: str) -> None:
    messages = issues_of(items)
    assert len(messages) == 1, messages
    assert message in messages[0]


def test_dependency_json_lists_every_problem() -> None:
    items = [7, {"id": "a", "type": "Nope"}, {**TASK, "id": "b", "dependencies": {"input": 1}}]
    messages = issues_of(items)
    assert len(messages) == 3, messages
