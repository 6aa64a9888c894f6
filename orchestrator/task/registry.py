"""The task catalog: task type name -> task class."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from graphmesh.orchestrator.errors import UnknownTaskTypeError

if TYPE_CHECKING:
    from graphmesh.orchestrator.task.base import Task


class TaskRegistry:
    """Known task types. Registering a different class under a taken name is an error."""

    def __init__(self) -> None:
        self._types: dict[str, type[Task]] = {}

    def register(self, task_class: type[Task]) -> type[Task]:
        name = task_class.type
        existing = self._types.get(name)
        if existing is not None and _qualified(existing) != _qualified(task_class):
            raise ValueError(f"task type {name!r} is already registered by {_qualified(existing)}")
        self._types[name] = task_class
        return task_class

    def get(self, name: str) -> type[Task]:
        try:
            return self._types[name]
        except KeyError:
            raise UnknownTaskTypeError(name, list(self._types)) from None

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __iter__(self) -> Iterator[type[Task]]:
        return iter(sorted(self._types.values(), key=lambda cls: (cls.category, cls.type)))

    def names(self) -> list[str]:
        return sorted(self._types)


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


default_registry = TaskRegistry()
