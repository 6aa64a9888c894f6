"""Helpers shared by catalog tasks: JSON conversion of foreign values, input checks."""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from graphmesh.orchestrator.catalog.errors import TaskInputError

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def to_json_value(value: Any) -> Any:
    """A JSON-able copy of a database value: dates as ISO text, bytes as base64, decimals as
    numbers (int when integral), UUIDs as text; lists and dicts converted deeply."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): to_json_value(v) for k, v in value.items()}
    if isinstance(value, Sequence):
        return [to_json_value(item) for item in value]
    return str(value)


def check_identifier(name: Any, what: str) -> str:
    """A table or column name: letters, digits and ``_``, not starting with a digit.

    Names are also quoted when used; the check keeps error messages clear and rules out
    names that only work quoted.
    """
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise TaskInputError(f"{what} {name!r} is not a valid identifier (letters, digits, _)")
    return name


def check_rows(rows: Any) -> list[dict[str, Any]]:
    """Rows to insert: a list of objects whose keys are valid column names."""
    if isinstance(rows, Mapping):
        rows = [rows]
    if not isinstance(rows, list) or not all(isinstance(row, Mapping) for row in rows):
        raise TaskInputError("rows must be an array of objects (column name -> value)")
    for row in rows:
        if not row:
            raise TaskInputError("each row needs at least one column")
        for column in row:
            check_identifier(column, "column")
    return [dict(row) for row in rows]


def row_batches(rows: list[dict[str, Any]]) -> list[tuple[tuple[str, ...], list[dict[str, Any]]]]:
    """Consecutive rows with the same columns, so each batch is one INSERT statement.

    Grouping only neighbours keeps insertion order; a row leaving out a column lets the
    column's default apply instead of forcing NULL.
    """
    batches: list[tuple[tuple[str, ...], list[dict[str, Any]]]] = []
    for row in rows:
        columns = tuple(row)
        if batches and batches[-1][0] == columns:
            batches[-1][1].append(row)
        else:
            batches.append((columns, [row]))
    return batches


def check_params(params: Any) -> Sequence[Any] | Mapping[str, Any]:
    """Query parameters: an array (positional) or an object (named); None means none."""
    if params is None:
        return ()
    if isinstance(params, Mapping | list | tuple):
        return params
    raise TaskInputError(f"params must be an array or an object, not {type(params).__name__}")
