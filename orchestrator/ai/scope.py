"""Which task a model call is made for, so a remote ModelClient can say so on the wire.

The runner sets :data:`current_scope` around every task call; a gRPC ModelClient reads it
to send the run, task and tenant ids as metadata and to derive the call's deadline from the
task's timeout. Model calls outside a run (a test calling a client directly) have no scope.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True, slots=True)
class ModelCallScope:
    """The run and task a call serves; ``deadline`` is a ``time.monotonic()`` instant."""

    run_id: str
    task_id: str
    tenant: str | None = None
    deadline: float | None = None

    def remaining(self) -> float | None:
        """Seconds left before the task's timeout (never negative); ``None`` without one."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


current_scope: ContextVar[ModelCallScope | None] = ContextVar("graphmesh_model_scope", default=None)


@contextmanager
def model_scope(
    *, run_id: str, task_id: str, tenant: str | None, timeout: float | None
) -> Iterator[ModelCallScope]:
    """Set the scope of the model calls made inside the block."""
    deadline = None if timeout is None else time.monotonic() + float(timeout)
    scope = ModelCallScope(run_id=run_id, task_id=task_id, tenant=tenant, deadline=deadline)
    token = current_scope.set(scope)
    try:
        yield scope
    finally:
        current_scope.reset(token)
