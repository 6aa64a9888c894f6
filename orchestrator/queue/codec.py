"""JSON forms of the queue's value types, shared by the SQLite and Postgres backends."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

from graphmesh.orchestrator.queue.base import FailedAttempt, JobError, RetryPolicy
from graphmesh.orchestrator.storage.codec import encode_json

JsonObject = dict[str, Any]


@lru_cache(maxsize=256)
def policy_to_json(policy: RetryPolicy) -> str:
    """The stored text of a retry policy (cached: policies are few and frozen)."""
    return encode_json(
        {
            "max_attempts": policy.max_attempts,
            "initial_backoff_s": policy.initial_backoff_s,
            "backoff_multiplier": policy.backoff_multiplier,
            "max_backoff_s": policy.max_backoff_s,
            "jitter": policy.jitter,
        }
    )


@lru_cache(maxsize=256)
def policy_from_json(text: str) -> RetryPolicy:
    """A policy from its stored text; cached, since most jobs share a handful of policies
    and decoding one per claimed job would cost more than the claim itself."""
    return RetryPolicy(**json.loads(text))


def error_to_json(error: JobError) -> JsonObject:
    """A JSON object for one error."""
    return {
        "message": error.message,
        "kind": str(error.kind),
        "retryable": error.retryable,
        "retry_after_s": error.retry_after_s,
    }


def error_from_json(data: JsonObject) -> JobError:
    """The error a :func:`error_to_json` object describes."""
    return JobError(
        message=data["message"],
        kind=data["kind"],
        retryable=data["retryable"],
        retry_after_s=data.get("retry_after_s"),
    )


def history_from_json(entries: list[JsonObject], parse_time: Any) -> tuple[FailedAttempt, ...]:
    """A job's history from its stored entries; ``parse_time`` turns a stored time
    (ISO text on Postgres, Unix seconds on SQLite) into a datetime."""
    return tuple(
        FailedAttempt(
            attempt=entry["attempt"],
            started_at=None if entry["started_at"] is None else parse_time(entry["started_at"]),
            ended_at=parse_time(entry["ended_at"]),
            error=error_from_json(entry["error"]),
        )
        for entry in entries
    )


def parse_iso(text: str) -> datetime:
    """A datetime from the ISO text Postgres writes into ``jsonb``."""
    return datetime.fromisoformat(text)
