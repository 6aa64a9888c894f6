"""Rows of ``graphmesh_run_events`` as :class:`RunEventRecord`, for both dialects.

The claim queries select the columns in table order: ``run_id, seq, time, kind, run_status,
task_id, status, progress, message, error, error_type, output_ref, details, traceparent``.
Postgres returns ``time`` as an aware datetime and ``details`` as decoded JSON; SQLite
returns ISO-8601 text and JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from graphmesh.orchestrator.runs.model import RunEventKind, RunEventRecord, RunState
from graphmesh.orchestrator.task.base import TaskStatus


def event_from_row(row: Sequence[Any]) -> RunEventRecord:
    """The event stored in one claimed row (either dialect)."""
    (run_id, seq, time, kind, run_status, task_id, status) = row[:7]
    (progress, message, error, error_type, output_ref, details, traceparent) = row[7:]
    return RunEventRecord(
        run_id=run_id,
        seq=int(seq),
        time=_aware(time),
        kind=RunEventKind(kind),
        run_status=RunState(run_status),
        task_id=task_id,
        status=None if status is None else TaskStatus(status),
        progress=float(progress),
        message=message,
        error=error,
        error_type=error_type,
        output_ref=output_ref,
        details=json.loads(details) if isinstance(details, str) else details,
        traceparent=traceparent,
    )


def _aware(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    # Times are stored in UTC; a naive one (SQLite text without an offset) is UTC too.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
