"""Python source for JSON values and calls, laid out the way ``ruff format`` would.

A value or call that fits on its line stays on it; otherwise it is split one item per line
with a trailing comma. Strings prefer double quotes. Long strings are never split.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from typing import Any

LINE_WIDTH = 100
INDENT = "    "


class Code(str):
    """Source text used as it is (a variable name), not formatted as a value."""

    __slots__ = ()


def literal(value: Any) -> str:
    """One-line Python source that evaluates to ``value`` (a JSON value)."""
    if isinstance(value, Code):
        return str(value)
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, float):
        return _number(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{literal(k)}: {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(item) for item in value) + "]"
    return repr(value)


def _string(text: str) -> str:
    # Like ruff format: double quotes, unless single quotes need fewer escapes.
    quote = "'" if text.count('"') > text.count("'") else '"'
    quoted = repr(text)  # the escapes for control and unprintable characters
    return quoted if quoted[0] == quote else _requote(quoted[1:-1], quoted[0], quote)


def _requote(body: str, old: str, new: str) -> str:
    out, index = [], 0
    while index < len(body):
        if body[index] == "\\":
            pair = body[index : index + 2]
            out.append(old if pair == "\\" + old else pair)
            index += 2
            continue
        out.append("\\" + new if body[index] == new else body[index])
        index += 1
    return new + "".join(out) + new


def _number(value: float) -> str:
    if not math.isfinite(value):
        return f'float("{value}")'
    return repr(value).replace("e+", "e")  # ruff format writes 1e300, not 1e+300


def width(text: str) -> int:
    """Columns ``text`` takes, as ruff counts them: wide East Asian characters and emoji
    take two."""
    return sum(2 if unicodedata.east_asian_width(char) in "WF" else 1 for char in text)


def value_source(value: Any, depth: int = 0, prefix: int = 0) -> str:
    """``value`` as source at indentation ``depth``, after ``prefix`` characters on its line.

    The width counted includes a trailing comma, since values are usually items.
    """
    flat = literal(value)
    if len(INDENT) * depth + prefix + width(flat) + 1 <= LINE_WIDTH or not _splittable(value):
        return flat
    inner = INDENT * (depth + 1)
    if isinstance(value, dict):
        items = [_dict_item(key, item, depth + 1) for key, item in value.items()]
        return "{\n" + "".join(f"{inner}{item},\n" for item in items) + INDENT * depth + "}"
    items = [value_source(item, depth + 1) for item in value]
    return "[\n" + "".join(f"{inner}{item},\n" for item in items) + INDENT * depth + "]"


def _dict_item(key: Any, item: Any, depth: int) -> str:
    head = f"{literal(key)}: "
    return head + value_source(item, depth, width(head))


def _splittable(value: Any) -> bool:
    return isinstance(value, dict | list | tuple) and not isinstance(value, Code) and bool(value)


def call_source(function: str, args: Sequence[tuple[str, Any]]) -> str:
    """A call statement; ``args`` are ``(prefix, value)`` pairs, the prefix ``""`` for a
    positional argument, ``"name="`` for a keyword or ``"**"`` for an unpacked mapping.

    Like ruff format: the whole call on one line; else the arguments together on one
    indented line; else one argument per line with a trailing comma.
    """
    joined = ", ".join(prefix + literal(value) for prefix, value in args)
    if width(function) + width(joined) + 2 <= LINE_WIDTH or not args:
        return f"{function}({joined})"
    if len(INDENT) + width(joined) <= LINE_WIDTH:
        return f"{function}(\n{INDENT}{joined}\n)"
    lines = [f"{INDENT}{prefix}{value_source(value, 1, width(prefix))}," for prefix, value in args]
    return "\n".join([f"{function}(", *lines, ")"])
