"""JSON values and run events on the wire (requests, outputs, WatchRun, NATS): what goes in
comes back, with its type: ints stay ints, floats floats, bools bools, at every depth."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from graphmesh.orchestrator.runs.records import RunEventKind, RunEventRecord, RunState
from graphmesh.orchestrator.task.base import TaskStatus
from graphmesh.orchestrator.wire.events import (
    event_from_bytes,
    event_from_proto,
    event_to_bytes,
    event_to_proto,
)
from graphmesh.orchestrator.wire.values import (
    dict_to_struct,
    struct_to_dict,
    value_from_proto,
    value_to_proto,
)


def test_an_event_round_trips_with_integer_details_kept_integers() -> None:
    event = RunEventRecord(
        run_id="r1",
        seq=7,
        time=datetime(2026, 12, 5, 12, 0, 1, 250000, tzinfo=UTC),
        kind=RunEventKind.TASK_PROGRESS,
        run_status=RunState.RUNNING,
        task_id="embed",
        status=TaskStatus.PROCESSING,
        progress=50.0,
        message="halfway",
        details={"done": 3, "of": 6, "ratio": 0.5, "nested": {"batch": [1, 2]}},
    )
    back = event_from_proto(event_to_proto(event))
    assert back.details == event.details
    assert type(back.details["done"]) is int and type(back.details["nested"]["batch"][0]) is int
    assert (back.time, back.seq, back.kind, back.status) == (
        event.time,
        7,
        event.kind,
        event.status,
    )


MIXED: dict[str, Any] = {
    "count": 3,
    "negative": -7,
    "zero": 0,
    "ratio": 0.5,
    "tiny": -1e-300,
    "yes": True,
    "no": False,
    "none": None,
    "text": "3",
    "list": [1, 2.5, True, None, "x", [4, [5.25]], {"deep": {"n": 6, "on": False}}],
    "nested": {"ints": [0, 1, 2], "floats": [0.1, 1.5], "bools": [True, False]},
}


def _types(value: Any) -> Any:
    """The value with every leaf replaced by its exact type (bool is not int here)."""
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_types(item) for item in value]
    return type(value)


def test_struct_round_trip_keeps_every_type_at_every_depth() -> None:
    back = struct_to_dict(dict_to_struct(MIXED))
    assert back == MIXED
    assert _types(back) == _types(MIXED)


@pytest.mark.parametrize("value", [3, -2, 0, 2.5, True, False, None, "s", [1, 0.5], {"a": 1}])
def test_a_single_value_round_trips_with_its_type(value: Any) -> None:
    back = value_from_proto(value_to_proto(value))
    assert back == value and _types(back) == _types(value)


def test_integers_past_double_precision_come_back_as_floats() -> None:
    # A double holds integers exactly up to 2**53; beyond, claiming an int would lie.
    assert value_from_proto(value_to_proto(2**53 + 1)) == float(2**53)
    assert type(value_from_proto(value_to_proto(2**53 - 1))) is int


def test_event_details_keep_their_types_through_nats_bytes() -> None:
    event = RunEventRecord(
        run_id="r2",
        seq=1,
        time=datetime(2026, 12, 5, 12, 0, tzinfo=UTC),
        kind=RunEventKind.TASK_PROGRESS,
        run_status=RunState.RUNNING,
        task_id="t",
        status=TaskStatus.PROCESSING,
        details=MIXED,
    )
    back = event_from_bytes(event_to_bytes(event))
    assert back == event
    assert _types(back.details) == _types(MIXED)
