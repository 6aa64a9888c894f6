"""The rows of the durable run tables as the transaction logic sees them.

:class:`RunRow` and :class:`TaskRow` are the mutable state of one run and its tasks while a
transaction holds the run's lock (see :mod:`.scheduler`); :class:`EventRow` is one event
to insert. Both dialects hand rows back in the column order of ``runs_queries.sql``: JSON
as text, times as ``datetime`` (Postgres) or ISO-8601 text (SQLite).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from graphmesh.orchestrator.ai.usage import TaskUsage
from graphmesh.orchestrator.runs.records import (
    JsonObject,
    RunEventKind,
    RunEventRecord,
    RunRecord,
    RunState,
    TaskState,
)
from graphmesh.orchestrator.task.base import TaskStatus

Row = Sequence[Any]
OPEN_TASK = frozenset({TaskStatus.PENDING, TaskStatus.PROCESSING})
ACTIVE_RUN = frozenset({RunState.PENDING, RunState.RUNNING})
_TASK_STATUSES = {status.value: status for status in TaskStatus}


@dataclass(kw_only=True, eq=False)
class RunRow:
    """A locked run: what transactions read and change (written back when ``dirty``)."""

    run_id: str
    tenant: str
    status: RunState
    last_seq: int
    open_tasks: int
    generation: int
    error: str | None
    cancel_reason: str
    timeout_s: float | None
    overdue: bool = False
    traceparent: str | None = None
    dirty: bool = False
    started: bool = False
    ended: bool = False
    reopened: bool = False

    @classmethod
    def from_row(cls, row: Row) -> RunRow:
        run_id, tenant, status, last_seq, open_tasks, generation, error, reason = row[:8]
        timeout, overdue, traceparent = row[8:11]
        return cls(
            run_id=run_id,
            tenant=tenant,
            status=RunState(status),
            last_seq=int(last_seq),
            open_tasks=int(open_tasks),
            generation=int(generation),
            error=error,
            cancel_reason=reason,
            timeout_s=timeout,
            overdue=bool(overdue),
            traceparent=traceparent,
        )

    @property
    def active(self) -> bool:
        """Tasks may start: the run is neither ending nor ended."""
        return self.status in ACTIVE_RUN

    def params(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "last_seq": self.last_seq,
            "open_tasks": self.open_tasks,
            "error": self.error,
            "cancel_reason": self.cancel_reason,
            "generation": self.generation,
            "started": self.started,
            "ended": self.ended,
            "reopened": self.reopened,
        }


@dataclass(kw_only=True, eq=False)
class TaskRow:
    """One task of a locked run (written back when ``dirty``)."""

    run_id: str
    task_id: str
    status: TaskStatus
    progress: float
    attempts: int
    remaining: int
    dead: bool
    job_id: int | None
    error: str | None
    job_key: str | None = None  # a job enqueued for it in this transaction: its id by key
    error_payload: JsonObject | None = None
    output: str | None = None  # JSON text, set once the task completes in this transaction
    provenance: str | None = None
    usage: str | None = None  # JSON text of its model calls' TaskUsage, set with its outcome
    dirty: bool = False
    started: bool = False
    ended: bool = False
    reset: bool = False

    @classmethod
    def from_row(cls, row: Row) -> TaskRow:
        run_id, task_id, status, progress, attempts, remaining, dead, job_id, error = row
        return cls(
            run_id=run_id,
            task_id=task_id,
            status=task_status(status),
            progress=float(progress),
            attempts=int(attempts),
            remaining=int(remaining),
            dead=bool(dead),
            job_id=job_id,
            error=error,
        )

    @property
    def open(self) -> bool:
        return self.status in OPEN_TASK

    def params(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "task_id": self.task_id,
            "status": self.status.value,
            "progress": self.progress,
            "attempts": self.attempts,
            "remaining": self.remaining,
            "dead": self.dead,
            "job_id": self.job_id,
            "job_key": self.job_key,
            "error": self.error,
            "error_payload": None if self.error_payload is None else dumps(self.error_payload),
            "has_output": self.output is not None,
            "output": self.output,
            "provenance": self.provenance,
            "usage": self.usage,
            "started": self.started,
            "ended": self.ended,
            "reset": self.reset,
        }


@dataclass(frozen=True, kw_only=True)
class EventRow:
    """One event to insert into ``graphmesh_run_events``."""

    run_id: str
    seq: int
    kind: RunEventKind
    run_status: RunState
    task_id: str = ""
    status: TaskStatus | None = None
    progress: float = 0.0
    message: str = ""
    error: str | None = None
    error_type: str | None = None
    output_ref: str = ""
    details: Mapping[str, Any] | None = None
    traceparent: str | None = None

    def params(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seq": self.seq,
            "kind": self.kind.value,
            "run_status": self.run_status.value,
            "task_id": self.task_id,
            "status": None if self.status is None else self.status.value,
            "progress": self.progress,
            "message": self.message,
            "error": self.error,
            "error_type": self.error_type,
            "output_ref": self.output_ref,
            "details": None if self.details is None else dumps(self.details),
            "traceparent": self.traceparent,
        }


@dataclass(frozen=True, kw_only=True)
class Upstream:
    """What a starting task reads of one upstream task."""

    task_id: str
    status: TaskStatus
    output: JsonObject | None
    error_payload: JsonObject | None
    provenance: JsonObject = field(default_factory=dict)

    @classmethod
    def from_row(cls, row: Row) -> Upstream:
        task_id, status, output, error_payload, provenance = row
        return cls(
            task_id=task_id,
            status=task_status(status),
            output=loads(output),
            error_payload=loads(error_payload),
            provenance=loads(provenance) or {},
        )


# One encoder for every value: ``json.dumps`` with options builds a new one per call.
_ENCODER = json.JSONEncoder(default=repr, allow_nan=False)
_PLAIN = frozenset({str, int, float, bool, type(None)})


def dumps(value: Any) -> str:
    """JSON text as stored; values JSON cannot hold are stored as their ``repr``, as the
    in-memory service does."""
    return _ENCODER.encode(value)


def json_copy(value: Any) -> Any:
    """What ``loads(dumps(value))`` returns (fresh objects, tuples as lists), without the
    text in between for the plain values tasks return; anything else takes the text."""
    kind = type(value)
    if kind is dict:
        if all(type(key) is str for key in value):
            return {key: json_copy(item) for key, item in value.items()}
    elif kind is list or kind is tuple:
        return [json_copy(item) for item in value]
    elif kind in _PLAIN and (kind is not float or math.isfinite(value)):
        return value
    return loads(dumps(value))


def task_status(value: str) -> TaskStatus:
    """The status a column holds (a dict lookup: rows come by the thousand, and calling
    the enum costs several times more)."""
    return _TASK_STATUSES.get(value) or TaskStatus(value)


def loads(text: str | None) -> Any:
    return None if text is None else json.loads(text)


def as_time(value: datetime | str | None) -> datetime | None:
    """A timezone-aware time from either dialect (SQLite stores ISO-8601 UTC text)."""
    if value is None:
        return None
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def run_record(row: Row, tasks: Sequence[Row], *, deduplicated: bool = False) -> RunRecord:
    """A :class:`RunRecord` from a ``get_run``/``list_runs`` row and its ``run_task_states``."""
    run_id, tenant, status, graph, inputs, labels, key, error, last_seq = row[:9]
    created_at, updated_at, started_at, ended_at = row[9:13]
    return RunRecord(
        run_id=run_id,
        tenant=tenant,
        status=RunState(status),
        graph=json.loads(graph),
        inputs=json.loads(inputs),
        labels=json.loads(labels),
        idempotency_key=key,
        created_at=required_time(created_at),
        updated_at=required_time(updated_at),
        error=error,
        last_seq=int(last_seq),
        tasks=tuple(task_state(run_id, task) for task in tasks),
        started_at=as_time(started_at),
        ended_at=as_time(ended_at),
        traceparent=row[13],
        deduplicated=deduplicated,
    )


def task_state(run_id: str, row: Row) -> TaskState:
    task_id, task_type, status, progress, error, attempts, usage = row
    status = task_status(status)
    return TaskState(
        task_id=task_id,
        type=task_type,
        status=status,
        progress=float(progress),
        error=error,
        attempts=int(attempts),
        output_ref=output_ref(run_id, task_id) if status == TaskStatus.COMPLETED else "",
        usage=TaskUsage.from_json(loads(usage)),
    )


def output_ref(run_id: str, task_id: str) -> str:
    return f"{run_id}/{task_id}"


def event_record(row: Row) -> RunEventRecord:
    """An event from a row of ``graphmesh_run_events`` in the column order of
    ``events_after`` (also the outbox relay's claims), either dialect."""
    (run_id, seq, time, kind, run_status, task_id, status) = row[:7]
    (progress, message, error, error_type, ref, details, traceparent) = row[7:]
    return RunEventRecord(
        run_id=run_id,
        seq=int(seq),
        time=required_time(time),
        kind=RunEventKind(kind),
        run_status=RunState(run_status),
        task_id=task_id,
        status=None if status is None else TaskStatus(status),
        progress=float(progress),
        message=message,
        error=error,
        error_type=error_type,
        output_ref=ref,
        details=loads(details) if isinstance(details, str | None) else details,
        traceparent=traceparent,
    )


def required_time(value: datetime | str) -> datetime:
    """:func:`as_time` of a NOT NULL time column."""
    moment = as_time(value)
    if moment is None:
        raise ValueError("a required time column is NULL")
    return moment
