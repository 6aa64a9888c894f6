"""The field codecs every message shares: JSON values (``google.protobuf.Struct``/
``Value``), timestamps, and the run and task status enums. One way for every message:
requests, responses, task outputs and run events alike.

Numbers in a ``Struct`` are doubles, so a JSON ``3`` arrives as ``3.0``;
:func:`value_from_proto` turns integral doubles (below 2**53) back into ints, since ports
typed integer reject floats; bools stay bools (``bool_value``), other floats stay floats.
A float with an integral value (``2.0``) comes back as ``2``: a double cannot say which it
was. Clients that need exact JSON send ``graph_json``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf.struct_pb2 import ListValue, Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

from graphmesh.orchestrator.runs.records import RunState
from graphmesh.orchestrator.task.base import TaskStatus
from graphmesh.v1 import common_pb2

JsonObject = dict[str, Any]
_MAX_EXACT_INT = 2**53


def dict_to_struct(data: Mapping[str, Any]) -> Struct:
    struct = Struct()
    struct.update(json.loads(json.dumps(data, default=repr)))
    return struct


def struct_to_dict(struct: Struct) -> JsonObject:
    """A Struct as plain JSON values, integral doubles as ints. NaN and Infinity pass
    through (JSON has neither: the edge reports them by path, see ``check_json``)."""
    return {key: value_from_proto(item) for key, item in struct.fields.items()}


def value_to_proto(value: Any) -> Value:
    message = Value()
    message.MergeFrom(dict_to_struct({"v": value}).fields["v"])
    return message


def value_from_proto(message: Value) -> Any:
    kind = message.WhichOneof("kind")
    if kind == "number_value":
        number = message.number_value
        if number.is_integer() and abs(number) < _MAX_EXACT_INT:
            return int(number)
        return number
    if kind == "struct_value":
        return struct_to_dict(message.struct_value)
    if kind == "list_value":
        return _list_from_proto(message.list_value)
    if kind in ("string_value", "bool_value"):
        return getattr(message, kind)
    return None  # null_value, or no kind set


def _list_from_proto(message: ListValue) -> list[Any]:
    return [value_from_proto(item) for item in message.values]


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment if moment.tzinfo else moment.replace(tzinfo=UTC))
    return stamp


def from_timestamp(stamp: Timestamp) -> datetime:
    return stamp.ToDatetime(tzinfo=UTC)


def task_status_to_proto(status: TaskStatus | None) -> common_pb2.TaskStatus.ValueType:
    if status is None:
        return common_pb2.TASK_STATUS_UNSPECIFIED
    return common_pb2.TaskStatus.Value(f"TASK_STATUS_{status.value}")


def task_status_from_proto(value: common_pb2.TaskStatus.ValueType) -> TaskStatus | None:
    name = common_pb2.TaskStatus.Name(value).removeprefix("TASK_STATUS_")
    return None if name == "UNSPECIFIED" else TaskStatus(name)


def run_status_to_proto(status: RunState) -> common_pb2.RunStatus.ValueType:
    return common_pb2.RunStatus.Value(f"RUN_STATUS_{status.value}")


def run_status_from_proto(value: common_pb2.RunStatus.ValueType) -> RunState:
    return RunState(common_pb2.RunStatus.Name(value).removeprefix("RUN_STATUS_"))
