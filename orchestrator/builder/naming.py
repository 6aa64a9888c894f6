"""Builder method names derived from task type names.

``TextEmbeddingTask`` becomes ``text_embedding``; ``HTTPRequestTask`` becomes ``http_request``;
a name that is a Python keyword gets a trailing underscore (``LambdaTask`` -> ``lambda_``).
Lookup also accepts the name without underscores (``javascript`` for ``JavaScriptTask``).
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable

# A word boundary sits before an uppercase letter that follows a lowercase letter or digit,
# and before the last capital of an acronym followed by a lowercase letter (HTTPRequest).
_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def method_name(task_type: str) -> str:
    """The builder method for a task type: ``TextEmbeddingTask`` -> ``text_embedding``."""
    base = task_type.removesuffix("Task") or task_type
    name = _BOUNDARY.sub("_", base).lower()
    return f"{name}_" if keyword.iskeyword(name) else name


def _squashed(name: str) -> str:
    return name.replace("_", "").lower()


def resolve_method(name: str, task_types: Iterable[str]) -> str | None:
    """The task type a builder method name stands for, or None.

    An exact derived name wins; otherwise the name without underscores must match one
    type alone (two types squashing to the same name are ambiguous and match neither).
    """
    types = list(task_types)
    exact = [t for t in types if method_name(t) == name]
    if len(exact) == 1:
        return exact[0]
    loose = [t for t in types if _squashed(method_name(t)) == _squashed(name)]
    return loose[0] if len(loose) == 1 else None
