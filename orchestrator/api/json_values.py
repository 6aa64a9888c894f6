"""JSON values and timestamps in protobuf (``google.protobuf.Struct``/``Value``,
``Timestamp``), one way for every message: requests, responses and run events alike.

Numbers in a ``Struct`` are doubles, so a JSON ``3`` arrives as ``3.0``;
:func:`struct_to_dict` turns integral doubles back into ints (ports typed integer reject
floats), in task outputs and in event details alike.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from google.protobuf.struct_pb2 import ListValue, Struct, Value
from google.protobuf.timestamp_pb2 import Timestamp

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
