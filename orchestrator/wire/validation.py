"""Request validation at the edge: what a request may hold before any core call sees it.

Two passes. :func:`check_request` walks every set field of any request message (through
its protobuf descriptor, so a new field cannot be missed): names (ids, keys, types, ports,
labels) are short and free of control characters, free text holds no NUL, enum values
are known, maps stay small. JSON values (``Struct`` fields, ``graph_json``) are checked
where :mod:`.convert` turns them into Python values: no NUL or lone surrogate in strings
or keys, finite numbers, integers in 64 bits, bounded nesting (:func:`check_json`,
:func:`parse_json`, :func:`check_graph_shape`). Every violation is collected and raised as
one :class:`InvalidRequestError` (INVALID_ARGUMENT with ``google.rpc.BadRequest`` field
violations such as ``inputs.x``, ``labels["k"]``, ``tasks[<id>].defaults.y``, ``timeout``).

Depth limits keep every response parseable: protobuf parsers refuse messages nested more
than 100 levels, a JSON level inside a ``Struct`` costs three and a subgraph two, and a
run's graph sits five levels down in GetRunResponse (see :class:`RequestLimits`).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.runs.storable import (
    MAX_INT,
    key_path,
    nested_deeper,
    quoted,
    text_problem,
    value_problems,
)

MAX_VIOLATIONS = 20
PROTOBUF_DEPTH = 100
_CONTROL = re.compile("[\x00-\x1f\x7f]")
_SKIPPED = frozenset(
    {
        "google.protobuf.Struct",
        "google.protobuf.Value",
        "google.protobuf.ListValue",
        "google.protobuf.Duration",  # checked where converted (convert.run_timeout)
    }
)
_TEXT_FIELDS = frozenset({"description", "reason", "name"})
_UNLIMITED_TEXT = frozenset({"graph_json"})  # bounded by the request size quota
_TOKEN_FIELDS = frozenset({"page_token"})
MAX_TOKEN_BYTES = 2048


@dataclass(frozen=True, kw_only=True)
class RequestLimits:
    """What one request may hold (see ``docs/security.md``, "Request limits").

    ``json_depth``: nesting of a task's defaults or config and of run inputs (an object
    is one level); ``graph_depth``: subgraphs inside subgraphs; ``3 * json_depth + 2 *
    graph_depth`` must stay within 96, or responses carrying the graph could not be
    parsed. ``name_bytes``: ids, keys, types, ports, label keys and values (UTF-8 bytes);
    ``text_bytes``: names, descriptions and reasons; ``labels``: entries of a label map;
    ``max_timeout_s``: a run's timeout; page sizes are clamped, never refused.
    """

    json_depth: int = 24
    graph_depth: int = 8
    name_bytes: int = 256
    text_bytes: int = 64 * 1024
    labels: int = 64
    max_timeout_s: float = 7 * 24 * 3600.0
    default_page_size: int = 50
    max_page_size: int = 1000

    def __post_init__(self) -> None:
        levels = 3 * self.json_depth + 2 * self.graph_depth + 4
        if levels > PROTOBUF_DEPTH:
            raise ValueError(
                f"json_depth {self.json_depth} with graph_depth {self.graph_depth} would make "
                f"responses {levels} protobuf levels deep; parsers stop at {PROTOBUF_DEPTH}"
            )

    @property
    def document_depth(self) -> int:
        """How deep a whole graph document may be: ``json_depth`` inside each of
        ``graph_depth`` + 1 levels of graph, tasks list and task object."""
        return self.json_depth + 3 * (self.graph_depth + 1)


@dataclass(frozen=True, kw_only=True)
class FieldViolation:
    """One thing wrong with a request: where (``field``), what, and a reason code."""

    field: str
    description: str
    reason: str


class InvalidRequestError(GraphmeshError):
    """A request the server will not serve as sent; ``violations`` name each field."""

    def __init__(self, violations: Iterable[FieldViolation], message: str = "") -> None:
        self.violations = tuple(violations)[:MAX_VIOLATIONS]
        first = self.violations[0] if self.violations else None
        if not message:
            message = "invalid request" if first is None else f"{first.field}: {first.description}"
            if len(self.violations) > 1:
                message += f" (and {len(self.violations) - 1} more)"
        super().__init__(message)


def raise_if(violations: Iterable[FieldViolation]) -> None:
    found = list(_first(violations, MAX_VIOLATIONS))
    if found:
        raise InvalidRequestError(found)


def violation(field: str, description: str, reason: str) -> FieldViolation:
    return FieldViolation(field=field, description=description, reason=reason)


# -- JSON values -------------------------------------------------------------------------
def check_json(value: Any, path: str, limits: RequestLimits) -> None:
    """Raise :class:`InvalidRequestError` for every problem of a JSON value (names its
    path: ``inputs.x``, ``tasks[a].defaults.y[0]``)."""
    raise_if(json_violations(value, path, limits.json_depth))


def json_violations(
    value: Any, path: str, max_depth: int, *, by_id: bool = False
) -> Iterator[FieldViolation]:
    """Violations of a JSON value; ``by_id`` names list items that are objects with a
    plain ``id`` by that id (graph documents: ``tasks[<id>]``)."""
    label = _id_label if by_id else _index_label
    for problem in value_problems(value, path, max_depth=max_depth, label=label):
        yield violation(problem.path, problem.description, problem.reason)


def parse_json(text: str, field: str, limits: RequestLimits) -> Any:
    """``text`` parsed as a graph document: finite numbers, integers in 64 bits, bounded
    nesting, storable strings; :class:`InvalidRequestError` naming ``field`` otherwise."""
    try:
        data = json.loads(text, parse_constant=_refuse_constant, parse_float=_float, parse_int=_int)
    except RecursionError:
        raise InvalidRequestError(
            [violation(field, f"nested more than {limits.document_depth} levels", "TOO_DEEP")]
        ) from None
    except json.JSONDecodeError as exc:
        raise InvalidRequestError(
            [violation(field, f"not valid JSON: {exc}", "BAD_JSON")]
        ) from None
    except ValueError as exc:  # our own, or an integer of thousands of digits
        text = str(exc) if isinstance(exc, _NumberError) else "a number is too long"
        raise InvalidRequestError([violation(field, text, "BAD_JSON")]) from None
    if _SUSPECT_ESCAPE.search(text) or nested_deeper(data, limits.document_depth):
        raise_if(json_violations(data, "", limits.document_depth, by_id=True))
    return data


# Parsed strictly, a JSON text holds NUL or a lone surrogate only as an escape (raw
# control characters are refused, and protobuf let no invalid UTF-8 in): text without
# such an escape is checked for depth alone, not value by value.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class _NumberError(ValueError):
    pass


def _refuse_constant(name: str) -> Any:
    raise _NumberError(f"{name} is not a JSON number (numbers must be finite)")


def _float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise _NumberError(f"{text[:32]} is out of range (numbers must be finite)")
    return number


def _int(text: str) -> int:
    number = int(text)
    if not -MAX_INT - 1 <= number <= MAX_INT:
        raise _NumberError(f"{text[:32]} is out of range (integers must fit in 64 bits)")
    return number


def check_graph_shape(graph: Any, limits: RequestLimits, *, parsed: bool = False) -> None:
    """Nesting limits of a graph (graph JSON or dependency JSON): each task's defaults
    and config within ``json_depth`` (and storable, unless ``parsed`` by
    :func:`parse_json`, which checked every value), subgraphs within ``graph_depth``;
    ids, types and ports are names."""
    # A parsed document no deeper than this cannot hold defaults or config too deep.
    shallow = parsed and not nested_deeper(graph, limits.json_depth + 2)
    shape = _Shape(limits=limits, parsed=parsed, shallow=shallow)
    raise_if(_shape_violations(graph, "", shape, 0))


@dataclass(frozen=True, kw_only=True)
class _Shape:
    limits: RequestLimits
    parsed: bool
    shallow: bool

    def values(self, value: Any, path: str) -> Iterator[FieldViolation]:
        if self.shallow:
            return
        if self.parsed and not nested_deeper(value, self.limits.json_depth):
            return  # its contents were checked with the whole document
        yield from json_violations(value, path, self.limits.json_depth)


def _shape_violations(
    graph: Any, prefix: str, shape: _Shape, level: int
) -> Iterator[FieldViolation]:
    limits = shape.limits
    dependency_form = isinstance(graph, list)
    items = graph if dependency_form else graph.get("tasks") if isinstance(graph, dict) else None
    if not isinstance(items, list):
        return
    values, nested = (
        (("input", "config"), "subtasks")
        if dependency_form
        else (
            ("defaults", "config"),
            "subgraph",
        )
    )
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            continue
        where = f"{prefix}tasks[{task_label(item.get('id'), index)}]"
        yield from _names_in(item, ("id", "type"), where, limits)
        if dependency_form:
            yield from _dependency_names(item.get("dependencies"), f"{where}.dependencies", limits)
        for key in values:
            if item.get(key) is not None:
                yield from shape.values(item[key], f"{where}.{key}")
        if item.get(nested) is None:
            continue
        if level >= limits.graph_depth:
            yield violation(
                f"{where}.{nested}",
                f"subgraphs nest more than {limits.graph_depth} levels deep",
                "TOO_DEEP",
            )
            continue
        yield from _shape_violations(item[nested], f"{where}.{nested}.", shape, level + 1)
    flows = None if dependency_form else graph.get("dataflows")
    for index, flow in enumerate(flows if isinstance(flows, list) else ()):
        if isinstance(flow, dict):
            yield from _names_in(flow, _FLOW_FIELDS, f"{prefix}dataflows[{index}]", limits)


_FLOW_FIELDS = ("source_task", "source_port", "target_task", "target_port")


def _names_in(
    item: Mapping[str, Any], keys: Iterable[str], where: str, limits: RequestLimits
) -> Iterator[FieldViolation]:
    """Name rules for the string fields ``keys`` of a graph object (ids become keys of
    indexed columns: they must stay short)."""
    for key in keys:
        if isinstance(item.get(key), str):
            yield from _name_violations(item[key], f"{where}.{key}", limits)


def _dependency_names(deps: Any, where: str, limits: RequestLimits) -> Iterator[FieldViolation]:
    if not isinstance(deps, dict):
        return
    for port, sources in deps.items():
        port_path = f"{where}{key_path(port)}"
        yield from _name_violations(port, port_path, limits)
        for source in sources if isinstance(sources, list) else [sources]:
            if isinstance(source, dict):
                yield from _names_in(source, ("id", "output"), port_path, limits)


def _id_label(item: Any, index: int) -> str:
    return task_label(item.get("id"), index) if isinstance(item, dict) else str(index)


def _index_label(item: Any, index: int) -> str:
    return str(index)


def task_label(task_id: Any, index: int) -> str:
    """How a task is named in a field path: its id when that is a plain short name,
    else its index."""
    if isinstance(task_id, str) and task_id and len(task_id) <= 64 and not _odd(task_id):
        return task_id
    return str(index)


def _odd(name: str) -> bool:
    return bool(_CONTROL.search(name)) or text_problem(name) is not None or "]" in name


# -- messages ----------------------------------------------------------------------------
def check_request(message: Message, limits: RequestLimits) -> None:
    """Raise :class:`InvalidRequestError` for every rule a request's fields break (see
    the module docs); Struct values and durations are checked where converted."""
    raise_if(_message_violations(message, "", limits))


def _message_violations(
    message: Message, prefix: str, limits: RequestLimits
) -> Iterator[FieldViolation]:
    for field, value in message.ListFields():
        path = _field_path(prefix, field)
        if field.message_type is not None and field.message_type.GetOptions().map_entry:
            yield from _map_violations(field, value, path, limits)
        elif field.is_repeated:
            for index, item in enumerate(value):
                label = task_label(getattr(item, "id", None), index)
                yield from _value_violations(field, item, f"{path}[{label}]", limits)
        else:
            yield from _value_violations(field, value, path, limits)


def _field_path(prefix: str, field: FieldDescriptor) -> str:
    # A request's graph is named by its content: tasks[<id>]..., as graph issues are.
    if not prefix and field.message_type is not None and field.message_type.name == "Graph":
        return ""
    return f"{prefix}.{field.name}" if prefix else field.name


def _value_violations(
    field: FieldDescriptor, value: Any, path: str, limits: RequestLimits
) -> Iterator[FieldViolation]:
    if field.message_type is not None:
        if field.message_type.full_name not in _SKIPPED:
            yield from _message_violations(value, path, limits)
    elif field.enum_type is not None:
        if field.enum_type.values_by_number.get(value) is None:
            yield violation(path, f"unknown {field.enum_type.name} value {value}", "UNKNOWN_ENUM")
    elif field.type == FieldDescriptor.TYPE_STRING:
        yield from _string_violations(field.name, value, path, limits)


def _map_violations(
    field: FieldDescriptor, entries: Mapping[str, Any], path: str, limits: RequestLimits
) -> Iterator[FieldViolation]:
    if len(entries) > limits.labels:
        yield violation(path, f"more than {limits.labels} entries", "TOO_MANY")
        return
    assert field.message_type is not None  # a map field's entry type
    value_field = field.message_type.fields_by_name["value"]
    for key, value in entries.items():
        where = f"{path}[{quoted(key)}]"
        yield from _name_violations(key, where, limits)
        yield from _value_violations(value_field, value, where, limits)


def _string_violations(
    name: str, text: str, path: str, limits: RequestLimits
) -> Iterator[FieldViolation]:
    if name in _UNLIMITED_TEXT:
        yield from _text_violations(text, path, None)
    elif name in _TOKEN_FIELDS:
        yield from _text_violations(text, path, MAX_TOKEN_BYTES)
    elif name in _TEXT_FIELDS:
        yield from _text_violations(text, path, limits.text_bytes)
    else:
        yield from _name_violations(text, path, limits)


def _text_violations(text: str, path: str, limit: int | None) -> Iterator[FieldViolation]:
    problem = text_problem(text)
    if problem is not None:
        yield violation(path, problem[1], problem[0])
    elif limit is not None and len(text.encode()) > limit:
        yield violation(path, f"longer than {limit} bytes", "TOO_LONG")


def _name_violations(text: str, path: str, limits: RequestLimits) -> Iterator[FieldViolation]:
    problem = text_problem(text)
    if problem is not None:
        yield violation(path, problem[1], problem[0])
    elif _CONTROL.search(text):
        yield violation(path, "names must not contain control characters", "CONTROL_CHARACTER")
    elif len(text.encode()) > limits.name_bytes:
        yield violation(path, f"longer than {limits.name_bytes} bytes", "TOO_LONG")


# -- scalars -----------------------------------------------------------------------------
def check_timeout(seconds: float, limits: RequestLimits) -> float:
    """A run timeout in seconds: positive and at most ``max_timeout_s``."""
    if not math.isfinite(seconds) or seconds <= 0:
        raise InvalidRequestError([violation("timeout", "must be positive", "OUT_OF_RANGE")])
    if seconds > limits.max_timeout_s:
        raise InvalidRequestError(
            [violation("timeout", f"must be at most {limits.max_timeout_s:g} s", "OUT_OF_RANGE")]
        )
    return seconds


def clamp_page_size(requested: int, limits: RequestLimits) -> int:
    """0 (or less) means the default; anything above the cap is capped."""
    return limits.default_page_size if requested <= 0 else min(requested, limits.max_page_size)


def _first(items: Iterable[FieldViolation], count: int) -> Iterator[FieldViolation]:
    for index, item in enumerate(items):
        if index >= count:
            return
        yield item


__all__ = [
    "FieldViolation",
    "InvalidRequestError",
    "RequestLimits",
    "check_graph_shape",
    "check_json",
    "check_request",
    "check_timeout",
    "clamp_page_size",
    "parse_json",
]
