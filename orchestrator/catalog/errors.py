"""Errors raised by catalog tasks. The runner wraps them into ``TaskFailedError`` (as cause).

GraphmeshError
└── CatalogTaskError           (a catalog task refused its inputs or its work failed)
    ├── TaskInputError         (an input has the wrong shape or value)
    └── JavaScriptError        (user JavaScript threw; carries the JS message)
        ├── JavaScriptTimeoutError
        ├── JavaScriptMemoryError
        └── JavaScriptSandboxError (its sandbox process died, or none could start)
"""

from __future__ import annotations

from graphmesh.orchestrator.errors import GraphmeshError


class CatalogTaskError(GraphmeshError):
    """A catalog task could not do its work."""


class TaskInputError(CatalogTaskError, ValueError):
    """An input value has the wrong shape or is out of range."""


class JavaScriptError(CatalogTaskError):
    """User JavaScript failed; ``details`` keeps the engine's full text (stack included)."""

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details or message


class JavaScriptTimeoutError(JavaScriptError):
    """User JavaScript ran past its time limit and was stopped."""


class JavaScriptMemoryError(JavaScriptError):
    """User JavaScript went over its memory limit and was stopped."""


class JavaScriptSandboxError(JavaScriptError):
    """The sandbox process running user JavaScript died (a crash: permanent), or none
    could be started (``retryable``: the queue may try the task again later)."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
