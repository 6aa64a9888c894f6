"""The Worker against every JobQueue backend: the same assertions for memory, SQLite and
Postgres. Conditions that need time are polled with a deadline (``eventually``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from functools import partial

import pytest
from support.queues import QUEUE_BACKENDS, eventually, open_queue

from graphmesh.orchestrator.queue import (
    DeferJobError,
    ErrorKind,
    Job,
    JobQueue,
    JobSpec,
    JobStatus,
    PermanentJobError,
    RetryableJobError,
    RetryPolicy,
)
from graphmesh.orchestrator.queue.base import JsonObject
from graphmesh.orchestrator.queue.worker import JobContext, Worker, WorkerOptions

FAST = WorkerOptions(
    lease_s=0.6, heartbeat_interval_s=0.05, poll_interval_s=0.05, maintenance_interval_s=0.05
)
NO_BACKOFF = RetryPolicy(max_attempts=3, initial_backoff_s=0.0, max_backoff_s=0.0)


@pytest.fixture(params=QUEUE_BACKENDS)
async def queue(request: pytest.FixtureRequest) -> AsyncIterator[JobQueue]:
    """An empty queue of each backend in turn."""
    async with open_queue(request.param, request) as opened:
        yield opened


async def status_of(queue: JobQueue, job_id: int, status: JobStatus, within_s: float = 10) -> Job:
    """The job once it reaches ``status``."""
    job = await eventually(
        lambda: queue.get(job_id),
        lambda job: job is not None and job.status is status,
        within_s=within_s,
    )
    assert job is not None
    return job


class Recorder:
    """A handler that records its calls and how many ran at once."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.calls: list[tuple[int, int]] = []
        self.running = 0
        self.most_running = 0

    async def __call__(self, job: Job, context: JobContext) -> JsonObject | None:
        self.calls.append((job.id, job.attempt))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.running -= 1
        return {"double": job.payload["n"] * 2}


async def sleep_forever(job: Job, context: JobContext) -> JsonObject | None:
    await asyncio.Event().wait()
    return None


async def test_a_worker_runs_every_job_within_its_concurrency(queue: JobQueue) -> None:
    jobs = await queue.enqueue_many([JobSpec(task="t", payload={"n": n}) for n in range(12)])
    handler = Recorder(delay_s=0.05)
    async with Worker(queue, handler, concurrency=3, options=FAST):
        done = [await status_of(queue, job.id, JobStatus.SUCCEEDED) for job in jobs]
    assert [job.result for job in done] == [{"double": n * 2} for n in range(12)]
    assert sorted(handler.calls) == [(job.id, 1) for job in jobs]
    assert handler.most_running == 3


async def test_a_retryable_error_is_retried(queue: JobQueue) -> None:
    async def flaky(job: Job, context: JobContext) -> JsonObject | None:
        if job.attempt == 1:
            raise ConnectionError("upstream hiccup")
        return {"attempt": job.attempt}

    job = await queue.enqueue(JobSpec(task="t", retry=NO_BACKOFF))
    async with Worker(queue, flaky, options=FAST):
        done = await status_of(queue, job.id, JobStatus.SUCCEEDED)
    assert done.result == {"attempt": 2}
    assert [entry.error.message for entry in done.history] == ["ConnectionError: upstream hiccup"]


async def test_retry_after_from_the_handler_is_recorded(queue: JobQueue) -> None:
    async def throttled(job: Job, context: JobContext) -> JsonObject | None:
        raise RetryableJobError("rate limited", retry_after_s=30.0)

    job = await queue.enqueue(JobSpec(task="t"))
    async with Worker(queue, throttled, options=FAST):
        waiting = await eventually(
            lambda: queue.get(job.id), lambda j: j is not None and bool(j.history)
        )
    assert waiting is not None and waiting.status is JobStatus.PENDING
    assert waiting.history[0].error.retry_after_s == 30.0
    assert (waiting.run_at - waiting.history[0].ended_at).total_seconds() == pytest.approx(30.0)


async def test_a_deferral_frees_the_slot_and_uses_no_attempt(queue: JobQueue) -> None:
    # One slot, one attempt allowed: a job that says "not now" four times is handed back
    # each time (another job runs in the slot meanwhile) and still succeeds.
    limited, other = await queue.enqueue_many(
        [JobSpec(task="t", payload={"n": 1}, retry=RetryPolicy(max_attempts=1)), JobSpec(task="t")]
    )
    order: list[int] = []

    async def handler(job: Job, context: JobContext) -> JsonObject | None:
        order.append(job.id)
        if job.id == limited.id and order.count(job.id) <= 4:
            raise DeferJobError("rate limited", retry_after_s=0.1)
        return {"ok": True}

    async with Worker(queue, handler, concurrency=1, options=FAST):
        done = await status_of(queue, limited.id, JobStatus.SUCCEEDED)
        await status_of(queue, other.id, JobStatus.SUCCEEDED)
    assert done.history == () and done.attempt == 5
    assert order.index(other.id) < len(order) - 1, "the deferred job held the only slot"


async def test_a_permanent_error_dead_letters_without_retrying(queue: JobQueue) -> None:
    calls = []

    async def broken(job: Job, context: JobContext) -> JsonObject | None:
        calls.append(job.attempt)
        raise PermanentJobError("invalid input")

    job = await queue.enqueue(JobSpec(task="t", retry=NO_BACKOFF))
    async with Worker(queue, broken, options=FAST):
        dead = await status_of(queue, job.id, JobStatus.DEAD_LETTER)
    assert calls == [1]
    assert dead.history[0].error.retryable is False


async def test_cancelling_a_running_job_cancels_its_handler(queue: JobQueue) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def long_job(job: Job, context: JobContext) -> JsonObject | None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return None

    job = await queue.enqueue(JobSpec(task="t", retry=NO_BACKOFF))
    async with Worker(queue, long_job, options=FAST):
        await asyncio.wait_for(started.wait(), 10)
        await queue.cancel(job.id)
        ended = await status_of(queue, job.id, JobStatus.CANCELLED)
    assert cancelled.is_set()
    assert ended.history[-1].error.kind == ErrorKind.CANCELLED


async def test_the_start_to_close_timeout_stops_the_handler(queue: JobQueue) -> None:
    spec = JobSpec(task="t", start_to_close_timeout_s=0.2, retry=RetryPolicy(max_attempts=1))
    job = await queue.enqueue(spec)
    async with Worker(queue, sleep_forever, options=FAST):
        dead = await status_of(queue, job.id, JobStatus.DEAD_LETTER)
    assert [entry.error.kind for entry in dead.history] == [ErrorKind.START_TO_CLOSE_TIMEOUT]


async def test_heartbeats_keep_a_long_job_on_its_first_attempt(queue: JobQueue) -> None:
    job = await queue.enqueue(JobSpec(task="t", payload={"n": 1}, retry=NO_BACKOFF))
    handler = Recorder(delay_s=1.5)  # well past the 0.6 s lease
    async with Worker(queue, handler, options=FAST):
        done = await status_of(queue, job.id, JobStatus.SUCCEEDED)
    assert handler.calls == [(job.id, 1)] and done.attempt == 1


async def test_progress_reported_by_a_handler_is_persisted(queue: JobQueue) -> None:
    release = asyncio.Event()

    async def reporting(job: Job, context: JobContext) -> JsonObject | None:
        await context.report_progress(40)
        await release.wait()
        return None

    job = await queue.enqueue(JobSpec(task="t"))
    async with Worker(queue, reporting, options=FAST):
        await eventually(lambda: queue.get(job.id), lambda j: j is not None and j.progress == 40)
        release.set()
        await status_of(queue, job.id, JobStatus.SUCCEEDED)


async def test_an_idle_worker_wakes_on_an_enqueue(queue: JobQueue) -> None:
    # Polling every 60 s cannot explain a pickup within the deadline: the wakeup did it.
    options = WorkerOptions(poll_interval_s=60.0)
    async with Worker(queue, Recorder(), options=options):
        await asyncio.sleep(0.1)  # let the worker go idle
        job = await queue.enqueue(JobSpec(task="t", payload={"n": 2}))
        await status_of(queue, job.id, JobStatus.SUCCEEDED, within_s=5)


@pytest.mark.timeout(30)  # the old busy loop never yielded: only a signal could stop it
async def test_a_full_worker_woken_by_an_enqueue_still_runs_its_handlers(
    queue: JobQueue,
) -> None:
    gate = asyncio.Event()
    started: list[int] = []

    async def gated(job: Job, context: JobContext) -> JsonObject | None:
        started.append(job.id)
        await gate.wait()
        return None

    first = await queue.enqueue(JobSpec(task="t", payload={}))
    async with Worker(queue, gated, concurrency=1, options=WorkerOptions(poll_interval_s=60.0)):
        await eventually(lambda: asyncio.sleep(0, started), bool)
        # The worker is full when this enqueue's wake-up reaches it.
        second = await queue.enqueue(JobSpec(task="t", payload={}))
        await asyncio.sleep(0.2)
        assert started == [first.id]
        gate.set()
        await status_of(queue, first.id, JobStatus.SUCCEEDED, within_s=5)
        await status_of(queue, second.id, JobStatus.SUCCEEDED, within_s=5)
    assert started == [first.id, second.id]


async def test_a_handler_that_settles_its_job_itself_gets_no_second_completion(
    queue: JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    async def settles(job: Job, context: JobContext) -> JsonObject | None:
        await queue.complete(job.token, {"by": "handler"})
        context.mark_settled()
        return {"by": "worker"}

    job = await queue.enqueue(JobSpec(task="t", payload={}))
    with caplog.at_level("INFO", logger="graphmesh.orchestrator.queue.worker"):
        async with Worker(queue, settles, options=FAST):
            done = await status_of(queue, job.id, JobStatus.SUCCEEDED)
    assert done.result == {"by": "handler"}
    assert "after losing its lease" not in caplog.text


async def test_a_worker_rescues_a_job_abandoned_by_another(queue: JobQueue) -> None:
    job = await queue.enqueue(JobSpec(task="t", payload={"n": 3}, retry=NO_BACKOFF))
    (zombie,) = await queue.claim(["default"], lease_s=0.2)
    async with Worker(queue, Recorder(), options=FAST):
        done = await status_of(queue, job.id, JobStatus.SUCCEEDED)
    assert done.attempt == zombie.attempt + 1
    assert done.history[0].error.kind == ErrorKind.LEASE_EXPIRED


async def test_shutdown_lets_in_flight_jobs_finish(queue: JobQueue) -> None:
    handler = Recorder(delay_s=0.3)
    job = await queue.enqueue(JobSpec(task="t", payload={"n": 4}))
    async with Worker(queue, handler, options=FAST):
        await eventually(lambda: asyncio.sleep(0, handler.calls), bool)
    done = await queue.get(job.id)
    assert done is not None and done.status is JobStatus.SUCCEEDED


async def test_shutdown_past_the_grace_period_hands_jobs_back(queue: JobQueue) -> None:
    started = asyncio.Event()

    async def stuck(job: Job, context: JobContext) -> JsonObject | None:
        started.set()
        return await sleep_forever(job, context)

    options = WorkerOptions(shutdown_grace_s=0.1, heartbeat_interval_s=0.05)
    job = await queue.enqueue(JobSpec(task="t", retry=RetryPolicy(max_attempts=1)))
    async with Worker(queue, stuck, options=options):
        await asyncio.wait_for(started.wait(), 10)
    back = await queue.get(job.id)
    assert back is not None
    assert (back.status, back.attempt, back.history) == (JobStatus.PENDING, 1, ())
    assert (await queue.claim(["default"]))[0].attempt == 2


async def test_drain_stops_claiming_at_once_and_hands_back_what_outlives_its_grace(
    queue: JobQueue,
) -> None:
    started: list[int] = []

    async def stuck(job: Job, context: JobContext) -> JsonObject | None:
        started.append(job.id)
        return await sleep_forever(job, context)

    first = await queue.enqueue(JobSpec(task="t", retry=RetryPolicy(max_attempts=1)))
    async with Worker(queue, stuck, concurrency=2, options=FAST) as worker:
        await eventually(lambda: asyncio.sleep(0, started), bool)
        worker.stop_claiming()
        later = await queue.enqueue(JobSpec(task="t"))
        await worker.drain(0.1)
        assert started == [first.id]  # the job enqueued after the stop never started
        await worker.drain(0.1)  # and the exit's drain is the same one
    back = await queue.get(first.id)
    assert back is not None
    assert (back.status, back.attempt, back.history) == (JobStatus.PENDING, 1, ())
    waiting = await queue.get(later.id)
    assert waiting is not None and (waiting.status, waiting.attempt) == (JobStatus.PENDING, 0)


async def test_a_worker_deletes_finished_jobs_after_their_ttl(queue: JobQueue) -> None:
    jobs = await queue.enqueue_many([JobSpec(task="t", payload={"n": n}) for n in range(2)])
    await queue.enqueue(JobSpec(task="t", queue="unserved"))  # SQLite keeps its newest row
    options = WorkerOptions(
        finished_ttl_s=0.1, heartbeat_interval_s=0.05, maintenance_interval_s=0.05
    )
    async with Worker(queue, Recorder(), options=options):
        for job in jobs:
            await eventually(partial(queue.get, job.id), lambda found: found is None)


# -- eager dispatch ---------------------------------------------------------------------


async def test_adopted_jobs_run_in_held_slots_without_a_claim(queue: JobQueue) -> None:
    handler = Recorder(delay_s=0.2)
    options = WorkerOptions(poll_interval_s=60.0)  # only held slots and wake-ups matter
    async with Worker(queue, handler, concurrency=3, options=options) as worker:
        assert worker.hold_slots(5) == 3  # no more than the free slots
        assert worker.hold_slots(1) == 0
        specs = [JobSpec(task="t", payload={"n": n}) for n in range(2)]
        started = [job for job in await queue.enqueue_started(specs) if job is not None]
        worker.adopt(started, held=3)  # the third held slot is freed
        pending = await queue.enqueue(JobSpec(task="t", payload={"n": 9}))
        done = [await status_of(queue, job.id, JobStatus.SUCCEEDED) for job in started]
        await status_of(queue, pending.id, JobStatus.SUCCEEDED)
    assert [job.result for job in done] == [{"double": 0}, {"double": 2}]
    assert sorted(handler.calls) == sorted([(job.id, 1) for job in started] + [(pending.id, 1)])
    assert handler.most_running <= 3


async def test_held_slots_are_left_alone_by_claims(queue: JobQueue) -> None:
    handler = Recorder()
    async with Worker(queue, handler, concurrency=2, options=FAST) as worker:
        assert worker.hold_slots(2) == 2
        job = await queue.enqueue(JobSpec(task="t", payload={"n": 1}))
        await asyncio.sleep(0.3)  # several polls: the worker is full of held slots
        assert handler.calls == []
        worker.adopt([], held=2)  # nothing came: the slots are free again
        await status_of(queue, job.id, JobStatus.SUCCEEDED)


async def test_jobs_adopted_while_stopping_are_handed_back(queue: JobQueue) -> None:
    handler = Recorder()
    worker = Worker(queue, handler, options=FAST)
    async with worker:
        held = worker.hold_slots(1)
        # On a queue the worker does not claim from: only the hand-back can end its attempt.
        spec = JobSpec(task="t", payload={"n": 1}, queue="elsewhere")
        (job,) = await queue.enqueue_started([spec])
        assert job is not None
        stopping = asyncio.create_task(worker.__aexit__(None, None, None))
        await asyncio.sleep(0)  # the worker is stopping now
        assert worker.hold_slots(1) == 0
        worker.adopt([job], held=held)
        await stopping
    back = await queue.get(job.id)
    assert back is not None
    assert (back.status, back.attempt, back.history) == (JobStatus.PENDING, 1, ())
    assert handler.calls == []
