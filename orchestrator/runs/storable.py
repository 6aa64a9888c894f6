"""What the run stores can hold, one rule for every store (memory, SQLite, Postgres).

Postgres refuses NUL (U+0000) in text and in ``jsonb``; no store can encode a lone
surrogate (``"\\ud800"``) as UTF-8; JSON has no NaN or Infinity; protobuf parsers refuse
messages nested more than 100 levels deep, so a value much deeper than
:data:`MAX_OUTPUT_DEPTH` could be stored but never read back over the API. The API edge
checks request values with :func:`value_problems`; a task output that breaks the rule
fails its task once, permanently (:func:`check_output`); text that only describes
something (error and progress messages) is made storable with :func:`storable_text`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from graphmesh.orchestrator.errors import GraphmeshError, TaskFailedError
from graphmesh.orchestrator.queue.errors import PermanentJobError

MAX_OUTPUT_DEPTH = 32
"""Nesting of a task's output (the output object itself is depth 1): GetTaskOutput's
Struct needs three protobuf levels per JSON level, and parsers stop at 100."""
MAX_INT = 2**63 - 1
_SURROGATE = re.compile("[\ud800-\udfff]")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*\Z")


class RunStoreError(GraphmeshError):
    """The run store failed a statement for another reason than being unreachable (a bug,
    or a deadlock): may pass on retry. Its message carries a reference to the log, never
    the database's own text."""


class UnstorableValueError(PermanentJobError):
    """The run store refused a value (a rule above was missed). Permanent: a job whose
    write raised it is dead-lettered at once, not retried. The message never carries the
    database's own text."""


@dataclass(frozen=True, kw_only=True)
class ValueProblem:
    """One reason a JSON value cannot be stored: where (``path``) and what (``reason``,
    ``description``)."""

    path: str
    reason: str
    description: str


Label = Callable[[Any, int], str]


def _index(item: Any, index: int) -> str:
    return str(index)


def value_problems(
    value: Any, path: str, *, max_depth: int, label: Label = _index
) -> Iterator[ValueProblem]:
    """Every problem of a JSON value in document order (see the module docs): a string or
    key with NUL or a lone surrogate, a number that is not finite, an integer outside
    64 bits, a type JSON lacks, nesting deeper than ``max_depth`` (a container is one
    level; nothing below the limit is looked at). ``label(item, index)`` names list
    items in paths (default: the index)."""
    if is_storable(value, max_depth):
        return  # the common case, checked without building a path for every value
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        item, where, depth = stack.pop()
        kind = type(item)
        if kind is dict or kind is list or kind is tuple:
            if depth >= max_depth:
                yield ValueProblem(
                    path=where,
                    reason="TOO_DEEP",
                    description=f"nested more than {max_depth} levels deep",
                )
                continue
            stack.extend(reversed(list(_children(item, where, depth + 1, label))))
            continue
        problem = scalar_problem(item)
        if problem is not None:
            yield ValueProblem(path=where, reason=problem[0], description=problem[1])


def is_storable(value: Any, max_depth: int) -> bool:
    """Whether :func:`value_problems` would find nothing (a fast check, no paths)."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    pop, push = stack.pop, stack.append
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is str:
            if "\x00" in item or (not item.isascii() and _SURROGATE.search(item)):
                return False
        elif kind is dict:
            if depth >= max_depth:
                return False
            for key, child in item.items():
                if (
                    type(key) is not str
                    or "\x00" in key
                    or (not key.isascii() and _SURROGATE.search(key))
                ):
                    return False
                push((child, depth + 1))
        elif kind is list or kind is tuple:
            if depth >= max_depth:
                return False
            for child in item:
                push((child, depth + 1))
        elif kind is float:
            if not math.isfinite(item):
                return False
        elif kind is int:
            if not -MAX_INT - 1 <= item <= MAX_INT:
                return False
        elif item is not None and kind is not bool:
            return False
    return True


def nested_deeper(value: Any, max_depth: int) -> bool:
    """Whether a JSON value nests more than ``max_depth`` containers (scalars unread)."""
    if type(value) not in _CONTAINERS:
        return False
    level, depth = [value], 0
    while level:  # one level of containers at a time
        if depth >= max_depth:
            return True
        level = [
            child
            for item in level
            for child in (item.values() if type(item) is dict else item)
            if type(child) in _CONTAINERS
        ]
        depth += 1
    return False


_CONTAINERS = (dict, list, tuple)


def _children(item: Any, where: str, depth: int, label: Label) -> Iterator[tuple[Any, str, int]]:
    """The items of a container with their paths; a key that is itself unstorable is
    one more item (a string, checked like any other)."""
    if isinstance(item, dict):
        for key, child in item.items():
            name = key if isinstance(key, str) else str(key)
            child_path = f"{where}{key_path(name)}" if where else key_text(name)
            if not isinstance(key, str | int | float | bool) and key is not None:
                yield key, child_path, depth  # JSON has no such key: reported as NOT_JSON
            elif isinstance(key, str) and text_problem(key) is not None:
                yield key, child_path, depth
            yield child, child_path, depth
        return
    for index, child in enumerate(item):
        yield child, f"{where}[{label(child, index)}]", depth


def scalar_problem(item: Any) -> tuple[str, str] | None:
    """``(reason, description)`` when a JSON scalar cannot be stored, else ``None``."""
    if item is None or isinstance(item, bool):
        return None
    if isinstance(item, str):
        return text_problem(item)
    if isinstance(item, int):
        if -MAX_INT - 1 <= item <= MAX_INT:
            return None
        return "NUMBER_RANGE", "integers must fit in 64 bits"
    if isinstance(item, float):
        return None if math.isfinite(item) else ("NOT_FINITE", "numbers must be finite")
    return "NOT_JSON", f"a {type(item).__name__} is not a JSON value"


def text_problem(text: str) -> tuple[str, str] | None:
    """``(reason, description)`` when a string cannot be stored, else ``None``."""
    if "\x00" in text:
        return "NUL", "text must not contain NUL (U+0000)"
    if not text.isascii() and _SURROGATE.search(text):
        return "INVALID_UTF8", "text must be valid Unicode (it holds a lone surrogate)"
    return None


def key_path(key: str) -> str:
    """How an object key extends a field path: ``.name``, or ``["any key"]``."""
    return f".{key}" if _NAME.match(key) else f"[{quoted(key)}]"


def key_text(key: str) -> str:
    """A key as the first element of a field path."""
    return key if _NAME.match(key) else f"[{quoted(key)}]"


def quoted(text: str, limit: int = 64) -> str:
    """``text`` as a JSON string literal in ASCII (NUL and surrogates escaped), cut to
    ``limit`` characters: safe to echo in any message."""
    cut = text if len(text) <= limit else text[:limit] + "..."
    return json.dumps(cut, ensure_ascii=True)


def storable_text(text: str) -> str:
    """``text`` with NUL and lone surrogates written as escapes (``\\x00``, ``\\ud800``):
    storable everywhere and encodable as UTF-8."""
    if text_problem(text) is None:
        return text
    safe = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return safe.replace("\x00", "\\x00")


def storable_details(details: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Progress details as stored: dropped (``None``) when they break the rule."""
    if not details:
        return None
    plain = dict(details)
    problem = next(value_problems(plain, "", max_depth=MAX_OUTPUT_DEPTH), None)
    return None if problem is not None else plain


def check_output(task_id: str, output: Any) -> None:
    """Raise :class:`TaskFailedError` (a permanent failure) when a task's output cannot be
    stored, naming the first offending value (``outputs.<port>...``). An output that is
    not a mapping is the runner's to report."""
    if not isinstance(output, Mapping):
        return
    problem = next(value_problems(dict(output), "outputs", max_depth=MAX_OUTPUT_DEPTH), None)
    if problem is not None:
        raise TaskFailedError(
            task_id, f"its output cannot be stored: {problem.path}: {problem.description}"
        )
