"""Cache keys: sha256 of canonical JSON of the merged inputs, the task type and version.

Provenance is never part of the key. Inputs that are not JSON (a Python callable, bytes)
make a task uncacheable rather than keyed by something unstable like ``repr``.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from graphmesh.orchestrator.task.base import Task, TaskInput, TaskKind

_UNCACHEABLE_KINDS = frozenset({TaskKind.OUTPUT, TaskKind.COMPOUND, TaskKind.ARRAY})


def canonical_json(value: Any) -> str:
    """JSON with keys sorted at every depth and no insignificant whitespace."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def is_cacheable(task: Task) -> bool:
    return task.cacheable and not task.side_effects and task.kind not in _UNCACHEABLE_KINDS


def cache_key(task: Task, inputs: TaskInput) -> str | None:
    """The key for ``task`` run on ``inputs``, or None when the inputs are not JSON."""
    try:
        payload = canonical_json({"type": task.type, "version": task.version, "inputs": inputs})
    except (TypeError, ValueError):
        return None
    return hashlib.sha256(payload.encode()).hexdigest()
