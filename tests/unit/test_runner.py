"""TaskGraphRunner on successful runs: scheduling, inputs, provenance, cache, reactive, events."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest
from tasks import (
    Add,
    Collect,
    Compound,
    Echo,
    Gate,
    Mutate,
    Needs,
    Progress,
    Queued,
    Recorder,
    Signals,
    Sink,
    Square,
    SquareArray,
    SquareV2,
)

from graphmesh.orchestrator.errors import GraphValidationError
from graphmesh.orchestrator.graph import DataFlow, TaskGraph
from graphmesh.orchestrator.runner import (
    Handler,
    RunStatus,
    TaskCall,
    TaskGraphRunner,
    cache_key,
    canonical_json,
    is_cacheable,
)
from graphmesh.orchestrator.storage.memory import MemoryOutputRepository
from graphmesh.orchestrator.task import TaskEvent, TaskOutput, TaskStatus

START, PROGRESS, COMPLETE = TaskEvent.START, TaskEvent.PROGRESS, TaskEvent.COMPLETE


def df(
    source: str, target: str, source_port: str = "output", target_port: str = "input"
) -> DataFlow:
    return DataFlow(
        source_task=source, source_port=source_port, target_task=target, target_port=target_port
    )


def chain(first_input: int = 3) -> TaskGraph:
    return TaskGraph(
        [Square(id="a", defaults={"input": first_input}), Square(id="b")], [df("a", "b")]
    )


def square(graph: TaskGraph, task_id: str) -> Square:
    task = graph.get_task(task_id)
    assert isinstance(task, Square)
    return task


# -- scheduling -------------------------------------------------------------------------------


async def test_a_task_starts_when_its_inputs_are_ready_not_when_its_layer_is_done(
    signals: Signals,
) -> None:
    graph = TaskGraph(
        [
            Gate(id="slow", config={"wait": "release"}),
            Gate(id="fast"),
            Gate(id="after_fast"),
            Gate(id="after_slow"),
        ],
        [df("fast", "after_fast"), df("slow", "after_slow")],
    )
    runner = TaskGraphRunner(graph, resources={"signals": signals})
    assert [{t.id for t in layer} for layer in runner.layers()] == [
        {"slow", "fast"},
        {"after_fast", "after_slow"},
    ]
    running = asyncio.create_task(runner.run())
    await signals["after_fast.started"].wait()
    # The slow task of the first layer is still running, yet the next layer has begun.
    assert graph.get_task("slow").status == TaskStatus.PROCESSING
    assert not signals.is_set("after_slow.started")
    signals["release"].set()
    result = await running
    assert result.ok
    assert result.outputs["after_fast"] == {"output": "fast"}
    assert result.outputs["after_slow"] == {"output": "slow"}


async def test_independent_tasks_run_concurrently(signals: Signals) -> None:
    # Each waits for the other to start: this only finishes if both run at once.
    graph = TaskGraph(
        [
            Gate(id="left", config={"wait": "right.started"}),
            Gate(id="right", config={"wait": "left.started"}),
        ]
    )
    result = await TaskGraphRunner(graph, resources={"signals": signals}).run()
    assert result.ok


# -- results ----------------------------------------------------------------------------------


async def test_result_holds_every_task_status_and_output() -> None:
    graph = TaskGraph(
        [
            Square(id="a", defaults={"input": 3}),
            Square(id="b"),
            Square(id="alone", defaults={"input": 2}),
        ],
        [df("a", "b")],
    )
    result = await TaskGraphRunner(graph).run(run_id="run-7")
    assert result.run_id == "run-7"
    assert result.status == RunStatus.COMPLETED and result.ok and result.error is None
    assert result.raise_for_status() is result
    assert set(result.tasks) == {"a", "b", "alone"}
    assert {tid: r.status for tid, r in result.tasks.items()} == dict.fromkeys(
        ["a", "b", "alone"], TaskStatus.COMPLETED
    )
    assert result.outputs == {"a": {"output": 9}, "b": {"output": 81}, "alone": {"output": 4}}
    assert result.tasks["b"].type == "TestSquare"
    assert result.tasks["b"].error is None
    assert result.sink_ids == ("b", "alone")
    assert result.output == {"output": 4}  # sinks merged in graph order: the last one wins
    assert graph.get_task("b").status == TaskStatus.COMPLETED
    assert graph.get_task("b").progress == 100.0


async def test_overlapping_runs_of_one_graph_keep_their_own_inputs(signals: Signals) -> None:
    graph = TaskGraph([Gate(id="gate", config={"wait": "go"}), Square(id="square")])
    graph.add_dataflow(
        DataFlow(
            source_task="gate", source_port="output", target_task="square", target_port="input"
        )
    )
    first, second = (TaskGraphRunner(graph, resources={"signals": signals}) for _ in range(2))
    runs = asyncio.gather(first.run({"input": 3}), second.run({"input": 4}))
    await signals["gate.started"].wait()
    for _ in range(5):  # let the second run reach its gate too (no timing: loop turns only)
        await asyncio.sleep(0)
    signals["go"].set()
    results = await runs
    assert [r.output for r in results] == [{"output": 9}, {"output": 16}]
    assert [r.tasks["gate"].output for r in results] == [{"output": 3}, {"output": 4}]
    assert (await first.run({"input": 5})).output == {"output": 25}


async def test_empty_graph_completes() -> None:
    result = await TaskGraphRunner(TaskGraph()).run()
    assert result.ok and result.tasks == {} and result.output == {}


async def test_run_ids_are_generated_and_reach_the_context() -> None:
    graph = TaskGraph([Echo(id="e")])
    runner = TaskGraphRunner(graph)
    first, second = await runner.run(), await runner.run()
    assert first.run_id != second.run_id
    echo = graph.get_task("e")
    assert isinstance(echo, Echo)
    assert echo.seen_key == f"{second.run_id}:e"


async def test_invalid_graph_raises_before_anything_runs() -> None:
    graph = TaskGraph([Square(id="a"), Square(id="b")], [df("a", "b", target_port="nope")])
    with pytest.raises(GraphValidationError, match="no input port 'nope'"):
        await TaskGraphRunner(graph).run()
    assert square(graph, "a").runs == 0


async def test_job_queue_tasks_run_in_process() -> None:
    result = await TaskGraphRunner(TaskGraph([Queued(id="q", defaults={"input": 21})])).run()
    assert result.outputs["q"] == {"output": 42}


# -- graph inputs -----------------------------------------------------------------------------


async def test_graph_inputs_reach_root_tasks_only() -> None:
    graph = TaskGraph(
        [Square(id="sq"), Add(id="add", defaults={"b": 1}), Echo(id="echo")],
        [df("sq", "add", target_port="a")],
    )
    result = await TaskGraphRunner(graph).run({"input": 3, "value": "v"})
    assert result.outputs == {"sq": {"output": 9}, "add": {"sum": 10}, "echo": {"value": "v"}}


async def test_task_port_inputs_reach_one_task_root_or_not() -> None:
    graph = TaskGraph(
        [Square(id="sq"), Add(id="add", defaults={"b": 1}), Echo(id="echo")],
        [df("sq", "add", target_port="a")],
    )
    result = await TaskGraphRunner(graph).run({"sq.input": 3, "add.b": 100, "value": "v"})
    assert result.outputs == {"sq": {"output": 9}, "add": {"sum": 109}, "echo": {"value": "v"}}


async def test_an_input_that_reaches_no_task_is_an_error_naming_it() -> None:
    graph = TaskGraph([Square(id="sq")])
    with pytest.raises(GraphValidationError, match="input 'nope' reaches no task") as info:
        await TaskGraphRunner(graph).run({"nope": 1, "sq.missing": 2})
    assert [issue.port for issue in info.value.issues] == ["nope", "sq.missing"]


async def test_graph_inputs_satisfy_required_root_inputs() -> None:
    graph = TaskGraph(
        [Needs(id="first"), Needs(id="second")], [df("first", "second", "text", "text")]
    )
    result = await TaskGraphRunner(graph).run({"text": "hello"})
    assert result.outputs == {"first": {"text": "hello"}, "second": {"text": "hello"}}


async def test_a_required_input_given_nowhere_is_still_an_error() -> None:
    graph = TaskGraph([Needs(id="root"), Add(id="add", defaults={"a": 1})])
    with pytest.raises(GraphValidationError) as info:
        await TaskGraphRunner(graph).run({"other": 1})
    issues = [(i.task_id, i.port) for i in info.value.issues]
    assert issues == [(None, "other"), ("root", "text"), ("add", "b")]


async def test_graph_inputs_do_not_satisfy_non_root_inputs() -> None:
    graph = TaskGraph([Square(id="sq"), Add(id="add")], [df("sq", "add", target_port="a")])
    with pytest.raises(GraphValidationError, match="needs input 'b'"):
        await TaskGraphRunner(graph).run({"b": 5})


# -- provenance -------------------------------------------------------------------------------


def provenance_graph() -> TaskGraph:
    return TaskGraph(
        [
            Echo(id="root", config={"provenance": {"source": "doc.txt"}}),
            Echo(id="other"),
            Echo(id="mid", config={"provenance": {"model": "m1"}}),
            Echo(id="join", config={"provenance": {"model": "m2"}}),
        ],
        [
            df("root", "mid", "value", "value"),
            df("mid", "join", "value", "value"),
            df("other", "join", "value", "value"),
        ],
    )


async def test_provenance_is_parent_then_incoming_then_own_config() -> None:
    graph = provenance_graph()
    result = await TaskGraphRunner(graph).run(provenance={"run": "r1"})
    expected = {
        "root": {"run": "r1", "source": "doc.txt"},
        "other": {"run": "r1"},
        "mid": {"run": "r1", "source": "doc.txt", "model": "m1"},
        "join": {"run": "r1", "source": "doc.txt", "model": "m2"},
    }
    assert {tid: dict(r.provenance) for tid, r in result.tasks.items()} == expected
    for task in graph:
        assert isinstance(task, Echo)
        assert task.seen_provenance == expected[task.id]


async def test_compound_children_inherit_the_compound_provenance() -> None:
    inner = TaskGraph([Echo(id="leaf", config={"provenance": {"leaf": True}})])
    graph = TaskGraph([Compound(id="comp", subgraph=inner, config={"provenance": {"comp": 1}})])
    await TaskGraphRunner(graph).run(provenance={"run": "r"})
    leaf = inner.get_task("leaf")
    assert isinstance(leaf, Echo)
    assert leaf.seen_provenance == {"run": "r", "comp": 1, "leaf": True}


async def test_provenance_is_not_part_of_the_cache_key(repository: MemoryOutputRepository) -> None:
    graph = provenance_graph()
    runner = TaskGraphRunner(graph, repository=repository)
    await runner.run({"value": 1}, provenance={"run": "r1"})
    echoes = [task for task in graph if isinstance(task, Echo)]
    # Every task sees the value 1: one run fills the cache for all four, whatever their
    # different provenance.
    assert [task.runs for task in echoes] == [1, 0, 0, 0]
    for task in graph:
        task.config["provenance"] = {"changed": task.id}
    result = await runner.run({"value": 1}, provenance={"run": "r2"})
    assert [task.runs for task in echoes] == [1, 0, 0, 0]
    assert result.tasks["mid"].provenance == {"run": "r2", "changed": "mid"}


# -- cache ------------------------------------------------------------------------------------


async def test_cache_hit_skips_run_but_still_emits_events(
    repository: MemoryOutputRepository,
) -> None:
    graph = chain()
    first_events, second_events = Recorder(), Recorder()
    first = await TaskGraphRunner(graph, repository=repository, listener=first_events).run()
    second = await TaskGraphRunner(graph, repository=repository, listener=second_events).run()
    assert second.outputs == first.outputs == {"a": {"output": 9}, "b": {"output": 81}}
    assert square(graph, "a").runs == square(graph, "b").runs == 1
    assert first_events.trace() == [("a", START), ("a", COMPLETE), ("b", START), ("b", COMPLETE)]
    assert second_events.trace() == [
        ("a", START), ("a", PROGRESS), ("a", COMPLETE),
        ("b", START), ("b", PROGRESS), ("b", COMPLETE),
    ]  # fmt: skip
    progress = second_events.events[1]
    assert progress.message == "cached" and progress.progress == 100.0
    assert second.tasks["b"].status == TaskStatus.COMPLETED
    assert await repository.size() == 2


async def test_cache_misses_when_inputs_change(repository: MemoryOutputRepository) -> None:
    graph = chain()
    runner = TaskGraphRunner(graph, repository=repository)
    await runner.run()
    result = await runner.run({"input": 4})
    assert result.outputs == {"a": {"output": 16}, "b": {"output": 256}}
    assert square(graph, "a").runs == 2


async def test_a_cached_output_is_a_copy(repository: MemoryOutputRepository) -> None:
    graph = TaskGraph([Collect(id="c", defaults={"items": [1]})])
    runner = TaskGraphRunner(graph, repository=repository)
    await runner.run()
    hit = await runner.run()
    hit.outputs["c"]["items"].append("corrupted")
    assert (await runner.run()).outputs["c"] == {"items": [1]}


async def test_cache_key_is_insensitive_to_dict_key_order(
    repository: MemoryOutputRepository,
) -> None:
    first = TaskGraph([Echo(id="e", defaults={"value": {"a": 1, "b": {"x": 1, "y": 2}}})])
    second = TaskGraph([Echo(id="e", defaults={"value": {"b": {"y": 2, "x": 1}, "a": 1}})])
    await TaskGraphRunner(first, repository=repository).run()
    result = await TaskGraphRunner(second, repository=repository).run()
    echo = second.get_task("e")
    assert isinstance(echo, Echo)
    assert echo.runs == 0
    assert result.outputs["e"] == {"value": {"a": 1, "b": {"x": 1, "y": 2}}}


def test_canonical_json_sorts_keys_at_every_depth() -> None:
    assert canonical_json({"b": [{"z": 1, "y": 2}], "a": "é"}) == '{"a":"é","b":[{"y":2,"z":1}]}'
    task = Square(id="s")
    assert cache_key(task, {"input": {"q": 1, "p": 2}}) == cache_key(
        task, {"input": {"p": 2, "q": 1}}
    )
    assert cache_key(task, {"input": 1}) != cache_key(task, {"input": 2})
    assert cache_key(task, {"input": 1}) != cache_key(Add(id="s"), {"input": 1})
    key = cache_key(task, {"input": 1})
    assert key is not None and len(key) == 64 and int(key, 16) >= 0


def test_cache_key_depends_on_the_task_version_not_its_id() -> None:
    inputs = {"input": 3}
    assert cache_key(Square(id="x"), inputs) == cache_key(Square(id="y"), inputs)
    assert cache_key(SquareV2(id="x"), inputs) != cache_key(Square(id="x"), inputs)


def test_inputs_that_are_not_json_have_no_cache_key() -> None:
    assert cache_key(Echo(id="e"), {"value": object()}) is None
    assert cache_key(Echo(id="e"), {"value": math.nan}) is None


async def test_version_bump_invalidates_the_cache(repository: MemoryOutputRepository) -> None:
    await TaskGraphRunner(
        TaskGraph([Square(id="s", defaults={"input": 3})]), repository=repository
    ).run()
    bumped = SquareV2(id="s", defaults={"input": 3})
    await TaskGraphRunner(TaskGraph([bumped]), repository=repository).run()
    assert bumped.runs == 1
    assert await repository.size() == 2


async def test_uncacheable_inputs_simply_run_every_time(repository: MemoryOutputRepository) -> None:
    marker = object()
    graph = TaskGraph([Echo(id="e", defaults={"value": marker})])
    runner = TaskGraphRunner(graph, repository=repository)
    first = await runner.run()
    await runner.run()
    echo = graph.get_task("e")
    assert isinstance(echo, Echo)
    assert echo.runs == 2
    assert type(first.outputs["e"]["value"]) is object  # a fresh copy of the default
    assert await repository.size() == 0


async def test_side_effect_output_and_compound_tasks_are_never_cached(
    repository: MemoryOutputRepository,
) -> None:
    inner = TaskGraph([Square(id="leaf", defaults={"input": 5})])
    graph = TaskGraph([Sink(id="sink", defaults={"value": 1}), Compound(id="comp", subgraph=inner)])
    runner = TaskGraphRunner(graph, repository=repository)
    await runner.run()
    result = await runner.run()
    sink = graph.get_task("sink")
    assert isinstance(sink, Sink)
    assert sink.runs == 2
    assert square(inner, "leaf").runs == 1  # tasks inside a compound are cached
    assert result.outputs["comp"] == {"output": 25}
    assert await repository.size() == 1  # only the leaf
    assert not is_cacheable(sink)
    assert not is_cacheable(Compound(id="c"))
    assert not is_cacheable(SquareArray(id="arr"))
    assert is_cacheable(Square(id="s")) and is_cacheable(Queued(id="q"))


async def test_array_children_are_cached_one_by_one(repository: MemoryOutputRepository) -> None:
    runner = TaskGraphRunner(
        TaskGraph([SquareArray(id="arr", defaults={"input": [2, 3]})]), repository=repository
    )
    await runner.run()
    assert await repository.size() == 2
    again = await TaskGraphRunner(
        TaskGraph([SquareArray(id="arr", defaults={"input": [3, 4]})]), repository=repository
    ).run()
    assert again.outputs["arr"] == {"output": [9, 16]}
    assert await repository.size() == 3


# -- inputs between runs ----------------------------------------------------------------------


async def test_inputs_are_reset_between_runs() -> None:
    graph = TaskGraph([Mutate(id="m", defaults={"items": ["x"]})])
    runner = TaskGraphRunner(graph)
    first = await runner.run()
    second = await runner.run()
    expected = {"items": ["x", "mutated"], "options": {"seen": 1}}
    assert first.outputs["m"] == second.outputs["m"] == expected
    assert graph.get_task("m").defaults == {"items": ["x"]}
    assert Mutate.inputs[0].default == [] and Mutate.inputs[1].default == {"seen": 0}


async def test_dataflow_values_do_not_pile_up_across_runs() -> None:
    graph = TaskGraph(
        [Square(id="a", defaults={"input": 2}), Collect(id="c")],
        [df("a", "c", target_port="items")],
    )
    runner = TaskGraphRunner(graph)
    await runner.run()
    assert (await runner.run()).outputs["c"] == {"items": [4]}


async def test_two_edges_into_an_array_port_append_in_dataflow_order(signals: Signals) -> None:
    graph = TaskGraph(
        [
            # "first" waits until "second" has finished (relay starts only after it).
            Gate(id="first", config={"wait": "relay.started"}),
            Gate(id="second"),
            Gate(id="relay"),
            Collect(id="collect", defaults={"items": ["default"]}),
        ],
        [
            df("second", "relay"),
            df("first", "collect", target_port="items"),
            df("second", "collect", target_port="items"),
        ],
    )
    result = await TaskGraphRunner(graph, resources={"signals": signals}).run()
    assert result.outputs["collect"] == {"items": ["default", "first", "second"]}


async def test_two_edges_into_a_scalar_port_keep_the_last_in_dataflow_order() -> None:
    graph = TaskGraph(
        [
            Square(id="a", defaults={"input": 1}),
            Square(id="b", defaults={"input": 2}),
            Echo(id="e"),
        ],
        [df("a", "e", target_port="value"), df("b", "e", target_port="value")],
    )
    assert (await TaskGraphRunner(graph).run()).outputs["e"] == {"value": 4}


# -- compound and array tasks -----------------------------------------------------------------


async def test_compound_inputs_reach_its_roots_and_outputs_come_from_its_sinks() -> None:
    inner = TaskGraph([Square(id="s1"), Square(id="s2")], [df("s1", "s2")])
    graph = TaskGraph(
        [Square(id="up", defaults={"input": 2}), Compound(id="comp", subgraph=inner)],
        [df("up", "comp")],
    )
    result = await TaskGraphRunner(graph).run()
    assert result.outputs["comp"] == {"output": 256}  # ((2²)²)²
    assert result.tasks["comp"].status == TaskStatus.COMPLETED


async def test_array_task_runs_one_child_per_item() -> None:
    graph = TaskGraph(
        [Square(id="src", defaults={"input": 3}), SquareArray(id="arr", defaults={"input": [1]})],
        [df("src", "arr")],
    )
    result = await TaskGraphRunner(graph).run()
    assert result.outputs["arr"] == {"output": [1, 81]}  # the edge appends to the default


async def test_compound_children_keep_their_own_defaults() -> None:
    inner = TaskGraph(
        [Square(id="leaf", defaults={"input": 3}), Needs(id="text", defaults={"text": "hi"})]
    )
    graph = TaskGraph([Compound(id="comp", subgraph=inner)])
    result = await TaskGraphRunner(graph).run()
    assert result.outputs["comp"] == {"output": 9, "text": "hi"}
    # What the compound is given still wins over its children's defaults.
    result = await TaskGraphRunner(graph).run({"input": 4})
    assert result.outputs["comp"] == {"output": 16, "text": "hi"}


async def test_compound_needs_an_input_only_if_a_child_has_none() -> None:
    given = Compound(id="c", subgraph=TaskGraph([Needs(id="n", defaults={"text": "hi"})]))
    assert [(p.id, p.required) for p in given.input_ports] == [("text", False)]
    needed = Compound(
        id="c", subgraph=TaskGraph([Needs(id="m", defaults={"text": "hi"}), Needs(id="n")])
    )
    assert [(p.id, p.required) for p in needed.input_ports] == [("text", True)]
    optional_first = Compound(id="c", subgraph=TaskGraph([Echo(id="e"), Add(id="add")]))
    assert [(p.id, p.required) for p in optional_first.input_ports] == [
        ("value", False),
        ("a", True),
        ("b", True),
    ]
    assert [(i.task_id, i.port) for i in TaskGraph([needed]).validate()] == [("c", "text")]


async def test_array_task_with_nothing_to_map_over_has_empty_outputs() -> None:
    result = await TaskGraphRunner(TaskGraph([SquareArray(id="arr")])).run()
    assert result.outputs["arr"] == {"output": []}


# -- reactive mode ----------------------------------------------------------------------------


async def test_reactive_runs_only_the_cheap_path_with_no_events_and_no_cache(
    repository: MemoryOutputRepository, recorder: Recorder
) -> None:
    graph = chain()
    poisoned = cache_key(square(graph, "a"), {"input": 3})
    assert poisoned is not None
    await repository.save_output("TestSquare", poisoned, {"output": -1})
    runner = TaskGraphRunner(graph, repository=repository, listener=recorder)
    result = runner.run_reactive()
    assert result.outputs == {"a": {"output": 9}, "b": {"output": 81}}
    assert result.status == RunStatus.COMPLETED
    assert [square(graph, t).reactive_runs for t in "ab"] == [1, 1]
    assert [square(graph, t).runs for t in "ab"] == [0, 0]
    assert [graph.get_task(t).status for t in "ab"] == [TaskStatus.PENDING] * 2
    assert recorder.events == []
    assert await repository.size() == 1


def test_reactive_graph_inputs_reach_roots() -> None:
    result = TaskGraphRunner(chain()).run_reactive({"input": 4})
    assert result.outputs == {"a": {"output": 16}, "b": {"output": 256}}


def test_reactive_can_be_repeated() -> None:
    runner = TaskGraphRunner(chain())
    runner.run_reactive({"input": 2})
    assert runner.run_reactive({"input": 3}).outputs["b"] == {"output": 81}


async def test_reactive_skips_completed_tasks_and_builds_on_their_outputs() -> None:
    graph = chain()
    runner = TaskGraphRunner(graph)
    await runner.run()
    assert runner.run_reactive().outputs == {"a": {"output": 9}, "b": {"output": 81}}
    assert [square(graph, t).reactive_runs for t in "ab"] == [0, 0]
    # Only b is pending again: it is previewed from a's stored output.
    square(graph, "b").reset_input()
    square(graph, "a").run_output = {"output": 5}
    assert runner.run_reactive().outputs == {"a": {"output": 5}, "b": {"output": 25}}
    assert [square(graph, t).reactive_runs for t in "ab"] == [0, 1]


def test_reactive_previews_compound_and_array_tasks() -> None:
    inner = TaskGraph([Square(id="s1"), Square(id="s2")], [df("s1", "s2")])
    graph = TaskGraph(
        [
            Square(id="up", defaults={"input": 2}),
            Compound(id="comp", subgraph=inner),
            SquareArray(id="arr"),
        ],
        [df("up", "comp"), df("up", "arr")],
    )
    result = TaskGraphRunner(graph).run_reactive()
    assert result.outputs["comp"] == {"output": 256}
    assert result.outputs["arr"] == {"output": [16]}


# -- events -----------------------------------------------------------------------------------


async def test_events_reach_the_listener_in_order(recorder: Recorder) -> None:
    graph = TaskGraph([Progress(id="p"), Echo(id="e")], [df("p", "e", target_port="value")])
    result = await TaskGraphRunner(graph, listener=recorder).run(run_id="r")
    assert recorder.trace() == [
        ("p", START), ("p", PROGRESS), ("p", PROGRESS), ("p", COMPLETE),
        ("e", START), ("e", COMPLETE),
    ]  # fmt: skip
    assert {event.run_id for event in recorder.events} == {"r"}
    start, half, clamped, complete = recorder.events[:4]
    assert start.status == TaskStatus.PROCESSING and start.progress == 0.0
    assert (half.progress, half.message, half.details) == (50.0, "half way", {"step": 1})
    assert (clamped.progress, clamped.message) == (100.0, "clamped")
    assert complete.status == TaskStatus.COMPLETED and complete.progress == 100.0
    assert all(event.error is None for event in recorder.events)
    assert result.outputs["e"] == {"value": 1}


async def test_task_emitters_fire_too() -> None:
    task = Progress(id="p")
    seen: list[tuple[str, float]] = []
    for kind in ("start", "progress", "complete"):
        task.events.on(kind, lambda t, kind=kind: seen.append((kind, t.progress)))
    await TaskGraphRunner(TaskGraph([task])).run()
    assert seen == [("start", 0.0), ("progress", 50.0), ("progress", 100.0), ("complete", 100.0)]


async def test_nested_compound_events_use_parent_child_ids(recorder: Recorder) -> None:
    innermost = TaskGraph([Square(id="leaf", defaults={"input": 3})])
    inner = TaskGraph([Compound(id="inner", subgraph=innermost)])
    graph = TaskGraph([Compound(id="outer", subgraph=inner)])
    result = await TaskGraphRunner(graph, listener=recorder).run()
    assert recorder.trace() == [
        ("outer", START),
        ("outer/inner", START),
        ("outer/inner/leaf", START),
        ("outer/inner/leaf", COMPLETE),
        ("outer/inner", COMPLETE),
        ("outer", COMPLETE),
    ]
    assert result.outputs == {"outer": {"output": 9}}


async def test_array_children_report_as_parent_child(recorder: Recorder) -> None:
    graph = TaskGraph([SquareArray(id="arr", defaults={"input": [6, 7]})])
    await TaskGraphRunner(graph, listener=recorder).run()
    assert set(recorder.trace()) >= {("arr/arr[0]", COMPLETE), ("arr/arr[1]", COMPLETE)}
    assert recorder.trace()[0] == ("arr", START) and recorder.trace()[-1] == ("arr", COMPLETE)


# -- middleware -------------------------------------------------------------------------------


async def test_middleware_wraps_every_call_outermost_first(
    repository: MemoryOutputRepository,
) -> None:
    calls: list[str] = []

    def layer(name: str) -> Any:
        async def middleware(call: TaskCall, call_next: Handler) -> TaskOutput:
            calls.append(f"{name}>{call.task.id}")
            output = await call_next(call)
            calls.append(f"{name}<{call.task.id}")
            return {**output, name: True}

        return middleware

    graph = TaskGraph([Square(id="s", defaults={"input": 2})])
    runner = TaskGraphRunner(
        graph, middleware=[layer("outer"), layer("inner")], repository=repository
    )
    result = await runner.run()
    assert calls == ["outer>s", "inner>s", "inner<s", "outer<s"]
    assert result.outputs["s"] == {"output": 4, "inner": True, "outer": True}
    calls.clear()
    await runner.run()  # a cache hit still passes through the middleware
    assert calls == ["outer>s", "inner>s", "inner<s", "outer<s"]
    assert square(graph, "s").runs == 1


async def test_middleware_sees_merged_inputs_and_context() -> None:
    seen: list[tuple[dict[str, Any], str]] = []

    async def spy(call: TaskCall, call_next: Handler) -> TaskOutput:
        seen.append((dict(call.inputs), call.context.task_id))
        return await call_next(call)

    graph = TaskGraph([Add(id="add", defaults={"a": 1, "b": 2})])
    await TaskGraphRunner(graph, middleware=[spy]).run()
    assert seen == [({"a": 1, "b": 2}, "add")]
