"""Argument checks and the one JSON encoding every storage backend shares.

Every backend stores values as the text :func:`encode_json` produces and hands back what
:func:`decode_json` makes of it, so all four behave alike: results are fresh copies, tuples
come back as lists, and a value one backend refuses (NaN, a NUL character, which Postgres
``jsonb`` cannot hold) is refused by all of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict
from typing import Any

from graphmesh.orchestrator.ai.client import ModelInfo
from graphmesh.orchestrator.storage.base import JsonObject

# A JSON-escaped NUL that is not itself an escaped backslash followed by "u0000".
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def require_key(argument: str, value: object) -> str:
    """Return ``value`` if it is a non-empty string, else raise ``ValueError`` naming it."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{argument} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise ValueError(f"{argument} may not contain NUL characters")
    return value


def require_object(argument: str, value: object) -> JsonObject:
    """Return ``value`` if it is a dict, else raise ``TypeError`` naming it."""
    if not isinstance(value, dict):
        raise TypeError(f"{argument} must be a JSON object (dict), got {type(value).__name__}")
    return value


def unknown_model(model: str) -> ValueError:
    """The error for linking a task type to a model that was never saved."""
    return ValueError(f"unknown model {model!r}: save it before linking task types")


def encode_json(value: JsonObject) -> str:
    """Canonical text for a stored value; raises ``ValueError`` for what cannot round-trip."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    if _ESCAPED_NUL.search(text):
        raise ValueError("stored JSON may not contain NUL characters (Postgres jsonb rejects them)")
    return text


def decode_json(text: str) -> JsonObject:
    """A fresh dict from text written by :func:`encode_json`."""
    value = json.loads(text)
    if not isinstance(value, dict):
        raise ValueError(f"stored JSON is not an object: {text[:80]!r}")
    return value


def model_to_json(model: ModelInfo) -> JsonObject:
    """``model`` as a JSON object (``task_kinds`` becomes a list)."""
    if not isinstance(model, ModelInfo):
        raise TypeError(f"model must be a ModelInfo, got {type(model).__name__}")
    require_key("model.name", model.name)
    data = asdict(model)
    data["task_kinds"] = list(model.task_kinds)
    return data


def model_from_json(data: dict[str, Any]) -> ModelInfo:
    """The :class:`ModelInfo` that :func:`model_to_json` wrote."""
    return ModelInfo(
        name=data["name"],
        provider=data["provider"],
        task_kinds=tuple(data.get("task_kinds", ())),
        dimensions=data.get("dimensions"),
        context_window=data.get("context_window"),
        location=data.get("location"),
        params=dict(data.get("params", {})),
    )
