"""Typed task ports and the value types they carry, each expressible as JSON Schema."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final


class _Missing:
    """Marks a port with no default (distinct from a default of ``None``)."""

    def __repr__(self) -> str:
        return "MISSING"

    def __copy__(self) -> _Missing:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> _Missing:
        return self


MISSING: Final = _Missing()


class ValueType(StrEnum):
    """What a port carries. ``ANY`` connects to everything."""

    ANY = "any"
    TEXT = "text"
    NUMBER = "number"
    INTEGER = "integer"
    BOOLEAN = "boolean"
    VECTOR = "vector"
    MODEL = "model"
    JSON = "json"
    LOG_LEVEL = "log_level"
    FUNCTION = "function"
    CODE = "code"
    PATH = "path"
    SQL = "sql"
    LANGUAGE = "language"
    SIMILARITY_METRIC = "similarity_metric"
    ERROR = "error"


_SCHEMAS: Final[dict[ValueType, dict[str, Any]]] = {
    ValueType.ANY: {},
    ValueType.TEXT: {"type": "string"},
    ValueType.NUMBER: {"type": "number"},
    ValueType.INTEGER: {"type": "integer"},
    ValueType.BOOLEAN: {"type": "boolean"},
    ValueType.VECTOR: {"type": "array", "items": {"type": "number"}},
    ValueType.MODEL: {
        "type": "string",
        "description": "routed model name, e.g. hf:all-MiniLM-L6-v2",
    },
    ValueType.JSON: {},
    ValueType.LOG_LEVEL: {"type": "string", "enum": ["debug", "info", "warning", "error"]},
    ValueType.FUNCTION: {"description": "in-process Python callable; never crosses the API"},
    ValueType.CODE: {"type": "string", "contentMediaType": "text/javascript"},
    ValueType.PATH: {"type": "string", "format": "path"},
    ValueType.SQL: {"type": "string", "contentMediaType": "application/sql"},
    ValueType.LANGUAGE: {"type": "string", "description": "language name or ISO code"},
    ValueType.SIMILARITY_METRIC: {"type": "string", "enum": ["cosine", "jaccard", "hamming"]},
    ValueType.ERROR: {
        "type": "object",
        "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
    },
}


@dataclass(frozen=True, kw_only=True)
class Port:
    """One named input or output of a task.

    An input is required when it has no default and is not ``optional``. An array port
    collects values: each incoming value is appended (a list is extended).
    """

    id: str
    name: str = ""
    value_type: ValueType = ValueType.ANY
    is_array: bool = False
    default: Any = MISSING
    optional: bool = False
    description: str = ""

    @property
    def label(self) -> str:
        return self.name or self.id.replace("_", " ").capitalize()

    @property
    def has_default(self) -> bool:
        return self.default is not MISSING

    @property
    def required(self) -> bool:
        return not self.has_default and not self.optional

    def fresh_default(self) -> Any:
        """A new copy of the default, so runs never share mutable defaults."""
        return copy.deepcopy(self.default)

    def json_schema(self) -> dict[str, Any]:
        # Deep copies: a caller editing the schema must not change the table or the default.
        item = copy.deepcopy(_SCHEMAS[self.value_type])
        if self.description:
            item["description"] = self.description
        schema = {"type": "array", "items": item} if self.is_array else item
        if self.has_default and _is_json(self.default):
            schema = {**schema, "default": self.fresh_default()}
        return schema

    def accepts(self, source: Port) -> bool:
        """Whether values of ``source`` may flow into this port."""
        if ValueType.ANY in (self.value_type, source.value_type):
            return True
        if self.value_type == source.value_type:
            return True
        numeric = {ValueType.NUMBER, ValueType.INTEGER}
        return self.value_type == ValueType.NUMBER and source.value_type in numeric


def _is_json(value: Any) -> bool:
    if value is None or isinstance(value, str | int | float | bool):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def merge_input(
    port: Port | None, current: Any, incoming: Any, *, spread: bool | None = None
) -> Any:
    """Merge an incoming value into a port's current value: arrays append, scalars overwrite.

    Into an array port, ``spread`` (the source port is itself an array) extends by the
    incoming items, otherwise the value is appended as one item — so one vector flowing
    into an array of vectors stays one vector. Unknown (None): lists and tuples spread.
    The current list is extended in place: it is always the run's own copy.
    """
    if port is None or not port.is_array:
        return incoming
    if spread is None:
        spread = isinstance(incoming, list | tuple)
    if current is MISSING or current is None:
        collected: list[Any] = []
    elif isinstance(current, list):
        collected = current
    else:
        collected = list(current) if isinstance(current, tuple) else [current]
    if spread:
        collected.extend(incoming if isinstance(incoming, list | tuple) else [incoming])
    else:
        collected.append(incoming)
    return collected
