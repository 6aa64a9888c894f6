"""TaskGraphBuilder: methods from the registry, wiring, pop/reset, parallel, events, runs."""

from __future__ import annotations

import asyncio
import functools
import importlib
import importlib.util
from typing import Any

import pytest

from graphmesh.orchestrator.builder import ParallelTask, TaskGraphBuilder, method_name
from graphmesh.orchestrator.errors import GraphError, GraphValidationError, UnknownTaskTypeError
from graphmesh.orchestrator.graph import graph_to_json
from graphmesh.orchestrator.runner import RunResult, RunStatus
from graphmesh.orchestrator.storage.memory import MemoryOutputRepository
from graphmesh.orchestrator.task import (
    Port,
    Task,
    TaskContext,
    TaskInput,
    TaskOutput,
    ValueType,
    default_registry,
)


class BldSourceTask(Task):
    type = "BldSourceTask"
    inputs = (Port(id="text", value_type=ValueType.TEXT, default="hello"),)
    outputs = (Port(id="text", value_type=ValueType.TEXT),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {"text": inputs["text"]}


class BldUpperTask(Task):
    type = "BldUpperTask"
    inputs = (
        Port(id="text", value_type=ValueType.TEXT),
        Port(id="suffix", value_type=ValueType.TEXT, default=""),
    )
    outputs = (Port(id="text", value_type=ValueType.TEXT),)
    runs = 0

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        BldUpperTask.runs += 1
        return {"text": inputs["text"].upper() + inputs["suffix"]}


class BldCollectTask(Task):
    type = "BldCollectTask"
    inputs = (Port(id="items", value_type=ValueType.TEXT, is_array=True),)
    outputs = (Port(id="items", value_type=ValueType.TEXT, is_array=True),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {"items": inputs["items"]}


class BldRendezvousTask(Task):
    """Sets its own event and waits for its partner's: finishes only if both run at once."""

    type = "BldRendezvousTask"
    inputs = (
        Port(id="text", value_type=ValueType.TEXT, optional=True),
        Port(id="me", value_type=ValueType.TEXT, default="a"),
        Port(id="partner", value_type=ValueType.TEXT, default="b"),
    )
    outputs = (Port(id="met", value_type=ValueType.TEXT),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        events: dict[str, asyncio.Event] = ctx.resources["events"]
        events[inputs["me"]].set()
        async with asyncio.timeout(5):
            await events[inputs["partner"]].wait()
        return {"met": f"{inputs['me']} met {inputs['partner']} with {inputs.get('text')}"}


class BldTextEmbeddingMultiModelTask(Task):
    type = "BldTextEmbeddingMultiModelTask"
    inputs = (Port(id="text", value_type=ValueType.TEXT),)


class HTTPRequestTask(Task):
    type = "BldHTTPRequestTask"


# -- methods by type name ----------------------------------------------------------------
@pytest.mark.parametrize(
    ("task_type", "method"),
    [
        ("TextEmbeddingTask", "text_embedding"),
        ("DocumentSplitterTask", "document_splitter"),
        ("TextEmbeddingMultiModelTask", "text_embedding_multi_model"),
        ("SqliteInsertTask", "sqlite_insert"),
        ("JavaScriptTask", "java_script"),
        ("HTTPRequestTask", "http_request"),
        ("LambdaTask", "lambda_"),
        ("Task", "task"),
    ],
)
def test_method_names_come_from_type_names(task_type: str, method: str) -> None:
    assert method_name(task_type) == method


def test_every_registered_type_has_a_method_that_adds_it() -> None:
    # The catalog registers the real task types; it is another package, maybe not there yet.
    if importlib.util.find_spec("graphmesh.orchestrator.catalog") is not None:
        importlib.import_module("graphmesh.orchestrator.catalog")
    builder = TaskGraphBuilder()
    for task_type in default_registry.names():
        method = method_name(task_type)
        if not hasattr(TaskGraphBuilder, method):
            adder = getattr(builder, method)
            assert isinstance(adder, functools.partial) and adder.args == (task_type,), task_type
            assert method in dir(builder)


def test_a_method_per_registered_type() -> None:
    builder = TaskGraphBuilder().bld_source(text="hi").bld_upper(suffix="!")
    assert [task.type for task in builder.graph] == ["BldSourceTask", "BldUpperTask"]
    assert builder.graph.get_task("bld_upper_1").defaults == {"suffix": "!"}
    assert "bld_text_embedding_multi_model" in dir(builder)
    assert builder.bld_text_embedding_multi_model(text="x").graph.tasks[-1].type == (
        "BldTextEmbeddingMultiModelTask"
    )


def test_names_without_underscores_also_resolve() -> None:
    builder = TaskGraphBuilder().bldhttprequest().bld_http_request()
    assert [task.type for task in builder.graph] == ["BldHTTPRequestTask"] * 2


def test_add_takes_a_type_name_a_method_name_or_a_class() -> None:
    builder = TaskGraphBuilder(auto_connect=False)
    builder.add("BldSourceTask").add("bld_source").add(BldSourceTask)
    assert [task.id for task in builder.graph] == ["bld_source_1", "bld_source_2", "bld_source_3"]


def test_id_and_config_are_reserved_keywords() -> None:
    builder = TaskGraphBuilder().bld_source(id="src", config={"name": "Source"}, text="x")
    task = builder.graph.get_task("src")
    assert (task.config, task.defaults, task.name) == ({"name": "Source"}, {"text": "x"}, "Source")


def test_unknown_keyword_names_the_type_and_its_ports() -> None:
    builder = TaskGraphBuilder()
    errors: list[str] = []
    builder.events.on("error", errors.append)
    with pytest.raises(GraphError) as caught:
        builder.bld_upper(txt="x")
    assert str(caught.value) == (
        "BldUpperTask has no input port(s) 'txt'; its inputs are 'text' (text), 'suffix' (text)"
    )
    assert len(builder.graph) == 0 and errors == [str(caught.value)]


def test_unknown_method_lists_close_matches() -> None:
    with pytest.raises(AttributeError, match="'bld_uper'; did you mean bld_upper"):
        TaskGraphBuilder().bld_uper()
    assert not hasattr(TaskGraphBuilder(), "no_such_thing_at_all")
    with pytest.raises(AttributeError):
        TaskGraphBuilder()._private  # noqa: B018


def test_unknown_type_name_is_refused() -> None:
    with pytest.raises(UnknownTaskTypeError):
        TaskGraphBuilder().add("NoSuchTask")


def test_duplicate_id_is_refused() -> None:
    builder = TaskGraphBuilder().bld_source(id="a")
    with pytest.raises(GraphError, match="duplicate task id 'a'"):
        builder.bld_source(id="a")
    assert len(builder.graph) == 1


# -- connect, pop, reset -----------------------------------------------------------------
def test_connect_adds_a_dataflow_and_checks_the_ports() -> None:
    builder = TaskGraphBuilder(auto_connect=False).bld_source(id="a").bld_upper(id="b")
    builder.connect("a", "text", "b", "text")
    assert [str(flow) for flow in builder.graph.dataflows] == ["a.text -> b.text"]
    with pytest.raises(GraphError, match="no output port 'txt'"):
        builder.connect("a", "txt", "b", "text")
    with pytest.raises(GraphError, match="no input port 'txt'"):
        builder.connect("a", "text", "b", "txt")
    with pytest.raises(GraphError, match="no task with id 'c'"):
        builder.connect("a", "text", "c", "text")


def test_pop_removes_the_last_task_and_its_dataflows() -> None:
    builder = TaskGraphBuilder().bld_source(id="a").bld_upper(id="b")
    builder.pop()
    assert [task.id for task in builder.graph] == ["a"] and builder.graph.dataflows == []
    builder.bld_upper(id="c")
    assert [str(flow) for flow in builder.graph.dataflows] == ["a.text -> c.text"]
    with pytest.raises(GraphError, match="empty"):
        builder.pop().pop().pop()


def test_reset_clears_everything() -> None:
    builder = TaskGraphBuilder().bld_source().bld_upper().rename("text", "suffix")
    seen: list[str] = []
    builder.events.on("changed", lambda: seen.append("changed"))
    builder.events.on("reset", lambda: seen.append("reset"))
    builder.reset()
    assert builder.to_json() == {"tasks": [], "dataflows": []}
    assert seen == ["changed", "reset"]
    builder.bld_source().bld_upper(suffix="!")
    assert [task.id for task in builder.graph] == ["bld_source_1", "bld_upper_1"]
    assert len(builder.graph.dataflows) == 1


# -- running -----------------------------------------------------------------------------
async def test_run_returns_the_result_and_events_fire_in_order() -> None:
    builder = TaskGraphBuilder()
    seen: list[Any] = []
    for event in ("changed", "reset", "error", "start", "complete"):
        builder.events.on(event, lambda *args, event=event: seen.append((event, *args)))
    builder.bld_source(text="hi").bld_upper(suffix="!")
    result = await builder.run()
    assert result.ok and result.output == {"text": "HI!"}
    assert seen == [("changed",), ("changed",), ("start",), ("complete", result)]


async def test_running_twice_gives_the_same_result() -> None:
    builder = TaskGraphBuilder().bld_source(text="ab").bld_upper(suffix="?")
    first, second = await builder.run(), await builder.run()
    assert (
        first.outputs
        == second.outputs
        == {
            "bld_source_1": {"text": "ab"},
            "bld_upper_1": {"text": "AB?"},
        }
    )


async def test_run_inputs_reach_the_root_tasks() -> None:
    result = await TaskGraphBuilder().bld_source().bld_upper().run({"text": "in"})
    assert result.output == {"text": "IN"}


async def test_runner_options_reach_the_runner() -> None:
    builder = TaskGraphBuilder().bld_source(text="x")
    result = await builder.run(run_id="run-7", timeout=5, provenance={"user": "me"})
    assert result.run_id == "run-7"
    assert result.tasks["bld_source_1"].provenance == {"user": "me"}


async def test_the_repository_given_to_the_builder_caches_outputs() -> None:
    repository = MemoryOutputRepository()
    builder = TaskGraphBuilder(repository=repository).bld_source(text="c").bld_upper()
    before = BldUpperTask.runs
    first, second = await builder.run(), await builder.run()
    assert first.output == second.output == {"text": "C"}
    assert BldUpperTask.runs == before + 1 and await repository.size() == 2


async def test_an_invalid_graph_emits_error_and_raises() -> None:
    builder = TaskGraphBuilder().bld_source(id="a").bld_upper(id="b")
    builder.connect("b", "text", "a", "text")
    errors: list[str] = []
    builder.events.on("error", errors.append)
    with pytest.raises(GraphValidationError, match="cycle"):
        await builder.run()
    assert len(errors) == 1 and "cycle" in errors[0]


async def test_two_edges_into_an_array_port_append() -> None:
    builder = TaskGraphBuilder(auto_connect=False)
    builder.bld_source(id="a", text="one").bld_source(id="b", text="two").bld_collect(id="c")
    builder.connect("a", "text", "c", "items").connect("b", "text", "c", "items")
    result = await builder.run()
    assert sorted(result.output["items"]) == ["one", "two"]
    assert sorted((await builder.run()).output["items"]) == ["one", "two"]


# -- parallel ----------------------------------------------------------------------------
async def test_parallel_branches_run_concurrently() -> None:
    builder = TaskGraphBuilder().bld_source(text="shared")
    builder.parallel(
        lambda branch: branch.bld_rendezvous(me="a", partner="b"),
        lambda branch: branch.bld_rendezvous(me="b", partner="a").bld_upper(suffix="!"),
    )
    events = {"a": asyncio.Event(), "b": asyncio.Event()}
    result = await builder.run(resources={"events": events})
    assert result.status == RunStatus.COMPLETED, result.error
    compound = builder.graph.tasks[-1]
    assert isinstance(compound, ParallelTask)
    assert [str(flow) for flow in builder.graph.dataflows] == [
        "bld_source_1.text -> parallel_1.text"
    ]
    assert result.output == {"met": "a met b with shared", "text": "B MET A WITH SHARED!"}


def test_parallel_branch_tasks_get_distinct_ids() -> None:
    builder = TaskGraphBuilder().parallel(
        lambda branch: branch.bld_source().bld_upper(),
        lambda branch: branch.bld_source().bld_upper(),
    )
    compound = builder.graph.get_task("parallel_1")
    assert isinstance(compound, ParallelTask)
    ids = [task.id for task in compound.subgraph]
    assert ids == ["bld_source_1", "bld_upper_1", "bld_source_2", "bld_upper_2"]
    assert len(compound.subgraph.dataflows) == 2


def test_parallel_refuses_branches_sharing_an_id() -> None:
    builder = TaskGraphBuilder()
    with pytest.raises(GraphError, match="two branches have a task with id 'x'"):
        builder.parallel(lambda b: b.bld_source(id="x"), lambda b: b.bld_source(id="x"))
    assert len(builder.graph) == 0


async def test_parallel_branches_sharing_an_output_port_keep_every_value() -> None:
    builder = TaskGraphBuilder().bld_source(text="shared")
    builder.parallel(
        lambda branch: branch.bld_upper(suffix="1"),
        lambda branch: branch.bld_upper(suffix="2"),
        lambda branch: branch.bld_upper(suffix="3"),
    )
    compound = builder.graph.tasks[-1]
    port = compound.output_port("text")
    assert port is not None and port.is_array
    result = await builder.run()
    assert result.status == RunStatus.COMPLETED, result.error
    assert result.output == {"text": ["SHARED1", "SHARED2", "SHARED3"]}


def test_parallel_takes_builders_too() -> None:
    left = TaskGraphBuilder().bld_source(id="l")
    right = TaskGraphBuilder().bld_source(id="r")
    builder = TaskGraphBuilder().parallel(left, right, id="both", config={"name": "Both"})
    compound = builder.graph.get_task("both")
    assert isinstance(compound, ParallelTask) and compound.name == "Both"
    assert [task.id for task in compound.subgraph] == ["l", "r"]


async def test_parallel_is_auto_connected_and_its_inputs_reach_every_branch() -> None:
    builder = (
        TaskGraphBuilder()
        .bld_source(text="go")
        .parallel(
            lambda branch: branch.bld_upper(suffix="1"),
            lambda branch: branch.bld_upper(suffix="2").bld_upper(id="tail", suffix="3"),
        )
    )
    result = await builder.run()
    compound = builder.graph.get_task("parallel_1")
    assert isinstance(compound, ParallelTask)
    assert {t.id: t.run_output for t in compound.subgraph} == {
        "bld_upper_1": {"text": "GO1"},
        "bld_upper_2": {"text": "GO2"},
        "tail": {"text": "GO23"},
    }
    assert result.output == {"text": ["GO1", "GO23"]}  # both branches' sinks output "text"


# -- JSON forms --------------------------------------------------------------------------
def test_to_json_and_from_json_round_trip() -> None:
    builder = TaskGraphBuilder().bld_source(text="x", config={"name": "S"}).bld_upper(suffix="!")
    data = builder.to_json()
    assert data == graph_to_json(builder.graph)
    assert TaskGraphBuilder.from_json(data).to_json() == data


def test_from_json_reads_dependency_json() -> None:
    builder = TaskGraphBuilder().bld_source(text="x").bld_upper(suffix="!")
    dependency_json = builder.to_dependency_json()
    assert dependency_json[1]["dependencies"] == {"text": {"id": "bld_source_1", "output": "text"}}
    assert TaskGraphBuilder.from_json(dependency_json).to_json() == builder.to_json()


async def test_a_builder_from_json_keeps_building_and_runs() -> None:
    data = TaskGraphBuilder().bld_source(text="j").to_json()
    builder = TaskGraphBuilder.from_json(data, auto_connect=True).bld_upper()
    result: RunResult = await builder.run()
    assert result.output == {"text": "J"}
