"""Rows of ``graphmesh_jobs`` (Postgres) as :class:`Job` values, and batch parameters.

JSON columns arrive as text: decoding it here (with a shortcut for the empty ``{}`` and
``[]`` most jobs carry) costs a fraction of the driver's generic ``jsonb`` loader."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from graphmesh.orchestrator.queue._shared import check_started
from graphmesh.orchestrator.queue.base import (
    Completion,
    Job,
    JobSpec,
    JobStatus,
    JsonObject,
    WorkerSession,
)
from graphmesh.orchestrator.queue.codec import (
    history_from_json,
    parse_iso,
    policy_from_json,
    policy_to_json,
)
from graphmesh.orchestrator.storage.codec import decode_json, encode_json

_STATUSES = {status.value: status for status in JobStatus}
# One encoder for every batch: ``json.dumps`` with options builds a new one per call.
_ROWS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def job_from_row(row: Sequence[Any]) -> Job:
    """A job from the column list every job query of ``queue_queries.sql`` returns."""
    return Job(
        id=row[0],
        queue=row[1],
        task=row[2],
        payload=_object(row[3]),
        priority=row[4],
        status=_STATUSES[row[5]],
        key=row[6],
        retry=policy_from_json(row[7]),
        run_at=row[8],
        created_at=row[9],
        attempt=row[10],
        started_at=row[11],
        lease_until=row[12],
        finished_at=row[13],
        cancel_requested=row[14],
        progress=row[15],
        result=None if row[16] is None else _object(row[16]),
        history=() if row[17] == "[]" else history_from_json(json.loads(row[17]), parse_iso),
        schedule_to_start_timeout_s=row[18],
        start_to_close_timeout_s=row[19],
        traceparent=row[20],
    )


def _object(text: str) -> JsonObject:
    return {} if text == "{}" else decode_json(text)


def enqueue_params(specs: Sequence[JobSpec]) -> dict[str, str]:
    """The parameter of ``enqueue_jobs``: one JSON array, a row of column values per spec
    (payloads embedded as objects, policies as their stored text, times as ISO-8601)."""
    rows = [
        [
            spec.queue,
            spec.task,
            spec.payload,
            spec.priority,
            spec.key,
            policy_to_json(spec.retry),
            None if spec.run_at is None else spec.run_at.isoformat(),
            spec.schedule_to_start_timeout_s,
            spec.start_to_close_timeout_s,
            spec.traceparent,
        ]
        for spec in specs
    ]
    return {"specs": _encode_checked(rows, [spec.payload for spec in specs])}


def started_params(
    specs: Sequence[JobSpec], lease_s: float, session: WorkerSession | None = None
) -> dict[str, Any]:
    """The parameters of ``enqueue_started_jobs`` (checked: see ``check_started``)."""
    check_started(specs, lease_s)
    held = None if session is None else session.id
    return {**enqueue_params(specs), "lease_s": float(lease_s), "session": held}


def completion_params(completions: Sequence[Completion]) -> dict[str, str]:
    """The parameter of ``complete_jobs``: one JSON array of ``{id, attempt, result}``."""
    rows = [
        {"id": c.token.job_id, "attempt": c.token.attempt, "result": c.result} for c in completions
    ]
    return {"done": _encode_checked(rows, [c.result for c in completions])}


def _encode_checked(rows: list[Any], objects: Sequence[JsonObject | None]) -> str:
    """``rows`` as JSON text, refusing an object that holds NUL as every backend does
    (the shared encoder says so)."""
    text = _ROWS.encode(rows)
    if "\\u0000" in text:
        for value in objects:
            if value is not None:
                encode_json(value)
    return text


def in_spec_order(specs: Sequence[JobSpec], inserted: list[Job], existing: list[Job]) -> list[Job]:
    """The job for each spec: by key where it has one (inserted or found), else the
    keyless inserted jobs in id order, which follows the batch order."""
    by_key = {job.key: job for job in [*existing, *inserted] if job.key is not None}
    keyless = iter(sorted((job for job in inserted if job.key is None), key=lambda job: job.id))
    return [next(keyless) if spec.key is None else by_key[spec.key] for spec in specs]
