"""Behaviours carried over from the seed framework, each as the seed documents it (and with
its input-check bug fixed)."""

from __future__ import annotations

from tasks import AddArray, AddOverA, Collect, Mutate, Needs, Recorder, Square, SquareArray

from graphmesh.orchestrator.graph import DataFlow, TaskGraph
from graphmesh.orchestrator.runner import TaskGraphRunner
from graphmesh.orchestrator.storage.memory import MemoryOutputRepository
from graphmesh.orchestrator.task import TaskEvent, TaskStatus


def df(source: str, target: str, source_port: str, target_port: str) -> DataFlow:
    return DataFlow(
        source_task=source, source_port=source_port, target_task=target, target_port=target_port
    )


async def test_array_task_squares_each_item() -> None:
    result = await TaskGraphRunner(
        TaskGraph([SquareArray(id="sq", defaults={"input": [6, 7]})])
    ).run()
    assert result.output == {"output": [36, 49]}
    assert result.tasks["sq"].status == TaskStatus.COMPLETED


def test_array_task_preview_squares_each_item() -> None:
    graph = TaskGraph([SquareArray(id="sq", defaults={"input": [6, 7]})])
    assert TaskGraphRunner(graph).run_reactive().output == {"output": [36, 49]}


async def test_array_task_runs_the_cartesian_product_of_its_array_inputs() -> None:
    graph = TaskGraph([AddArray(id="add", defaults={"a": [1, 2], "b": [10, 20, 30]})])
    result = await TaskGraphRunner(graph).run()
    assert result.output == {"sum": [11, 21, 31, 12, 22, 32]}
    assert AddArray.type == "TestAddMultiABTask"


async def test_array_task_over_one_of_two_inputs_keeps_the_other_fixed() -> None:
    graph = TaskGraph([AddOverA(id="add", defaults={"a": [1, 2], "b": 100})])
    result = await TaskGraphRunner(graph).run()
    assert result.output == {"sum": [101, 102]}


async def test_two_edges_into_an_array_port_append() -> None:
    graph = TaskGraph(
        [
            Square(id="three", defaults={"input": 3}),
            Square(id="four", defaults={"input": 4}),
            Collect(id="all"),
        ],
        [df("three", "all", "output", "items"), df("four", "all", "output", "items")],
    )
    result = await TaskGraphRunner(graph).run()
    assert result.outputs["all"] == {"items": [9, 16]}


async def test_edges_into_an_array_task_extend_its_items() -> None:
    graph = TaskGraph(
        [
            Collect(id="list", defaults={"items": [2, 3]}),
            Square(id="one", defaults={"input": 4}),
            SquareArray(id="sq"),
        ],
        [df("list", "sq", "items", "input"), df("one", "sq", "output", "input")],
    )
    assert (await TaskGraphRunner(graph).run()).output == {"output": [4, 9, 256]}


async def test_inputs_are_reset_between_runs() -> None:
    graph = TaskGraph(
        [Square(id="sq", defaults={"input": 2}), Mutate(id="m")],
        [df("sq", "m", "output", "items")],
    )
    runner = TaskGraphRunner(graph)
    outputs = [(await runner.run()).outputs["m"] for _ in range(3)]
    assert outputs == [{"items": [4, "mutated"], "options": {"seen": 1}}] * 3


async def test_cache_hit_skips_run_but_emits_events() -> None:
    repository = MemoryOutputRepository()
    graph = TaskGraph([Square(id="sq", defaults={"input": 5})])
    await TaskGraphRunner(graph, repository=repository).run()
    recorder = Recorder()
    result = await TaskGraphRunner(graph, repository=repository, listener=recorder).run()
    square = graph.get_task("sq")
    assert isinstance(square, Square)
    assert square.runs == 1
    assert result.output == {"output": 25}
    assert recorder.kinds("sq") == [TaskEvent.START, TaskEvent.PROGRESS, TaskEvent.COMPLETE]


def test_required_input_check_is_not_inverted() -> None:
    # The seed reported inputs that HAD a value and accepted those that had none.
    assert [(i.task_id, i.port) for i in TaskGraph([Needs(id="bare")]).validate()] == [
        ("bare", "text")
    ]
    assert TaskGraph([Needs(id="given", defaults={"text": "x"})]).validate() == []
    wired = TaskGraph(
        [Needs(id="src", defaults={"text": "x"}), Needs(id="dst")],
        [df("src", "dst", "text", "text")],
    )
    assert wired.validate() == []


async def test_a_preview_then_a_run_then_a_preview() -> None:
    graph = TaskGraph(
        [Square(id="a", defaults={"input": 3}), Square(id="b")], [df("a", "b", "output", "input")]
    )
    runner = TaskGraphRunner(graph)
    assert runner.run_reactive().outputs == {"a": {"output": 9}, "b": {"output": 81}}
    assert (await runner.run()).outputs == {"a": {"output": 9}, "b": {"output": 81}}
    assert runner.run_reactive().outputs == {"a": {"output": 9}, "b": {"output": 81}}
