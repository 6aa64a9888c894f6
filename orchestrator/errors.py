"""The engine's exception tree. Foreign errors are translated into it at the seam.

GraphmeshError
├── GraphError
│   ├── GraphValidationError   (carries every GraphIssue found)
│   ├── UnknownTaskTypeError
│   └── AutoConnectError       (builder could not wire a new task)
└── TaskError                  (one task's run went wrong; names the task)
    ├── TaskFailedError        (the task raised)
    ├── TaskTimeoutError       (task or graph deadline)
    └── TaskAbortedError       (cancelled, or a sibling failed)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class GraphmeshError(Exception):
    """Base of every error graphmesh raises on purpose."""


class StoreUnavailableError(GraphmeshError):
    """A database (of runs, graphs, outputs) could not be reached, or the connection broke during a
    transaction (the server restarted, say); retrying later may succeed. The transaction was
    rolled back, unless the connection broke while its commit was on the way; run writes are
    fenced (a job completes or fails once), so writing them again is safe."""


class GraphError(GraphmeshError):
    """A graph is malformed or cannot be built."""


@dataclass(frozen=True, kw_only=True)
class GraphIssue:
    """One thing wrong with a graph, naming the task and port where it is."""

    code: str
    message: str
    task_id: str | None = None
    port: str | None = None

    def __str__(self) -> str:
        return self.message


class GraphValidationError(GraphError):
    """A graph failed validation; ``issues`` lists every problem found."""

    def __init__(self, issues: Sequence[GraphIssue]):
        self.issues = tuple(issues)
        super().__init__("invalid graph: " + "; ".join(str(issue) for issue in self.issues))


class UnknownTaskTypeError(GraphError):
    """A graph names a task type the registry does not know."""

    def __init__(self, task_type: str, known: Sequence[str] = ()):
        self.task_type = task_type
        hint = f" (known types: {', '.join(sorted(known))})" if known else ""
        super().__init__(f"unknown task type {task_type!r}{hint}")


class AutoConnectError(GraphError):
    """The builder found no port of earlier tasks for a required input of a new task."""


class TaskError(GraphmeshError):
    """A task's run went wrong."""

    def __init__(self, task_id: str, message: str):
        self.task_id = task_id
        super().__init__(f"task {task_id!r}: {message}")


class TaskFailedError(TaskError):
    """The task itself raised; the original exception is the ``__cause__``."""


class TaskTimeoutError(TaskError):
    """The task, or the whole graph, ran past its deadline."""


class TaskAbortedError(TaskError):
    """The task was stopped: the run was cancelled or another task failed."""
