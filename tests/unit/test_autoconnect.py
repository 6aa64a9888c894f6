"""Auto-connect: the three passes, the look-back, renames and the error for a task that
cannot be wired."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from graphmesh.orchestrator.builder import Rename, TaskGraphBuilder, plan_dataflows
from graphmesh.orchestrator.errors import AutoConnectError, GraphError
from graphmesh.orchestrator.graph import ERROR_PORT, DataFlow, TaskGraph
from graphmesh.orchestrator.task import Port, Task, TaskContext, TaskInput, TaskOutput, ValueType

TEXT, NUMBER, VECTOR, ANY = ValueType.TEXT, ValueType.NUMBER, ValueType.VECTOR, ValueType.ANY


def port(port_id: str, value_type: ValueType = ANY, **options: Any) -> Port:
    return Port(id=port_id, value_type=value_type, **options)


class _Passthrough(Task):
    """Echoes each input to the output of the same id; other outputs get None."""

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        return {p.id: inputs.get(p.id) for p in self.output_ports}


class AcTextTask(_Passthrough):
    type = "AcTextTask"
    inputs = (port("text", TEXT, default=""),)
    outputs = (port("text", TEXT), port("count", NUMBER))


class AcEmbedTask(_Passthrough):
    type = "AcEmbedTask"
    inputs = (port("text", TEXT), port("model", ValueType.MODEL, default="hf:mini"))
    outputs = (port("vector", VECTOR),)


class AcNeedsTextAndVectorTask(_Passthrough):
    type = "AcNeedsTextAndVectorTask"
    inputs = (port("vector", VECTOR), port("text", TEXT))
    outputs = (port("score", NUMBER),)


class AcSummaryTask(_Passthrough):
    type = "AcSummaryTask"
    inputs = (port("text", TEXT),)
    outputs = (port("summary", TEXT),)


class AcRewriteTask(_Passthrough):
    type = "AcRewriteTask"
    inputs = (port("text", TEXT), port("prompt", TEXT, default="rewrite"))
    outputs = (port("text", TEXT),)


class AcTwoTextsTask(_Passthrough):
    type = "AcTwoTextsTask"
    inputs = (port("text", TEXT), port("context", TEXT))
    outputs = (port("answer", TEXT),)


class AcCaptionTask(_Passthrough):
    type = "AcCaptionTask"
    inputs = (port("vector", VECTOR, optional=True),)
    outputs = (port("caption", TEXT), port("vector", VECTOR))


class AcTitleAndBodyTask(_Passthrough):
    type = "AcTitleAndBodyTask"
    inputs = ()
    outputs = (port("title", TEXT), port("body", TEXT))


class AcPromptFirstTask(_Passthrough):
    type = "AcPromptFirstTask"
    inputs = (port("prompt", TEXT, default="rewrite"), port("text", TEXT))
    outputs = (port("text", TEXT),)


class AcLogTask(_Passthrough):
    type = "AcLogTask"
    inputs = (port("message", default=""), port("level", ValueType.LOG_LEVEL, default="info"))
    outputs = (port("message"),)


class AcLambdaTask(_Passthrough):
    type = "AcLambdaTask"
    inputs = (port("input"),)
    outputs = (port("output"),)


class AcNumberInputTask(_Passthrough):
    type = "AcNumberInputTask"
    inputs = (port("input", NUMBER, default=0),)
    outputs = (port("output", NUMBER),)


class AcVectorOnlyTask(_Passthrough):
    type = "AcVectorOnlyTask"
    inputs = (port("vector", VECTOR),)
    outputs = (port("vector", VECTOR),)


def flows(builder: TaskGraphBuilder) -> set[str]:
    return {str(flow) for flow in builder.graph.dataflows}


def chain(*steps: tuple[str, dict[str, Any]]) -> TaskGraphBuilder:
    builder = TaskGraphBuilder()
    for index, (task_type, inputs) in enumerate(steps):
        builder.add(task_type, id=f"t{index}", **inputs)
    return builder


# -- pass 1: same id and type ------------------------------------------------------------
def test_same_id_and_type_connects() -> None:
    builder = chain(("AcTextTask", {}), ("AcEmbedTask", {}))
    assert flows(builder) == {"t0.text -> t1.text"}


def test_same_id_needs_a_compatible_type() -> None:
    class AcCountAsTextTask(_Passthrough):
        type = "AcCountAsTextTask"
        inputs: ClassVar = (port("count", TEXT, default="n"),)
        outputs: ClassVar = ()

    builder = chain(("AcNumberInputTask", {}), ("AcCountAsTextTask", {}))
    assert flows(builder) == set()


def test_same_id_wins_over_an_earlier_output_of_the_same_type() -> None:
    class AcTitleThenTextTask(_Passthrough):
        type = "AcTitleThenTextTask"
        inputs: ClassVar = ()
        outputs: ClassVar = (port("title", TEXT), port("text", TEXT))

    builder = chain(("AcTitleThenTextTask", {}), ("AcSummaryTask", {}))
    assert flows(builder) == {"t0.text -> t1.text"}


# -- pass 2: output -> input -------------------------------------------------------------
def test_output_feeds_input() -> None:
    builder = chain(("AcLambdaTask", {"input": 1}), ("AcLambdaTask", {}))
    assert flows(builder) == {"t0.output -> t1.input"}


def test_output_to_input_needs_a_compatible_type() -> None:
    class AcTextOutputTask(_Passthrough):
        type = "AcTextOutputTask"
        inputs: ClassVar = ()
        outputs: ClassVar = (port("output", TEXT),)

    builder = chain(("AcTextOutputTask", {}), ("AcNumberInputTask", {}))
    assert flows(builder) == set()


# -- pass 3: same type, any name ---------------------------------------------------------
def test_same_type_under_another_name_fills_a_required_input() -> None:
    builder = chain(("AcSummaryTask", {"text": "long"}), ("AcSummaryTask", {}))
    assert flows(builder) == {"t0.summary -> t1.text"}


def test_the_guess_prefers_an_input_without_a_default() -> None:
    builder = chain(("AcSummaryTask", {"text": "long"}), ("AcPromptFirstTask", {}))
    assert flows(builder) == {"t0.summary -> t1.text"}


def test_the_guess_then_takes_an_input_with_a_default() -> None:
    builder = chain(("AcTitleAndBodyTask", {}), ("AcPromptFirstTask", {}))
    assert flows(builder) == {"t0.title -> t1.text", "t0.body -> t1.prompt"}


def test_an_any_port_is_compatible_with_every_type() -> None:
    builder = chain(("AcVectorOnlyTask", {}), ("AcLogTask", {}), ("AcSummaryTask", {}))
    assert flows(builder) == {"t0.vector -> t1.message", "t1.message -> t2.text"}


def test_the_guess_pairs_each_output_with_one_input() -> None:
    builder = chain(("AcSummaryTask", {"text": "long"}))
    with pytest.raises(AutoConnectError, match="'context' \\(text\\)"):
        builder.add("AcTwoTextsTask", id="qa")
    builder.add("AcTwoTextsTask", id="qa", context="given")
    assert flows(builder) == {"t0.summary -> qa.text"}


def test_the_guess_pairs_outputs_and_inputs_in_order() -> None:
    builder = chain(("AcTitleAndBodyTask", {}), ("AcTwoTextsTask", {}))
    assert flows(builder) == {"t0.title -> t1.text", "t0.body -> t1.context"}


def test_the_guess_skips_outputs_already_matched_by_name() -> None:
    builder = chain(
        ("AcSummaryTask", {"text": "x"}), ("AcTextTask", {"text": "y"}), ("AcTwoTextsTask", {})
    )
    assert flows(builder) == {"t1.text -> t2.text", "t0.summary -> t2.context"}


def test_each_input_is_connected_at_most_once() -> None:
    builder = chain(("AcTitleAndBodyTask", {}), ("AcSummaryTask", {}))
    assert flows(builder) == {"t0.title -> t1.text"}


def test_inputs_given_as_keywords_are_not_connected() -> None:
    builder = chain(("AcTextTask", {}), ("AcEmbedTask", {"text": "given"}))
    assert flows(builder) == set()
    assert builder.graph.get_task("t1").defaults == {"text": "given"}


def test_a_port_default_does_not_stop_a_same_id_match() -> None:
    class AcModelSourceTask(_Passthrough):
        type = "AcModelSourceTask"
        inputs: ClassVar = ()
        outputs: ClassVar = (port("model", ValueType.MODEL), port("text", TEXT))

    builder = chain(("AcModelSourceTask", {}), ("AcEmbedTask", {}))
    assert flows(builder) == {"t0.model -> t1.model", "t0.text -> t1.text"}


# -- look-back ---------------------------------------------------------------------------
def test_look_back_finds_a_missing_input_in_an_earlier_task() -> None:
    builder = chain(("AcTextTask", {}), ("AcEmbedTask", {}), ("AcNeedsTextAndVectorTask", {}))
    assert flows(builder) == {"t0.text -> t1.text", "t1.vector -> t2.vector", "t0.text -> t2.text"}


def test_look_back_takes_the_most_recent_task_first() -> None:
    builder = chain(
        ("AcTextTask", {}),
        ("AcTextTask", {}),
        ("AcEmbedTask", {"text": "x"}),
        ("AcNeedsTextAndVectorTask", {}),
    )
    assert "t1.text -> t3.text" in flows(builder)


def test_look_back_prefers_the_same_id_over_a_more_recent_same_type() -> None:
    builder = chain(
        ("AcTextTask", {}),
        ("AcCaptionTask", {}),
        ("AcVectorOnlyTask", {}),
        ("AcNeedsTextAndVectorTask", {}),
    )
    assert flows(builder) >= {"t2.vector -> t3.vector", "t0.text -> t3.text"}


def test_look_back_falls_back_to_the_same_type() -> None:
    builder = chain(
        ("AcCaptionTask", {}),
        ("AcVectorOnlyTask", {}),
        ("AcNeedsTextAndVectorTask", {}),
    )
    assert flows(builder) == {
        "t0.vector -> t1.vector",
        "t1.vector -> t2.vector",
        "t0.caption -> t2.text",
    }


def test_look_back_only_fills_required_inputs() -> None:
    builder = chain(("AcTextTask", {}), ("AcEmbedTask", {"text": "x"}), ("AcRewriteTask", {}))
    assert flows(builder) == {"t0.text -> t2.text"}


# -- the error ---------------------------------------------------------------------------
def test_missing_required_input_raises_naming_the_ports() -> None:
    builder = chain(("AcNumberInputTask", {}))
    before = builder.to_json()
    errors: list[str] = []
    builder.events.on("error", errors.append)
    with pytest.raises(AutoConnectError) as caught:
        builder.add("AcNeedsTextAndVectorTask", id="needs")
    message = str(caught.value)
    assert "AcNeedsTextAndVectorTask" in message
    assert "'vector' (vector)" in message and "'text' (text)" in message
    assert "'output' (number)" in message and "'t0'" in message
    assert builder.to_json() == before
    assert errors == [message]


def test_after_an_error_the_builder_keeps_working() -> None:
    builder = chain(("AcNumberInputTask", {}))
    with pytest.raises(AutoConnectError):
        builder.add("AcSummaryTask", id="s")
    builder.add("AcSummaryTask", id="s", text="given")
    assert [task.id for task in builder.graph] == ["t0", "s"]


def test_the_first_task_needs_no_sources() -> None:
    builder = TaskGraphBuilder().add("AcNeedsTextAndVectorTask", id="first")
    assert len(builder.graph) == 1


def test_auto_connect_off_adds_no_dataflows_and_raises_nothing() -> None:
    builder = TaskGraphBuilder(auto_connect=False)
    builder.add("AcTextTask", id="a").add("AcNeedsTextAndVectorTask", id="b")
    assert builder.graph.dataflows == []


def test_no_pass_matching_when_the_previous_task_already_feeds_another() -> None:
    first, second = AcLambdaTask(id="a"), AcLambdaTask(id="b")
    graph = TaskGraph([first, second], [_flow("b", "output", "a", "input")])
    new = AcNumberInputTask(id="c")
    assert plan_dataflows(graph, new, []) == []


def test_plan_dataflows_changes_nothing() -> None:
    graph = TaskGraph([AcTextTask(id="a")])
    planned = plan_dataflows(graph, AcEmbedTask(id="b"), [])
    assert planned == [_flow("a", "text", "b", "text")]
    assert graph.dataflows == [] and "b" not in graph


# -- rename ------------------------------------------------------------------------------
def test_rename_wires_the_named_ports_instead_of_matching() -> None:
    builder = chain(("AcTextTask", {}), ("AcSummaryTask", {}))
    builder.rename("text", "text", index=-2).add("AcTwoTextsTask", id="t2")
    assert {"t0.text -> t2.text", "t1.summary -> t2.context"} <= flows(builder)
    assert len(builder.graph.incoming("t2")) == 2


def test_rename_applies_to_the_next_task_only() -> None:
    builder = chain(("AcSummaryTask", {"text": "x"}))
    builder.rename("summary", "context").add("AcTwoTextsTask", id="a", text="y")
    builder.add("AcSummaryTask", id="b")
    assert flows(builder) == {"t0.summary -> a.context", "a.answer -> b.text"}


def test_rename_from_the_error_port() -> None:
    builder = chain(("AcSummaryTask", {"text": "x"}))
    builder.rename(ERROR_PORT, "input").add("AcLambdaTask", id="handler")
    assert flows(builder) == {"t0.[error] -> handler.input"}


def test_rename_of_an_unknown_output_is_refused() -> None:
    builder = chain(("AcSummaryTask", {"text": "x"}))
    with pytest.raises(GraphError, match=r"no output port 'nope'.*'summary' \(text\)"):
        builder.rename("nope", "text")


def test_rename_on_an_empty_graph_is_refused() -> None:
    with pytest.raises(GraphError, match="no task at index -1"):
        TaskGraphBuilder().rename("output", "input")


def test_rename_into_an_unknown_input_leaves_the_graph_unchanged() -> None:
    builder = chain(("AcSummaryTask", {"text": "x"}))
    builder.rename("summary", "nope")
    with pytest.raises(GraphError, match="no input port 'nope'"):
        builder.add("AcSummaryTask", id="b")
    assert len(builder.graph) == 1 and builder.graph.dataflows == []


def test_plan_dataflows_puts_renames_first() -> None:
    graph = TaskGraph([AcTextTask(id="a")])
    rename = Rename(source_task="a", source_port="text", target_port="context")
    planned = plan_dataflows(graph, AcTwoTextsTask(id="b"), [rename])
    assert planned == [_flow("a", "text", "b", "context"), _flow("a", "text", "b", "text")]


def _flow(source: str, source_port: str, target: str, target_port: str) -> DataFlow:
    return DataFlow(
        source_task=source, source_port=source_port, target_task=target, target_port=target_port
    )


class AcLeveledLogTask(_Passthrough):
    type = "AcLeveledLogTask"
    inputs = (
        port("message", ANY, default=None),
        port("level", ValueType.LOG_LEVEL, default="info"),
    )
    outputs = (port("message", ANY),)


def test_an_output_wired_by_rename_is_not_guessed_into_another_input() -> None:
    builder = chain(("AcLambdaTask", {}))
    builder.rename("output", "message").add("AcLeveledLogTask", id="log")
    assert flows(builder) == {"t0.output -> log.message"}


def test_an_any_output_never_overrides_a_typed_default() -> None:
    builder = chain(("AcLambdaTask", {}), ("AcLeveledLogTask", {}))
    assert "t0.output -> t1.level" not in flows(builder)
