"""Ports, value types, input merging, the registry and the small task-model helpers."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tasks import Add, AddArray, Collect, Mutate, Square, SquareArray

from graphmesh.orchestrator.errors import UnknownTaskTypeError
from graphmesh.orchestrator.task import (
    MISSING,
    Port,
    Task,
    TaskContext,
    TaskRegistry,
    TaskStatus,
    ValueType,
    array_task,
    default_registry,
)
from graphmesh.orchestrator.task.events import EventEmitter
from graphmesh.orchestrator.task.ports import merge_input

# -- JSON schema ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value_type", "expected"),
    [
        (ValueType.ANY, {}),
        (ValueType.TEXT, {"type": "string"}),
        (ValueType.NUMBER, {"type": "number"}),
        (ValueType.INTEGER, {"type": "integer"}),
        (ValueType.BOOLEAN, {"type": "boolean"}),
        (ValueType.VECTOR, {"type": "array", "items": {"type": "number"}}),
        (ValueType.JSON, {}),
        (ValueType.LOG_LEVEL, {"type": "string", "enum": ["debug", "info", "warning", "error"]}),
        (ValueType.SIMILARITY_METRIC, {"type": "string", "enum": ["cosine", "jaccard", "hamming"]}),
    ],
)
def test_json_schema_per_value_type(value_type: ValueType, expected: dict[str, Any]) -> None:
    assert Port(id="p", value_type=value_type).json_schema() == expected


@pytest.mark.parametrize("value_type", list(ValueType))
def test_every_value_type_has_a_json_serialisable_schema(value_type: ValueType) -> None:
    schema = Port(id="p", value_type=value_type).json_schema()
    assert isinstance(schema, dict)
    assert json.loads(json.dumps(schema)) == schema


@pytest.mark.parametrize(
    ("value_type", "json_type"),
    [
        (ValueType.MODEL, "string"),
        (ValueType.CODE, "string"),
        (ValueType.PATH, "string"),
        (ValueType.SQL, "string"),
        (ValueType.LANGUAGE, "string"),
        (ValueType.ERROR, "object"),
    ],
)
def test_string_and_object_value_types(value_type: ValueType, json_type: str) -> None:
    assert Port(id="p", value_type=value_type).json_schema()["type"] == json_type


def test_array_port_schema_wraps_the_item_schema() -> None:
    port = Port(id="p", value_type=ValueType.TEXT, is_array=True, description="some words")
    assert port.json_schema() == {
        "type": "array",
        "items": {"type": "string", "description": "some words"},
    }


def test_array_of_vectors_is_an_array_of_number_arrays() -> None:
    schema = Port(id="p", value_type=ValueType.VECTOR, is_array=True).json_schema()
    assert schema == {"type": "array", "items": {"type": "array", "items": {"type": "number"}}}


def test_schema_carries_a_json_default_including_none() -> None:
    assert Port(id="p", value_type=ValueType.NUMBER, default=3).json_schema() == {
        "type": "number",
        "default": 3,
    }
    assert Port(id="p", default=None).json_schema() == {"default": None}
    assert Port(id="p", default={"k": [1, "x"]}).json_schema() == {"default": {"k": [1, "x"]}}


def test_schema_leaves_out_a_default_that_is_not_json() -> None:
    assert "default" not in Port(id="p", default=object()).json_schema()
    assert "default" not in Port(id="p", default={1: "int key"}).json_schema()
    assert "default" not in Port(id="p").json_schema()


def test_editing_a_returned_schema_changes_neither_the_table_nor_the_default() -> None:
    port = Port(id="p", value_type=ValueType.VECTOR, default=[1.0])
    schema = port.json_schema()
    schema["items"]["type"] = "string"
    schema["default"].append(2.0)
    assert port.json_schema() == {"type": "array", "items": {"type": "number"}, "default": [1.0]}
    assert Port(id="q", value_type=ValueType.VECTOR).json_schema()["items"] == {"type": "number"}
    assert port.default == [1.0]


# -- required / optional / default ----------------------------------------------------------


def test_required_means_no_default_and_not_optional() -> None:
    assert Port(id="p").required
    assert not Port(id="p", optional=True).required
    assert not Port(id="p", default=0).required
    assert not Port(id="p", default=None).required  # None is a default, MISSING is not
    assert Port(id="p", default=MISSING).required


def test_has_default_distinguishes_none_from_missing() -> None:
    assert Port(id="p", default=None).has_default
    assert not Port(id="p").has_default
    assert repr(MISSING) == "MISSING"


def test_fresh_default_is_a_deep_copy() -> None:
    port = Port(id="p", default={"nested": [1]})
    first = port.fresh_default()
    first["nested"].append(2)
    assert port.fresh_default() == {"nested": [1]}
    assert port.default == {"nested": [1]}


def test_label_falls_back_to_a_readable_id() -> None:
    assert Port(id="max_tokens").label == "Max tokens"
    assert Port(id="max_tokens", name="Budget").label == "Budget"


def test_ports_are_frozen() -> None:
    port = Port(id="p")
    with pytest.raises(AttributeError):
        port.id = "q"  # type: ignore[misc]


# -- accepts ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "source", "accepted"),
    [
        (ValueType.TEXT, ValueType.TEXT, True),
        (ValueType.ANY, ValueType.VECTOR, True),
        (ValueType.VECTOR, ValueType.ANY, True),
        (ValueType.NUMBER, ValueType.INTEGER, True),
        (ValueType.INTEGER, ValueType.NUMBER, False),
        (ValueType.TEXT, ValueType.NUMBER, False),
        (ValueType.NUMBER, ValueType.TEXT, False),
        (ValueType.MODEL, ValueType.TEXT, False),
        (ValueType.VECTOR, ValueType.NUMBER, False),
    ],
)
def test_accepts(target: ValueType, source: ValueType, accepted: bool) -> None:
    assert Port(id="in", value_type=target).accepts(Port(id="out", value_type=source)) is accepted


# -- merge rule -------------------------------------------------------------------------------


def test_scalar_ports_are_overwritten() -> None:
    port = Port(id="p")
    assert merge_input(port, 1, 2) == 2
    assert merge_input(port, MISSING, [1]) == [1]
    assert merge_input(None, [1], [2]) == [2]  # an undeclared port behaves as a scalar


def test_array_ports_append_values_and_extend_lists() -> None:
    port = Port(id="p", is_array=True)
    assert merge_input(port, MISSING, 1) == [1]
    assert merge_input(port, None, 1) == [1]
    assert merge_input(port, [1], 2) == [1, 2]
    assert merge_input(port, [1], [2, 3]) == [1, 2, 3]
    assert merge_input(port, (1,), (2,)) == [1, 2]
    assert merge_input(port, 1, 2) == [1, 2]  # a scalar already there becomes the first item


def test_merge_never_mutates_the_incoming_value() -> None:
    incoming = [1]
    merged = merge_input(Port(id="p", is_array=True), MISSING, incoming)
    merge_input(Port(id="p", is_array=True), merged, [2])
    assert merged == [1, 2]
    assert incoming == [1]


def test_one_vector_into_an_array_of_vectors_stays_one_item() -> None:
    vectors = Port(id="items", value_type=ValueType.VECTOR, is_array=True)
    merged = merge_input(vectors, MISSING, [0.1, 0.2], spread=False)
    merged = merge_input(vectors, merged, [0.3, 0.4], spread=False)
    assert merged == [[0.1, 0.2], [0.3, 0.4]]
    assert merge_input(vectors, MISSING, [[0.1, 0.2]], spread=True) == [[0.1, 0.2]]


def test_add_input_merges_by_port_kind() -> None:
    collect = Collect(id="c")
    collect.reset_input()
    collect.add_input("items", "a")
    collect.add_input("items", ["b", "c"])
    assert collect.run_input == {"items": ["a", "b", "c"]}
    square = Square(id="s")
    square.reset_input()
    square.add_input("input", 2)
    square.add_input("input", 3)
    assert square.run_input == {"input": 3}


# -- task input reset -------------------------------------------------------------------------


def test_reset_input_overlays_task_defaults_on_port_defaults() -> None:
    task = Mutate(id="m", defaults={"items": ["x"]})
    task.reset_input()
    assert task.run_input == {"items": ["x"], "options": {"seen": 0}}


def test_reset_input_copies_defaults_and_clears_run_state() -> None:
    task = Mutate(id="m", defaults={"items": ["x"]})
    task.reset_input()
    task.run_input["items"].append("y")
    task.run_input["options"]["seen"] = 5
    task.status = TaskStatus.FAILED
    task.run_output = {"items": []}
    task.reset_input()
    assert task.run_input == {"items": ["x"], "options": {"seen": 0}}
    assert task.defaults == {"items": ["x"]}
    assert task.status == TaskStatus.PENDING
    assert task.run_output == {}
    assert task.error is None


def test_missing_inputs_lists_required_ports_without_a_value() -> None:
    task = Add(id="add", defaults={"a": 1})
    task.reset_input()
    assert task.missing_inputs() == ["b"]
    task.add_input("b", 2)
    assert task.missing_inputs() == []


def test_task_gets_a_generated_id_and_a_name() -> None:
    first, second = Square(), Square()
    assert first.id != second.id
    assert first.id.startswith("TestSquare")
    assert Square(id="s").name == "s"
    assert Square(id="s", config={"name": "Squarer"}).name == "Squarer"


def test_defaults_and_config_are_copied_from_the_caller() -> None:
    defaults = {"input": 2}
    task = Square(id="s", defaults=defaults)
    defaults["input"] = 5
    assert task.defaults == {"input": 2}


# -- registry ---------------------------------------------------------------------------------


def test_task_types_register_themselves() -> None:
    assert default_registry.get("TestSquare") is Square
    assert "TestSquare" in default_registry
    assert default_registry.get(SquareArray.type) is SquareArray


def test_registry_rejects_another_class_under_a_taken_name() -> None:
    with pytest.raises(ValueError, match="'TestSquare' is already registered"):

        class Impostor(Task):
            type = "TestSquare"

    assert default_registry.get("TestSquare") is Square


def test_registry_accepts_the_same_class_again() -> None:
    registry = TaskRegistry()
    assert registry.register(Square) is Square
    assert registry.register(Square) is Square
    assert registry.names() == ["TestSquare"]


def test_unknown_type_names_it_and_the_known_ones() -> None:
    registry = TaskRegistry()
    registry.register(Square)
    registry.register(Add)
    with pytest.raises(UnknownTaskTypeError) as info:
        registry.get("Nope")
    assert info.value.task_type == "Nope"
    assert "'Nope'" in str(info.value)
    assert "TestAdd, TestSquare" in str(info.value)
    assert "Nope" not in registry


def test_registry_iterates_by_category_then_type() -> None:
    registry = TaskRegistry()
    for cls in (Square, Add, Collect):
        registry.register(cls)
    assert [cls.type for cls in registry] == ["TestAdd", "TestCollect", "TestSquare"]


# -- array_task -------------------------------------------------------------------------------


def test_array_task_makes_the_named_inputs_and_every_output_arrays() -> None:
    assert SquareArray.type == "TestSquareMultiInputTask"
    assert [(p.id, p.is_array) for p in SquareArray.inputs] == [("input", True)]
    assert [(p.id, p.is_array) for p in SquareArray.outputs] == [("output", True)]
    assert SquareArray.item_task is Square
    assert SquareArray.category == Square.category


def test_array_ports_of_an_array_task_default_to_an_empty_list() -> None:
    port = SquareArray.inputs[0]
    assert port.default == [] and not port.required
    # The item's scalar default would be no valid default for an array.
    assert port.json_schema() == {"type": "array", "items": {"type": "number"}, "default": []}
    assert AddArray.inputs[0].required  # the item has no default, so neither has the array


def test_array_task_rejects_unknown_ports() -> None:
    with pytest.raises(ValueError, match=r"no input port\(s\) \['nope'\]"):
        array_task(Square, ["nope"])


def test_array_task_combinations_are_the_cartesian_product() -> None:
    task = AddArray(id="grid")
    combos = task.combinations({"a": [1, 2], "b": [10, 20]})
    assert combos == [
        {"a": 1, "b": 10},
        {"a": 1, "b": 20},
        {"a": 2, "b": 10},
        {"a": 2, "b": 20},
    ]
    assert task.combinations({"a": 1, "b": [5]}) == [{"a": 1, "b": 5}]  # a scalar is one item
    assert task.combinations({"a": [], "b": [5]}) == []


# -- events and context -----------------------------------------------------------------------


def test_event_emitter_on_once_off() -> None:
    emitter = EventEmitter()
    seen: list[tuple[str, int]] = []

    def always(value: int) -> None:
        seen.append(("always", value))

    emitter.on("tick", always)
    emitter.once("tick", lambda value: seen.append(("once", value)))
    assert emitter.has_listeners("tick")
    emitter.emit("tick", 1)
    emitter.emit("tick", 2)
    emitter.off("tick", always)
    emitter.off("tick", always)  # removing twice is harmless
    emitter.emit("tick", 3)
    emitter.emit("nobody-listens", 4)
    assert seen == [("always", 1), ("once", 1), ("always", 2)]
    assert not emitter.has_listeners("tick")


def _context(reports: list[tuple[float, str]]) -> TaskContext:
    async def no_subgraph(*_: Any) -> Any:
        raise AssertionError("not used")

    return TaskContext(
        run_id="run-1",
        task_id="t",
        provenance={},
        models=None,
        report_progress=lambda pct, msg, details: reports.append((pct, msg)),
        run_subgraph=no_subgraph,
    )


def test_context_clamps_progress_and_keys_idempotency_by_run_and_task() -> None:
    reports: list[tuple[float, str]] = []
    ctx = _context(reports)
    ctx.progress(-5, "below")
    ctx.progress(42.5)
    ctx.progress(250, "above")
    assert reports == [(0.0, "below"), (42.5, ""), (100.0, "above")]
    assert ctx.idempotency_key == "run-1:t"


def test_context_without_models_says_which_task_wanted_one() -> None:
    with pytest.raises(RuntimeError, match="task 't' calls a model"):
        _context([]).require_models()
