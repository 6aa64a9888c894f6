"""TaskGraph: nodes and edges, order, layers, cycles and validation."""

from __future__ import annotations

import pytest
from tasks import Add, Collect, Compound, Echo, Empty, Handler, Needs, Square

from graphmesh.orchestrator.errors import GraphError, GraphIssue, GraphValidationError
from graphmesh.orchestrator.graph import ERROR_PORT, DataFlow, TaskGraph
from graphmesh.orchestrator.task import Task


def flow(
    source: str, target: str, source_port: str = "output", target_port: str = "input"
) -> DataFlow:
    return DataFlow(
        source_task=source, source_port=source_port, target_task=target, target_port=target_port
    )


def ids(tasks: list[Task]) -> list[str]:
    return [task.id for task in tasks]


def squares(*task_ids: str) -> list[Task]:
    return [Square(id=task_id) for task_id in task_ids]


# -- nodes and edges --------------------------------------------------------------------------


def test_add_get_and_remove_tasks() -> None:
    graph = TaskGraph()
    a = graph.add_task(Square(id="a"))
    graph.add_task(Square(id="b"))
    assert len(graph) == 2
    assert "a" in graph
    assert graph.get_task("a") is a
    assert graph.remove_task("a") is a
    assert "a" not in graph
    assert ids(graph.tasks) == ["b"]


def test_duplicate_task_id_is_an_error() -> None:
    graph = TaskGraph([Square(id="a")])
    with pytest.raises(GraphError, match="duplicate task id 'a'"):
        graph.add_task(Add(id="a"))
    assert isinstance(graph.get_task("a"), Square)


def test_unknown_task_id_is_an_error() -> None:
    with pytest.raises(GraphError, match="no task with id 'x'"):
        TaskGraph().get_task("x")
    with pytest.raises(GraphError, match="no task with id 'x'"):
        TaskGraph().remove_task("x")


def test_dataflows_are_indexed_both_ways() -> None:
    graph = TaskGraph(squares("a", "b", "c"), [flow("a", "b"), flow("a", "c")])
    assert graph.outgoing("a") == [flow("a", "b"), flow("a", "c")]
    assert graph.incoming("b") == [flow("a", "b")]
    assert graph.dataflows == [flow("a", "b"), flow("a", "c")]
    assert str(flow("a", "b")) == "a.output -> b.input"


def test_adding_the_same_dataflow_twice_keeps_one() -> None:
    graph = TaskGraph(squares("a", "b"), [flow("a", "b")])
    graph.add_dataflow(flow("a", "b"))
    assert graph.dataflows == [flow("a", "b")]
    assert graph.incoming("b") == [flow("a", "b")]


def test_dataflow_to_unknown_task_is_an_error() -> None:
    graph = TaskGraph(squares("a"))
    with pytest.raises(GraphError, match="unknown task 'ghost'"):
        graph.add_dataflow(flow("a", "ghost"))
    with pytest.raises(GraphError, match="unknown task 'ghost'"):
        graph.add_dataflow(flow("ghost", "a"))
    assert graph.dataflows == []


def test_remove_dataflow() -> None:
    graph = TaskGraph(squares("a", "b"), [flow("a", "b")])
    graph.remove_dataflow(flow("a", "b"))
    assert graph.dataflows == []
    assert graph.outgoing("a") == [] and graph.incoming("b") == []
    with pytest.raises(GraphError, match=r"no dataflow a\.output -> b\.input"):
        graph.remove_dataflow(flow("a", "b"))


def test_removing_a_task_removes_its_dataflows() -> None:
    graph = TaskGraph(squares("a", "b", "c"), [flow("a", "b"), flow("b", "c"), flow("a", "c")])
    graph.remove_task("b")
    assert graph.dataflows == [flow("a", "c")]
    assert graph.outgoing("a") == [flow("a", "c")]
    assert graph.incoming("c") == [flow("a", "c")]


def test_removing_a_task_with_a_self_loop() -> None:
    graph = TaskGraph(squares("a", "b"), [flow("a", "a"), flow("a", "b")])
    graph.remove_task("a")
    assert graph.dataflows == []
    assert graph.incoming("b") == []


def test_roots_and_sinks() -> None:
    graph = TaskGraph(squares("a", "b", "c", "lonely"), [flow("a", "b"), flow("b", "c")])
    assert ids(graph.roots()) == ["a", "lonely"]
    assert ids(graph.sinks()) == ["c", "lonely"]


# -- order ------------------------------------------------------------------------------------


def test_topological_order_is_stable_by_insertion_order() -> None:
    graph = TaskGraph(
        squares("z", "y", "x", "w"),
        [flow("x", "z"), flow("w", "y")],
    )
    assert ids(graph.topological_order()) == ["x", "w", "z", "y"]
    assert ids(graph.topological_order()) == ["x", "w", "z", "y"]


def test_topological_order_respects_every_edge() -> None:
    tasks = squares(*"fedcba")
    edges = [flow("a", "c"), flow("b", "c"), flow("c", "d"), flow("b", "e"), flow("e", "f")]
    order = ids(TaskGraph(tasks, edges).topological_order())
    assert sorted(order) == sorted("abcdef")
    for edge in edges:
        assert order.index(edge.source_task) < order.index(edge.target_task)


def test_two_edges_between_the_same_tasks_count_once() -> None:
    graph = TaskGraph(
        [Add(id="both"), Square(id="src")],
        [flow("src", "both", target_port="a"), flow("src", "both", target_port="b")],
    )
    assert ids(graph.topological_order()) == ["src", "both"]


def test_layers_group_by_depth() -> None:
    graph = TaskGraph(
        squares("a", "b", "c", "d", "e"),
        [flow("a", "c"), flow("b", "c"), flow("c", "d"), flow("a", "e")],
    )
    # Within a layer, tasks keep their (stable) topological order.
    assert [ids(layer) for layer in graph.layers()] == [["a", "b"], ["e", "c"], ["d"]]
    assert TaskGraph().layers() == []


def test_cycle_names_the_tasks_on_it_and_not_those_downstream() -> None:
    graph = TaskGraph(
        squares("entry", "a", "b", "after"),
        [flow("entry", "a"), flow("a", "b"), flow("b", "a"), flow("b", "after")],
    )
    with pytest.raises(GraphValidationError) as info:
        graph.topological_order()
    [issue] = info.value.issues
    assert issue.code == "cycle"
    assert issue.message == "the graph has a cycle through tasks 'a', 'b'"
    assert issue.task_id == "a"


def test_self_loop_is_a_cycle() -> None:
    graph = TaskGraph(squares("a"), [flow("a", "a")])
    with pytest.raises(GraphValidationError, match="cycle through tasks 'a'"):
        graph.layers()


def test_validate_reports_cycles() -> None:
    graph = TaskGraph(squares("a", "b"), [flow("a", "b"), flow("b", "a")])
    assert [issue.code for issue in graph.validate()] == ["cycle"]


# -- validation -------------------------------------------------------------------------------


def codes(issues: list[GraphIssue]) -> list[tuple[str, str | None, str | None]]:
    return [(issue.code, issue.task_id, issue.port) for issue in issues]


def test_a_valid_graph_has_no_issues() -> None:
    graph = TaskGraph(squares("a", "b"), [flow("a", "b")])
    assert graph.validate() == []
    assert graph.check() is graph


def test_unknown_input_port() -> None:
    graph = TaskGraph(squares("a", "b"), [flow("a", "b", target_port="nope")])
    [issue] = graph.validate()
    assert codes([issue]) == [("unknown_input_port", "b", "nope")]
    assert issue.message == "task 'b' (TestSquare) has no input port 'nope'"


def test_unknown_output_port() -> None:
    graph = TaskGraph(squares("a", "b"), [flow("a", "b", source_port="nope")])
    [issue] = graph.validate()
    assert codes([issue]) == [("unknown_output_port", "a", "nope")]
    assert issue.message == "task 'a' (TestSquare) has no output port 'nope'"


def test_type_mismatch_names_both_ends() -> None:
    graph = TaskGraph(
        [Needs(id="text"), Square(id="num")],
        [DataFlow(source_task="text", source_port="text", target_task="num", target_port="input")],
    )
    issues = graph.validate()
    assert ("type_mismatch", "num", "input") in codes(issues)
    message = next(i.message for i in issues if i.code == "type_mismatch")
    assert "'text'" in message and "'num'" in message
    assert "text" in message and "number" in message


def test_any_and_integer_to_number_connect() -> None:
    graph = TaskGraph(
        [Echo(id="any"), Square(id="sq")],
        [DataFlow(source_task="any", source_port="value", target_task="sq", target_port="input")],
    )
    assert graph.validate() == []


def test_required_input_with_neither_default_nor_dataflow_is_reported() -> None:
    [issue] = TaskGraph([Needs(id="n")]).validate()
    assert codes([issue]) == [("missing_input", "n", "text")]
    assert "'n'" in issue.message and "'text'" in issue.message


def test_required_input_with_a_default_is_not_reported() -> None:
    assert TaskGraph([Needs(id="n", defaults={"text": "hi"})]).validate() == []
    assert TaskGraph([Needs(id="n", defaults={"text": None})]).validate() == []


def test_required_input_with_a_dataflow_is_not_reported() -> None:
    graph = TaskGraph(
        [Needs(id="src", defaults={"text": "hi"}), Needs(id="n")],
        [DataFlow(source_task="src", source_port="text", target_task="n", target_port="text")],
    )
    assert graph.validate() == []


def test_optional_inputs_and_port_defaults_are_not_reported() -> None:
    assert TaskGraph([Echo(id="e"), Square(id="s"), Collect(id="c")]).validate() == []


def test_every_issue_is_reported_and_names_task_and_port() -> None:
    graph = TaskGraph(
        [Add(id="add"), Needs(id="needs"), Empty(id="empty"), Square(id="sq")],
        [
            DataFlow(
                source_task="empty", source_port="output", target_task="sq", target_port="input"
            ),
            DataFlow(source_task="empty", source_port="ghost", target_task="add", target_port="a"),
            DataFlow(source_task="sq", source_port="output", target_task="needs", target_port="zz"),
        ],
    )
    issues = graph.validate()
    assert sorted(codes(issues), key=str) == sorted(
        [
            ("type_mismatch", "sq", "input"),
            ("unknown_output_port", "empty", "ghost"),
            ("unknown_input_port", "needs", "zz"),
            ("missing_input", "add", "b"),
            ("missing_input", "needs", "text"),
        ],
        key=str,
    )
    for issue in issues:
        assert issue.task_id is not None and issue.port is not None
        assert issue.task_id in issue.message and issue.port in issue.message
    with pytest.raises(GraphValidationError) as info:
        graph.check()
    assert info.value.issues == tuple(issues)
    assert str(info.value).startswith("invalid graph: ")


def test_error_port_needs_no_output_port_but_its_target_port_must_exist() -> None:
    graph = TaskGraph(
        [Square(id="sq"), Handler(id="h"), Handler(id="h2")],
        [
            DataFlow(
                source_task="sq", source_port=ERROR_PORT, target_task="h", target_port="error"
            ),
            DataFlow(
                source_task="sq", source_port=ERROR_PORT, target_task="h2", target_port="nope"
            ),
        ],
    )
    assert codes(graph.validate()) == [
        ("unknown_input_port", "h2", "nope"),
        ("missing_input", "h2", "error"),
    ]
    assert graph.dataflows[0].carries_error
    assert graph.roots() == [graph.get_task("sq")]


# -- compound tasks ---------------------------------------------------------------------------


def test_compound_ports_follow_its_subgraph() -> None:
    inner = TaskGraph(
        [Add(id="add"), Square(id="sq"), Echo(id="out")],
        [
            DataFlow(source_task="add", source_port="sum", target_task="out", target_port="value"),
            DataFlow(
                source_task="sq", source_port="output", target_task="out", target_port="value"
            ),
        ],
    )
    compound = Compound(id="c", subgraph=inner)
    assert sorted(port.id for port in compound.input_ports) == ["a", "b", "input"]
    assert [port.id for port in compound.output_ports] == ["value"]
    assert compound.input_port("a") is not None
    assert compound.output_port("nope") is None


def test_compound_ports_see_tasks_added_to_its_subgraph_later() -> None:
    compound = Compound(id="c")
    compound.subgraph.add_task(Collect(id="collect"))
    compound.reset_input()
    compound.add_input("items", 1)
    compound.add_input("items", 2)
    assert compound.run_input == {"items": [1, 2]}  # an array port, so both were kept
