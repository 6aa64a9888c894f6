"""A script's result, from the JSON text its worker sent, as a value every store holds.

JavaScript strings may hold NUL and lone surrogates, which JSON can carry but Postgres
text cannot, and which no other store should have to: such a result fails its task with
an error naming where the character is, rather than failing at the store later.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

from graphmesh.orchestrator.catalog.errors import JavaScriptError

# V8's JSON.stringify writes NUL and lone surrogates as escapes, and only them (and
# other control characters) in the \\u form: only such a text needs a closer look.
_SUSPECT: Final = re.compile(r"\\u(0000|[dD][89a-fA-F])")


def decode_result(text: str) -> Any:
    """The value of ``text``; an error for JSON too deep to decode or not storable."""
    try:
        value = json.loads(text)
    except RecursionError:
        raise JavaScriptError("the JavaScript result is nested too deeply") from None
    except ValueError as exc:
        raise JavaScriptError(f"the JavaScript result is not JSON: {exc}") from None
    if _SUSPECT.search(text):
        where = _unstorable(value, "output")
        if where is not None:
            raise JavaScriptError(
                f"the JavaScript result holds {where[1]} at {where[0]}; results must be "
                "text without NUL characters or unpaired surrogates"
            )
    return value


def _unstorable(value: Any, path: str) -> tuple[str, str] | None:
    """The path of the first string (or key) in ``value`` that no store can hold, and
    what is wrong with it."""
    if isinstance(value, str):
        problem = _string_problem(value)
        return None if problem is None else (path, problem)
    if isinstance(value, list):
        for index, item in enumerate(value):
            if (found := _unstorable(item, f"{path}[{index}]")) is not None:
                return found
    if isinstance(value, dict):
        for key, item in value.items():
            if (problem := _string_problem(key)) is not None:
                return f"{path} (a key)", problem
            if (found := _unstorable(item, f"{path}[{json.dumps(key)}]")) is not None:
                return found
    return None


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "an unpaired surrogate"
    return None
