"""Domain types of runs and run events, independent of storage and of protobuf.

The gRPC servicer converts these to and from ``graphmesh.v1`` messages in one place; the
run services (in-memory, SQLite, Postgres) produce and persist them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from graphmesh.orchestrator.ai.usage import NO_TASK_USAGE, TaskUsage, total_usage
from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.errors import StoreUnavailableError as StoreUnavailableError
from graphmesh.orchestrator.task.base import TaskStatus

JsonObject = dict[str, Any]
T = TypeVar("T")


class RunState(StrEnum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLING = "CANCELLING"
    CANCELLED = "CANCELLED"

    @property
    def finished(self) -> bool:
        return self in (RunState.COMPLETED, RunState.FAILED, RunState.CANCELLED)


class RunEventKind(StrEnum):
    RUN_CREATED = "RUN_CREATED"
    RUN_STARTED = "RUN_STARTED"
    RUN_COMPLETED = "RUN_COMPLETED"
    RUN_FAILED = "RUN_FAILED"
    RUN_CANCELLING = "RUN_CANCELLING"
    RUN_CANCELLED = "RUN_CANCELLED"
    RUN_RESUMED = "RUN_RESUMED"
    TASK_STARTED = "TASK_STARTED"
    TASK_PROGRESS = "TASK_PROGRESS"
    TASK_COMPLETED = "TASK_COMPLETED"
    TASK_FAILED = "TASK_FAILED"
    TASK_ABORTED = "TASK_ABORTED"
    TASK_SKIPPED = "TASK_SKIPPED"


@dataclass(frozen=True, kw_only=True)
class RunEventRecord:
    """One entry of a run's event log; ``seq`` starts at 1 with no gaps per run."""

    run_id: str
    seq: int
    time: datetime
    kind: RunEventKind
    run_status: RunState
    task_id: str = ""
    status: TaskStatus | None = None
    progress: float = 0.0
    message: str = ""
    error: str | None = None
    error_type: str | None = None
    output_ref: str = ""
    details: JsonObject | None = None
    traceparent: str | None = None


@dataclass(frozen=True, kw_only=True)
class TaskState:
    task_id: str
    type: str
    status: TaskStatus
    progress: float = 0.0
    error: str | None = None
    attempts: int = 0
    output_ref: str = ""
    # Tokens and estimated cost of the task's model calls (of its last attempt).
    usage: TaskUsage = NO_TASK_USAGE


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    run_id: str
    tenant: str
    status: RunState
    graph: JsonObject
    inputs: JsonObject
    labels: Mapping[str, str]
    idempotency_key: str | None
    created_at: datetime
    updated_at: datetime
    error: str | None = None
    last_seq: int = 0
    tasks: tuple[TaskState, ...] = ()
    started_at: datetime | None = None
    ended_at: datetime | None = None
    # The W3C trace context the run was created in (its jobs and events continue it).
    traceparent: str | None = None
    # Set only on what create_run returns: the idempotency key matched this existing run.
    deduplicated: bool = False
    # The run's usage as the server reported it (the SDK's records, whose basic view has
    # no tasks to sum); None: sum the tasks'.
    reported_usage: TaskUsage | None = None

    @property
    def usage(self) -> TaskUsage:
        """The run's usage: its tasks' summed."""
        if self.reported_usage is not None:
            return self.reported_usage
        return total_usage([task.usage for task in self.tasks])


@dataclass(frozen=True, kw_only=True)
class RunFilter:
    tenant: str
    statuses: frozenset[RunState] = frozenset()
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class Page(Generic[T]):
    items: Sequence[T]
    next_page_token: str = ""


@dataclass(frozen=True, kw_only=True)
class TenantUsage:
    """What a tenant holds now, for its quotas: runs not yet ended (pending, running or
    cancelling), their tasks not yet settled, and the run of an idempotency key if the
    key is known (its CreateRun is a repeat, which quotas never refuse)."""

    active_runs: int
    open_tasks: int
    existing_run: str | None = None


class RunNotFoundError(GraphmeshError):
    """No run (or task) with that id is visible to the caller's tenant."""


class RunStateError(GraphmeshError):
    """The run is not in a state that allows the operation (e.g. resuming a running run)."""


class InvalidPageTokenError(GraphmeshError):
    """A page token was not produced by this listing (or was tampered with)."""


class RunService(Protocol):
    """What the OrchestratorService exposes about runs; tenants never see each other's runs."""

    async def create_run(
        self,
        *,
        graph: JsonObject,
        inputs: JsonObject,
        tenant: str,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 (the run's deadline, not this call's)
        traceparent: str | None = None,
    ) -> RunRecord:
        """Validate and start a run; ``timeout`` (seconds) fails it if it has not ended by then.

        A known ``idempotency_key`` of the tenant returns that run with ``deduplicated=True``.
        ``traceparent`` (W3C trace context of the request) is carried by every event of the
        run (and, in the durable services, by its jobs).
        """
        ...

    async def get_run(self, run_id: str, *, tenant: str) -> RunRecord: ...

    async def list_runs(
        self, run_filter: RunFilter, *, page_size: int = 50, page_token: str = ""
    ) -> Page[RunRecord]: ...

    async def cancel_run(self, run_id: str, *, tenant: str, reason: str = "") -> RunRecord: ...

    async def resume_run(self, run_id: str, *, tenant: str) -> RunRecord: ...

    def watch_run(
        self, run_id: str, *, tenant: str, from_seq: int = 0
    ) -> AsyncIterator[RunEventRecord]:
        """Events with ``seq > from_seq``: stored ones first, then live; ends with the run."""
        ...

    async def get_task_output(self, run_id: str, task_id: str, *, tenant: str) -> JsonObject: ...

    async def tenant_usage(self, tenant: str, *, idempotency_key: str | None = None) -> TenantUsage:
        """The tenant's :class:`TenantUsage` (its quotas are checked against it)."""
        ...
