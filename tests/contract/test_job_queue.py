"""The JobQueue contract: the same assertions against the memory, SQLite and Postgres queues.

Durations are real but short (leases of a fraction of a second); conditions that need
time to pass are polled with a deadline, never asserted after a fixed sleep. Jitter draws
are fixed at 0.5 (see ``support.queues``), so backoffs are exact.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from support.queues import QUEUE_BACKENDS, eventually, open_queue

from graphmesh.orchestrator.queue import (
    AttemptToken,
    Completion,
    ErrorKind,
    Job,
    JobError,
    JobNotFoundError,
    JobQueue,
    JobSpec,
    JobStatus,
    RetryPolicy,
    StaleAttemptError,
    WorkerSession,
)
from graphmesh.orchestrator.queue.base import utc_now

SHORT_LEASE_S = 0.2
NO_BACKOFF = RetryPolicy(initial_backoff_s=0.0, max_backoff_s=0.0)


@pytest.fixture(params=QUEUE_BACKENDS)
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[JobQueue]:
    """An empty queue of each backend in turn."""
    async with open_queue(request.param, request) as opened:
        yield opened


async def claim_one(queue: JobQueue, name: str = "default", lease_s: float = 30.0) -> Job:
    jobs = await queue.claim([name], lease_s=lease_s)
    assert len(jobs) == 1
    return jobs[0]


async def reclaim(queue: JobQueue, name: str = "default", within_s: float = 10.0) -> Job:
    """Claim until a job comes back (after a backoff, a rescue or a release)."""
    jobs = await eventually(lambda: queue.claim([name]), bool, within_s=within_s)
    return jobs[0]


async def get(queue: JobQueue, job_id: int) -> Job:
    job = await queue.get(job_id)
    assert job is not None
    return job


def close_to(actual: timedelta, seconds: float) -> bool:
    return abs(actual.total_seconds() - seconds) < 0.005


# -- enqueueing -----------------------------------------------------------------------


async def test_enqueue_returns_a_pending_job(queue: JobQueue) -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.5)
    spec = JobSpec(
        task="embed",
        payload={"text": "héllo", "n": [1, 2]},
        queue="models",
        priority=3,
        key="run-1:task-a",
        retry=policy,
        start_to_close_timeout_s=60.0,
        traceparent="00-abc-def-01",
    )
    job = await queue.enqueue(spec)
    assert (job.task, job.payload, job.queue, job.priority) == ("embed", spec.payload, "models", 3)
    assert (job.status, job.attempt, job.progress, job.result) == (JobStatus.PENDING, 0, 0.0, None)
    assert (job.key, job.retry, job.traceparent) == ("run-1:task-a", policy, "00-abc-def-01")
    assert job.start_to_close_timeout_s == 60.0 and job.schedule_to_start_timeout_s is None
    assert job.history == () and job.lease_until is None and job.finished_at is None
    assert abs((job.run_at - utc_now()).total_seconds()) < 5
    assert await queue.get(job.id) == job


async def test_enqueue_many_keeps_the_order_given(queue: JobQueue) -> None:
    jobs = await queue.enqueue_many([JobSpec(task="t", payload={"i": i}) for i in range(5)])
    assert [job.payload["i"] for job in jobs] == [0, 1, 2, 3, 4]
    assert [job.id for job in jobs] == sorted(job.id for job in jobs)
    assert await queue.enqueue_many([]) == []


async def test_an_idempotency_key_returns_the_existing_job(queue: JobQueue) -> None:
    first = await queue.enqueue(JobSpec(task="t", payload={"v": 1}, key="k1"))
    again = await queue.enqueue(JobSpec(task="t", payload={"v": 2}, key="k1"))
    assert again == first
    batch = await queue.enqueue_many(
        [
            JobSpec(task="t", key="k2"),
            JobSpec(task="t", key="k2"),
            JobSpec(task="t", key="k1"),
            JobSpec(task="t"),
        ]
    )
    assert batch[0].id == batch[1].id and batch[2].id == first.id
    assert len({job.id for job in batch}) == 3
    assert len(await queue.list_jobs()) == 3


async def test_a_key_still_names_its_job_after_it_finished(queue: JobQueue) -> None:
    job = await queue.enqueue(JobSpec(task="t", key="done-once"))
    await queue.complete((await claim_one(queue)).token, {"ok": True})
    again = await queue.enqueue(JobSpec(task="t", key="done-once"))
    assert (again.id, again.status, again.result) == (job.id, JobStatus.SUCCEEDED, {"ok": True})


async def test_a_payload_that_is_not_json_is_refused(queue: JobQueue) -> None:
    with pytest.raises(ValueError):
        await queue.enqueue_many([JobSpec(task="t"), JobSpec(task="t", payload={"x": math.nan})])
    assert await queue.list_jobs() == []


# -- claiming -------------------------------------------------------------------------


async def test_claim_takes_only_the_named_queues(queue: JobQueue) -> None:
    a, b, _ = await queue.enqueue_many(
        [JobSpec(task="t", queue="a"), JobSpec(task="t", queue="b"), JobSpec(task="t", queue="c")]
    )
    claimed = await queue.claim(["a", "b"], limit=10)
    assert {job.id for job in claimed} == {a.id, b.id}
    assert await queue.claim(["a", "b"], limit=10) == []


async def test_claim_orders_by_priority_then_age(queue: JobQueue) -> None:
    low_old, high_old, low_new, high_new = await queue.enqueue_many(
        [JobSpec(task="t", priority=p) for p in (0, 5, 0, 5)]
    )
    claimed = await queue.claim(["default"], limit=3)
    assert [job.id for job in claimed] == [high_old.id, high_new.id, low_old.id]
    assert [job.id for job in await queue.claim(["default"], limit=3)] == [low_new.id]


async def test_concurrent_claims_never_hand_out_a_job_twice(queue: JobQueue) -> None:
    await queue.enqueue_many([JobSpec(task="t") for _ in range(20)])
    batches = await asyncio.gather(*(queue.claim(["default"], limit=8) for _ in range(4)))
    ids = [job.id for batch in batches for job in batch]
    assert len(ids) == 20 and len(set(ids)) == 20
    assert all(len(batch) <= 8 for batch in batches)


async def test_a_claimed_job_runs_under_a_lease(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t"))
    job = await claim_one(queue, lease_s=30.0)
    assert (job.status, job.attempt, job.token) == (
        JobStatus.RUNNING,
        1,
        AttemptToken(job_id=job.id, attempt=1),
    )
    assert job.started_at is not None and job.lease_until is not None
    assert close_to(job.lease_until - job.started_at, 30.0)


async def test_a_delayed_job_waits_for_its_run_at(queue: JobQueue) -> None:
    job = await queue.enqueue(JobSpec(task="t", run_at=utc_now() + timedelta(seconds=0.3)))
    assert await queue.claim(["default"]) == []
    claimed = await reclaim(queue)
    assert claimed.id == job.id and utc_now() >= job.run_at


# -- eager dispatch: jobs started at enqueue --------------------------------------------


async def test_enqueue_started_hands_out_running_attempts(queue: JobQueue) -> None:
    spec = JobSpec(task="t", payload={"n": 1}, key="run:a", start_to_close_timeout_s=60.0)
    job, keyless = await queue.enqueue_started([spec, JobSpec(task="t")], lease_s=30.0)
    assert job is not None and keyless is not None
    assert (job.status, job.attempt, job.key, job.payload) == (
        JobStatus.RUNNING,
        1,
        "run:a",
        {"n": 1},
    )
    assert job.started_at is not None and job.lease_until is not None
    assert close_to(job.lease_until - job.started_at, 30.0)
    assert keyless.status is JobStatus.RUNNING and keyless.id != job.id
    assert await queue.claim(["default"], limit=10) == []  # nobody else can take them
    await queue.complete(job.token, {"done": True})
    assert (await get(queue, job.id)).status is JobStatus.SUCCEEDED


async def test_a_started_job_is_fenced_and_rescued_like_a_claimed_one(queue: JobQueue) -> None:
    (zombie,) = await queue.enqueue_started(
        [JobSpec(task="t", retry=NO_BACKOFF)], lease_s=SHORT_LEASE_S
    )
    assert zombie is not None
    rescued = await reclaim(queue)
    assert (rescued.id, rescued.attempt) == (zombie.id, 2)
    with pytest.raises(StaleAttemptError):
        await queue.complete(zombie.token)
    await queue.complete(rescued.token)


async def test_enqueue_started_skips_keys_that_are_held(queue: JobQueue) -> None:
    existing = await queue.enqueue(JobSpec(task="t", key="k1"))
    started = await queue.enqueue_started(
        [JobSpec(task="t", key="k1"), JobSpec(task="t", key="k2"), JobSpec(task="t", key="k2")]
    )
    assert started[0] is None and started[2] is None
    assert started[1] is not None and started[1].key == "k2"
    assert (await get(queue, existing.id)).status is JobStatus.PENDING  # left as it was
    assert await queue.enqueue_started([]) == []


async def test_enqueue_started_caps_the_lease_at_the_start_to_close_timeout(
    queue: JobQueue,
) -> None:
    (job,) = await queue.enqueue_started(
        [JobSpec(task="t", start_to_close_timeout_s=0.5)], lease_s=30.0
    )
    assert job is not None and job.lease_until is not None and job.started_at is not None
    assert close_to(job.lease_until - job.started_at, 0.5)


async def test_enqueue_started_refuses_what_cannot_start_now(queue: JobQueue) -> None:
    later = JobSpec(task="t", run_at=utc_now() + timedelta(seconds=60))
    with pytest.raises(ValueError, match="run_at"):
        await queue.enqueue_started([JobSpec(task="t"), later])
    with pytest.raises(ValueError, match="lease_s"):
        await queue.enqueue_started([JobSpec(task="t")], lease_s=0)
    assert await queue.list_jobs() == []  # nothing of a refused batch was written


async def test_enqueue_started_defers_to_a_due_job_of_higher_priority(queue: JobQueue) -> None:
    urgent = await queue.enqueue(JobSpec(task="t", priority=5))
    await queue.enqueue(JobSpec(task="t", priority=9, run_at=utc_now() + timedelta(seconds=60)))
    low, equal, high, elsewhere = await queue.enqueue_started(
        [
            JobSpec(task="t", key="low"),
            JobSpec(task="t", key="equal", priority=5),
            JobSpec(task="t", key="high", priority=7),
            JobSpec(task="t", key="elsewhere", queue="other"),
        ]
    )
    # Only a due job that outranks a spec holds it back (the priority 9 one is not due).
    assert low is None
    assert equal is not None and high is not None and elsewhere is not None
    assert {job.status for job in (equal, high, elsewhere)} == {JobStatus.RUNNING}
    (waiting,) = [job for job in await queue.list_jobs() if job.key == "low"]
    assert (waiting.status, waiting.attempt) == (JobStatus.PENDING, 0)
    # The claim order is kept: the urgent job first, then the one that deferred to it.
    claimed = await queue.claim(["default"], limit=10)
    assert [job.id for job in claimed] == [urgent.id, waiting.id]


async def test_a_started_job_left_pending_wakes_workers(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", priority=1))
    async with queue.wakeups(["default"]) as wakeup:  # listening after that enqueue
        wakeup.clear()
        (job,) = await queue.enqueue_started([JobSpec(task="t")])
        assert job is None
        assert await wakeup.wait(5.0)


async def test_started_jobs_wake_no_worker(queue: JobQueue) -> None:
    async with queue.wakeups(["default"]) as wakeup:
        wakeup.clear()
        await queue.enqueue_started([JobSpec(task="t")])
        assert not await wakeup.wait(0.3)


# -- completing -----------------------------------------------------------------------


async def test_complete_stores_the_result(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t"))
    job = await claim_one(queue)
    await queue.complete(job.token, {"answer": 42})
    done = await get(queue, job.id)
    assert (done.status, done.result, done.progress) == (JobStatus.SUCCEEDED, {"answer": 42}, 100)
    assert done.finished_at is not None and done.lease_until is None


async def test_complete_many_rejects_only_the_stale_tokens(queue: JobQueue) -> None:
    await queue.enqueue_many([JobSpec(task="t"), JobSpec(task="t")])
    first, second = await queue.claim(["default"], limit=2)
    wrong_attempt = AttemptToken(job_id=second.id, attempt=2)
    unknown = AttemptToken(job_id=999_999, attempt=1)
    rejected = await queue.complete_many(
        [Completion(token=first.token), Completion(token=wrong_attempt), Completion(token=unknown)]
    )
    assert rejected == [wrong_attempt, unknown]
    assert (await get(queue, first.id)).status is JobStatus.SUCCEEDED
    assert (await get(queue, second.id)).status is JobStatus.RUNNING


async def test_a_second_completion_is_rejected(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t"))
    job = await claim_one(queue)
    await queue.complete(job.token)
    with pytest.raises(StaleAttemptError):
        await queue.complete(job.token, {"late": True})
    assert (await get(queue, job.id)).result is None


# -- leases, rescue and fencing ---------------------------------------------------------


async def test_a_heartbeat_extends_the_lease(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t"))
    job = await claim_one(queue, lease_s=1.0)
    state = await queue.heartbeat(job.token, lease_s=60.0)
    assert state.token == job.token and not state.cancel_requested
    assert job.lease_until is not None and state.lease_until - job.lease_until > timedelta(
        seconds=50
    )
    assert (await get(queue, job.id)).lease_until == state.lease_until


async def test_heartbeats_keep_a_job_from_being_rescued(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", retry=NO_BACKOFF))
    job = await claim_one(queue, lease_s=1.0)
    for _ in range(8):  # 1.6 s in all, well past the first lease
        await asyncio.sleep(0.2)
        await queue.heartbeat(job.token, lease_s=1.0)
        assert await queue.claim(["default"]) == []
    await queue.complete(job.token)


async def test_an_expired_lease_is_rescued_and_the_old_attempt_fenced(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", retry=NO_BACKOFF))
    zombie = await claim_one(queue, lease_s=SHORT_LEASE_S)
    rescued = await reclaim(queue)
    assert (rescued.id, rescued.attempt) == (zombie.id, 2)
    (lost,) = rescued.history
    assert (lost.attempt, lost.error.kind, lost.error.retryable) == (
        1,
        ErrorKind.LEASE_EXPIRED,
        True,
    )
    with pytest.raises(StaleAttemptError):
        await queue.complete(zombie.token, {"from": "zombie"})
    with pytest.raises(StaleAttemptError):
        await queue.heartbeat(zombie.token, lease_s=30.0)
    with pytest.raises(StaleAttemptError):
        await queue.report_progress(zombie.token, 50)
    with pytest.raises(StaleAttemptError):
        await queue.fail(zombie.token, JobError(message="late"))
    await queue.complete(rescued.token, {"from": "rescuer"})
    assert (await get(queue, zombie.id)).result == {"from": "rescuer"}


async def test_maintain_reports_what_it_rescued(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", retry=NO_BACKOFF))
    await claim_one(queue, lease_s=0.05)
    report = await eventually(queue.maintain, lambda report: report.rescued == 1)
    assert report.expired == 0
    assert (await queue.list_jobs(status=JobStatus.PENDING))[0].attempt == 1


# -- worker sessions ---------------------------------------------------------------------


async def test_attempts_of_an_ended_session_are_rescued_before_their_leases_end(
    queue: JobQueue,
) -> None:
    await queue.enqueue(JobSpec(task="t", retry=NO_BACKOFF))
    async with queue.session() as session:
        lost = await claim_one_held(queue, session)
    # A worker that dies (or leaves) without handing its attempt back: its 30 s lease is
    # not waited for.
    report = await eventually(queue.maintain, lambda report: report.orphaned == 1)
    assert (report.rescued, report.expired) == (0, 0)
    rescued = await claim_one(queue)
    assert (rescued.id, rescued.attempt) == (lost.id, 2)
    (entry,) = rescued.history
    assert (entry.attempt, entry.error.kind, entry.error.retryable) == (
        1,
        ErrorKind.WORKER_LOST,
        True,
    )
    assert lost.lease_until is not None and entry.ended_at < lost.lease_until
    with pytest.raises(StaleAttemptError):
        await queue.complete(lost.token)


async def test_a_live_sessions_attempts_keep_their_leases(queue: JobQueue) -> None:
    kept_spec, lost_spec = JobSpec(task="kept", priority=1), JobSpec(task="lost", retry=NO_BACKOFF)
    await queue.enqueue_many([kept_spec, lost_spec])
    async with queue.session() as live:
        kept = await claim_one_held(queue, live)
        async with queue.session() as ended:
            lost = await claim_one_held(queue, ended)
        # Once the ended session's attempt is rescued, maintenance has looked at both.
        rescued = await reclaim(queue)
        assert (kept.task, rescued.id, rescued.attempt) == ("kept", lost.id, 2)
        still = await get(queue, kept.id)
        assert (still.status, still.attempt, still.history) == (JobStatus.RUNNING, 1, ())
        await queue.complete(kept.token)


async def test_a_job_started_at_enqueue_is_held_by_the_session_given(queue: JobQueue) -> None:
    async with queue.session() as session:
        (started,) = await queue.enqueue_started(
            [JobSpec(task="t", retry=NO_BACKOFF)], session=session
        )
    assert started is not None
    rescued = await reclaim(queue)
    assert (rescued.id, rescued.attempt) == (started.id, 2)
    assert [entry.error.kind for entry in rescued.history] == [ErrorKind.WORKER_LOST]


async def test_attempts_handed_back_before_the_session_ends_are_no_failures(
    queue: JobQueue,
) -> None:
    await queue.enqueue(JobSpec(task="t"))
    async with queue.session() as session:
        job = await claim_one_held(queue, session)
        assert await queue.release([job.token]) == []
    again = await reclaim(queue)
    assert (again.id, again.attempt, again.history) == (job.id, 2, ())


async def claim_one_held(queue: JobQueue, session: WorkerSession) -> Job:
    jobs = await queue.claim(["default"], lease_s=30.0, session=session)
    assert len(jobs) == 1
    return jobs[0]


# -- failures and retries ---------------------------------------------------------------


async def test_retries_back_off_exponentially_and_then_dead_letter(queue: JobQueue) -> None:
    policy = RetryPolicy(max_attempts=3, initial_backoff_s=0.2, backoff_multiplier=2, jitter=0.5)
    await queue.enqueue(JobSpec(task="t", retry=policy))
    first = await queue.fail((await claim_one(queue)).token, JobError(message="boom 1"))
    assert first.status is JobStatus.PENDING
    assert close_to(first.run_at - first.history[-1].ended_at, 0.2 * (1 - 0.5 * 0.5))
    second = await queue.fail((await reclaim(queue)).token, JobError(message="boom 2"))
    assert close_to(second.run_at - second.history[-1].ended_at, 0.4 * (1 - 0.5 * 0.5))
    third = await queue.fail((await reclaim(queue)).token, JobError(message="boom 3"))
    assert (third.status, third.attempt) == (JobStatus.DEAD_LETTER, 3)
    assert [entry.error.message for entry in third.history] == ["boom 1", "boom 2", "boom 3"]
    assert [entry.attempt for entry in third.history] == [1, 2, 3]
    assert all(entry.started_at is not None for entry in third.history)
    assert third.finished_at is not None and await queue.claim(["default"]) == []


async def test_retry_after_replaces_the_backoff(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", retry=RetryPolicy(initial_backoff_s=0.01)))
    job = await claim_one(queue)
    failed = await queue.fail(job.token, JobError(message="429", retry_after_s=2.5))
    assert close_to(failed.run_at - failed.history[-1].ended_at, 2.5)
    assert failed.history[-1].error.retry_after_s == 2.5
    assert await queue.claim(["default"]) == []


async def test_a_permanent_error_dead_letters_at_once(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", retry=RetryPolicy(max_attempts=10)))
    job = await claim_one(queue)
    failed = await queue.fail(job.token, JobError(message="bad input", retryable=False))
    assert failed.status is JobStatus.DEAD_LETTER
    assert [entry.error.retryable for entry in failed.history] == [False]


async def test_stats_count_each_queues_jobs_by_state(queue: JobQueue) -> None:
    assert await queue.stats() == []
    await queue.enqueue_many(
        [
            JobSpec(task="t", queue="a", run_at=utc_now() - timedelta(seconds=30)),
            JobSpec(task="t", queue="a"),
            JobSpec(task="t", queue="a", run_at=utc_now() + timedelta(hours=1)),
            JobSpec(task="t", queue="b", retry=RetryPolicy(initial_backoff_s=60)),
            JobSpec(task="t", queue="b"),
            JobSpec(task="t", queue="b"),
        ]
    )
    retried = await claim_one(queue, "b")
    await queue.fail(retried.token, JobError(message="again"))
    dead = await claim_one(queue, "b")
    await queue.fail(dead.token, JobError(message="bad", retryable=False))
    await claim_one(queue, "b")  # running
    done = await claim_one(queue, "a")  # the oldest due job of a: succeeded, not counted
    await queue.complete(done.token)
    a, b = await queue.stats()
    assert (a.queue, a.runnable, a.scheduled, a.retrying, a.running, a.dead_letter) == (
        "a",
        1,
        1,
        0,
        0,
        0,
    )
    assert (b.queue, b.runnable, b.scheduled, b.retrying, b.running, b.dead_letter) == (
        "b",
        0,
        1,
        1,
        1,
        1,
    )
    assert 0 <= a.oldest_runnable_s < 30 and b.oldest_runnable_s == 0


async def test_a_rescue_uses_up_attempts_like_any_failure(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", retry=RetryPolicy(max_attempts=1)))
    job = await claim_one(queue, lease_s=SHORT_LEASE_S)
    dead = await eventually(
        lambda: _claim_then_get(queue, job.id), lambda j: j.status is JobStatus.DEAD_LETTER
    )
    assert [entry.error.kind for entry in dead.history] == [ErrorKind.LEASE_EXPIRED]


async def _claim_then_get(queue: JobQueue, job_id: int) -> Job:
    await queue.claim(["unused"])  # claiming runs the maintenance
    return await get(queue, job_id)


# -- timeouts ---------------------------------------------------------------------------


async def test_a_job_not_started_in_time_is_dead_lettered(queue: JobQueue) -> None:
    job = await queue.enqueue(JobSpec(task="t", queue="slow", schedule_to_start_timeout_s=0.2))
    dead = await eventually(
        lambda: _claim_then_get(queue, job.id), lambda j: j.status is JobStatus.DEAD_LETTER
    )
    (entry,) = dead.history
    assert (entry.attempt, entry.started_at) == (0, None)
    assert (entry.error.kind, entry.error.retryable) == (ErrorKind.SCHEDULE_TO_START_TIMEOUT, False)
    assert await queue.claim(["slow"]) == []


async def test_start_to_close_caps_the_lease_whatever_the_heartbeats(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", start_to_close_timeout_s=0.3, retry=NO_BACKOFF))
    job = await claim_one(queue, lease_s=30.0)
    assert job.started_at is not None and job.lease_until is not None
    assert close_to(job.lease_until - job.started_at, 0.3)
    state = await queue.heartbeat(job.token, lease_s=30.0)
    assert state.lease_until <= job.lease_until
    rescued = await reclaim(queue)
    assert rescued.history[-1].error.kind == ErrorKind.START_TO_CLOSE_TIMEOUT


# -- cancellation -----------------------------------------------------------------------


async def test_cancelling_a_pending_job_ends_it_at_once(queue: JobQueue) -> None:
    job = await queue.enqueue(JobSpec(task="t"))
    cancelled = await queue.cancel(job.id)
    assert (cancelled.status, cancelled.cancel_requested) == (JobStatus.CANCELLED, True)
    assert cancelled.finished_at is not None
    assert await queue.claim(["default"]) == []


async def test_cancelling_a_running_job_asks_its_worker(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", retry=RetryPolicy(max_attempts=5)))
    job = await claim_one(queue)
    flagged = await queue.cancel(job.id)
    assert (flagged.status, flagged.cancel_requested) == (JobStatus.RUNNING, True)
    assert (await queue.heartbeat(job.token, lease_s=30.0)).cancel_requested
    stopped = await queue.fail(job.token, JobError(message="stopped", kind=ErrorKind.CANCELLED))
    assert stopped.status is JobStatus.CANCELLED
    assert await queue.claim(["default"]) == []


async def test_a_cancel_requested_job_whose_lease_expires_is_cancelled(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", retry=NO_BACKOFF))
    job = await claim_one(queue, lease_s=SHORT_LEASE_S)
    await queue.cancel(job.id)
    ended = await eventually(
        lambda: _claim_then_get(queue, job.id), lambda j: j.status is JobStatus.CANCELLED
    )
    assert ended.history[-1].error.kind == ErrorKind.LEASE_EXPIRED


async def test_cancelling_a_finished_job_changes_nothing(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t"))
    job = await claim_one(queue)
    await queue.complete(job.token, {"v": 1})
    after = await queue.cancel(job.id)
    assert (after.status, after.cancel_requested, after.result) == (
        JobStatus.SUCCEEDED,
        False,
        {"v": 1},
    )
    with pytest.raises(JobNotFoundError):
        await queue.cancel(999_999)


# -- progress, hand-back, listing, cleanup, wakeups ---------------------------------------


async def test_progress_is_clamped_and_persisted(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t"))
    job = await claim_one(queue)
    for reported, stored in ((42.5, 42.5), (150, 100.0), (-3, 0.0)):
        await queue.report_progress(job.token, reported)
        assert (await get(queue, job.id)).progress == stored
    with pytest.raises(ValueError):
        await queue.report_progress(job.token, math.nan)


async def test_a_released_attempt_is_due_again_and_not_a_failure(queue: JobQueue) -> None:
    await queue.enqueue(JobSpec(task="t", retry=RetryPolicy(max_attempts=1)))
    job = await claim_one(queue)
    stale = AttemptToken(job_id=job.id, attempt=7)
    assert await queue.release([job.token, stale]) == [stale]
    released = await get(queue, job.id)
    assert (released.status, released.history) == (JobStatus.PENDING, ())
    again = await claim_one(queue)
    assert again.attempt == 2
    with pytest.raises(StaleAttemptError):
        await queue.complete(job.token)


async def test_a_deferred_attempt_waits_in_the_queue_and_is_not_a_failure(
    queue: JobQueue,
) -> None:
    await queue.enqueue(JobSpec(task="t", retry=RetryPolicy(max_attempts=1)))
    job = await claim_one(queue)
    before = utc_now()
    assert await queue.release([job.token], delay_s=30.0) == []
    deferred = await get(queue, job.id)
    assert (deferred.status, deferred.history) == (JobStatus.PENDING, ())
    assert 29.0 <= (deferred.run_at - before).total_seconds() <= 31.0
    assert await queue.claim(["default"]) == [], "a deferred job was claimable at once"
    # A short deferral comes back, still with every attempt left.
    await queue.enqueue(JobSpec(task="u", queue="short", retry=RetryPolicy(max_attempts=1)))
    short = await claim_one(queue, "short")
    assert await queue.release([short.token], delay_s=0.1) == []
    again = await reclaim(queue, "short")
    assert (again.id, again.history) == (short.id, ())


async def test_jobs_are_listed_by_status_and_queue_in_pages(queue: JobQueue) -> None:
    jobs = await queue.enqueue_many(
        [JobSpec(task="t", queue=name) for name in ("a", "a", "b", "a")]
    )
    await queue.cancel(jobs[1].id)
    pending_a = await queue.list_jobs(status=JobStatus.PENDING, queue="a")
    assert [job.id for job in pending_a] == [jobs[0].id, jobs[3].id]
    page = await queue.list_jobs(limit=2)
    rest = await queue.list_jobs(after_id=page[-1].id)
    assert [job.id for job in page + rest] == [job.id for job in jobs]
    assert [j.id for j in await queue.list_jobs(status=JobStatus.CANCELLED)] == [jobs[1].id]


async def test_finished_jobs_are_deleted_after_their_ttl(queue: JobQueue) -> None:
    # The newest job stays pending: SQLite never deletes its newest row (no id reuse).
    done, cancelled, waiting = await queue.enqueue_many(
        [JobSpec(task="t", key="again"), JobSpec(task="t", queue="x"), JobSpec(task="t", queue="y")]
    )
    await queue.complete((await claim_one(queue)).token)
    await queue.cancel(cancelled.id)
    assert await queue.delete_finished(older_than_s=3600) == 0
    assert await queue.delete_finished(older_than_s=0) == 2
    assert await queue.get(done.id) is None and await queue.get(waiting.id) is not None
    reused = await queue.enqueue(JobSpec(task="t", key="again"))
    assert reused.id > waiting.id and reused.status is JobStatus.PENDING


async def test_wakeups_fire_for_enqueues_on_their_queues(queue: JobQueue) -> None:
    async with queue.wakeups(["a"]) as wakeup:
        wakeup.clear()
        await queue.enqueue(JobSpec(task="t", queue="b"))
        assert not await wakeup.wait(0.2)
        await queue.enqueue(JobSpec(task="t", queue="a"))
        assert await wakeup.wait(5.0)
