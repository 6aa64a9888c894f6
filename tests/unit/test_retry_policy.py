"""Retry policy, failure settlement and the queue's value checks (no I/O)."""

from __future__ import annotations

import math
from datetime import datetime

import pytest

from graphmesh.orchestrator.queue import JobError, JobSpec, JobStatus, RetryPolicy
from graphmesh.orchestrator.queue.base import clamp_progress
from graphmesh.orchestrator.queue.retry import settle_failure

NO_JITTER = RetryPolicy(
    initial_backoff_s=1.0, backoff_multiplier=2.0, max_backoff_s=100.0, jitter=0
)


def settle(
    policy: RetryPolicy = NO_JITTER,
    *,
    failures_before: int = 0,
    cancel_requested: bool = False,
    error: JobError | None = None,
    random: float = 0.0,
) -> tuple[JobStatus, float]:
    settlement = settle_failure(
        retry=policy,
        failures_before=failures_before,
        cancel_requested=cancel_requested,
        error=error or JobError(message="boom"),
        random=lambda: random,
    )
    return settlement.status, settlement.delay_s


def test_backoff_grows_exponentially() -> None:
    assert [NO_JITTER.backoff_s(n, 0.0) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 8.0]


def test_backoff_is_capped_and_never_overflows() -> None:
    policy = RetryPolicy(
        initial_backoff_s=1.0, backoff_multiplier=10.0, max_backoff_s=30.0, jitter=0
    )
    assert [policy.backoff_s(n, 0.0) for n in (1, 2, 3)] == [1.0, 10.0, 30.0]
    assert policy.backoff_s(5000, 0.0) == 30.0


@pytest.mark.parametrize("draw", [0.0, 0.25, 0.5, 0.999])
def test_jitter_only_shortens_the_wait_by_up_to_its_share(draw: float) -> None:
    policy = RetryPolicy(initial_backoff_s=4.0, max_backoff_s=4.0, jitter=0.5)
    assert policy.backoff_s(1, draw) == pytest.approx(4.0 * (1 - 0.5 * draw))
    assert 2.0 < policy.backoff_s(1, draw) <= 4.0


def test_a_retryable_failure_is_retried_after_the_backoff() -> None:
    assert settle(failures_before=2) == (JobStatus.PENDING, 4.0)


def test_the_last_allowed_attempt_dead_letters() -> None:
    policy = RetryPolicy(max_attempts=3, jitter=0)
    assert settle(policy, failures_before=1)[0] is JobStatus.PENDING
    assert settle(policy, failures_before=2)[0] is JobStatus.DEAD_LETTER
    assert settle(RetryPolicy(max_attempts=1))[0] is JobStatus.DEAD_LETTER


def test_a_permanent_error_dead_letters_at_once() -> None:
    permanent = JobError(message="bad input", retryable=False)
    assert settle(error=permanent)[0] is JobStatus.DEAD_LETTER


def test_retry_after_replaces_the_backoff_even_past_the_cap() -> None:
    throttled = JobError(message="429", retry_after_s=500.0)
    assert settle(error=throttled, failures_before=3) == (JobStatus.PENDING, 500.0)
    assert settle(error=JobError(message="429", retry_after_s=-1.0)) == (JobStatus.PENDING, 0.0)


def test_retry_after_does_not_grant_extra_attempts() -> None:
    throttled = JobError(message="429", retry_after_s=1.0)
    assert settle(RetryPolicy(max_attempts=2), error=throttled, failures_before=1)[0] is (
        JobStatus.DEAD_LETTER
    )


def test_a_requested_cancel_wins_over_a_retry() -> None:
    assert settle(cancel_requested=True)[0] is JobStatus.CANCELLED


@pytest.mark.parametrize(
    "options",
    [
        {"max_attempts": 0},
        {"initial_backoff_s": -1.0},
        {"initial_backoff_s": 10.0, "max_backoff_s": 5.0},
        {"backoff_multiplier": 0.5},
        {"jitter": 1.5},
    ],
)
def test_an_invalid_policy_is_refused(options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**options)  # type: ignore[arg-type]


def test_progress_is_clamped_to_a_percentage() -> None:
    assert [clamp_progress(p) for p in (-5, 0, 42.5, 100, 250)] == [0.0, 0.0, 42.5, 100.0, 100.0]
    with pytest.raises(ValueError):
        clamp_progress(math.nan)


@pytest.mark.parametrize(
    "options",
    [
        {"task": ""},
        {"queue": ""},
        {"key": ""},
        {"run_at": datetime(2030, 1, 1)},  # naive: ambiguous across hosts
        {"schedule_to_start_timeout_s": 0.0},
        {"start_to_close_timeout_s": -1.0},
    ],
)
def test_an_invalid_spec_is_refused(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        JobSpec(**{"task": "t", **options})  # type: ignore[arg-type]


def test_a_payload_must_be_a_dict() -> None:
    with pytest.raises(TypeError):
        JobSpec(task="t", payload=[1, 2])  # type: ignore[arg-type]
