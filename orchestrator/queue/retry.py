"""How a failed attempt settles: retry after a backoff, dead-letter, or cancel.

Every backend asks :func:`settle_failure`, so the retry rules live in one place and the
databases only store the outcome.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from graphmesh.orchestrator.queue.base import (
    ErrorKind,
    JobError,
    JobStatus,
    RetryPolicy,
)


@dataclass(frozen=True, kw_only=True)
class Settlement:
    """The outcome of a failed attempt: the job's next status, the wait before a retry
    (``delay_s``, PENDING only), and the error to append to its history."""

    status: JobStatus
    delay_s: float = 0.0
    error: JobError


def settle_failure(
    *,
    retry: RetryPolicy,
    failures_before: int,
    cancel_requested: bool,
    error: JobError,
    random: Callable[[], float],
) -> Settlement:
    """Decide what follows ``error``, the job's ``failures_before + 1``-th failure.

    A requested cancel wins (the worker stopped the handler because of it); a permanent
    error, or the last allowed attempt, dead-letters; otherwise the job is retried after
    the server's ``retry_after_s`` when given, else after the policy's jittered backoff.
    """
    if cancel_requested:
        return Settlement(status=JobStatus.CANCELLED, error=error)
    failures = failures_before + 1
    if not error.retryable or failures >= retry.max_attempts:
        return Settlement(status=JobStatus.DEAD_LETTER, error=error)
    if error.retry_after_s is not None:
        delay = max(0.0, error.retry_after_s)
    else:
        delay = retry.backoff_s(failures, random())
    return Settlement(status=JobStatus.PENDING, delay_s=delay, error=error)


def lease_lost_error(*, past_start_to_close: bool) -> JobError:
    """The error recorded for an attempt whose lease ran out: a start-to-close timeout
    when the attempt's deadline had passed, else a worker that stopped heartbeating."""
    if past_start_to_close:
        return JobError(
            kind=ErrorKind.START_TO_CLOSE_TIMEOUT,
            message="the attempt ran past its start-to-close timeout",
        )
    return JobError(
        kind=ErrorKind.LEASE_EXPIRED,
        message="the attempt's lease expired without a heartbeat; the job was rescued",
    )


def worker_lost_error() -> JobError:
    """The error recorded for an attempt whose worker's session ended under it. It counts
    as a failure, as a lost lease does: a task that kills its process every time must
    not run forever."""
    return JobError(
        kind=ErrorKind.WORKER_LOST,
        message="the attempt's worker is gone (its session ended); the job was rescued",
    )


def schedule_to_start_error() -> JobError:
    """The error recorded for a job that no attempt started before its deadline."""
    return JobError(
        kind=ErrorKind.SCHEDULE_TO_START_TIMEOUT,
        message="no attempt started within the schedule-to-start timeout",
        retryable=False,
    )
