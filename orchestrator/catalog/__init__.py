"""The task catalog. Importing this package registers every catalog task type.

:func:`catalog_entries` describes each registered type as JSON: what ``graphmesh tasks``
prints and ``ListTaskTypes`` returns, enough for a no-code editor to offer the task.
"""

from __future__ import annotations

import inspect
import json
from typing import Any

from graphmesh.orchestrator.catalog import (
    ai,
    documents,
    files,
    javascript,
    postgres_tasks,
    rows,
    similarity,
    sqlite_tasks,
    utility,
)
from graphmesh.orchestrator.catalog.ai import DEFAULT_CHAT_MODEL, DEFAULT_EMBEDDING_MODEL
from graphmesh.orchestrator.catalog.errors import (
    CatalogTaskError,
    JavaScriptError,
    JavaScriptMemoryError,
    JavaScriptTimeoutError,
    TaskInputError,
)
from graphmesh.orchestrator.task import Port, Task, TaskRegistry, default_registry

__all__ = [
    "DEFAULT_CHAT_MODEL",
    "DEFAULT_EMBEDDING_MODEL",
    "CatalogTaskError",
    "JavaScriptError",
    "JavaScriptMemoryError",
    "JavaScriptTimeoutError",
    "TaskInputError",
    "ai",
    "catalog_entries",
    "documents",
    "files",
    "javascript",
    "postgres_tasks",
    "rows",
    "similarity",
    "sqlite_tasks",
    "task_entry",
    "utility",
]


def catalog_entries(registry: TaskRegistry = default_registry) -> list[dict[str, Any]]:
    """One JSON-able description per registered task type, ordered by category and type."""
    return [task_entry(cls) for cls in registry]


def task_entry(cls: type[Task]) -> dict[str, Any]:
    """The JSON description of one task type: metadata and declared ports."""
    return {
        "type": cls.type,
        "category": cls.category,
        "description": cls.description or _first_paragraph(cls),
        "side_effects": cls.side_effects,
        "cacheable": cls.cacheable,
        "kind": str(cls.kind),
        "inputs": [port_entry(port) for port in cls.inputs],
        "outputs": [port_entry(port) for port in cls.outputs],
    }


def port_entry(port: Port) -> dict[str, Any]:
    """A port as JSON; ``default`` is null when the port has none (see ``required``)."""
    default = port.default if port.has_default and _is_json(port.default) else None
    return {
        "id": port.id,
        "name": port.label,
        "value_type": str(port.value_type),
        "json_schema": port.json_schema(),
        "is_array": port.is_array,
        "required": port.required,
        "default": default,
    }


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _first_paragraph(cls: type[Task]) -> str:
    doc = inspect.getdoc(cls) or ""
    return " ".join(doc.split("\n\n", 1)[0].split())
