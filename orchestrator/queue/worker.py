"""Runs a handler on the jobs of a :class:`JobQueue`.

::

    async def handler(job: Job, context: JobContext) -> dict[str, Any] | None:
        ...  # raise PermanentJobError / RetryableJobError to choose how failures go

    async with Worker(queue, handler, queues=["default"], concurrency=8):
        ...  # jobs run while the block is open

The worker claims jobs in batches as slots free up (and as soon as an enqueue wakes it),
runs each handler call as its own asyncio task, and acknowledges results in batches. Jobs
started for it at enqueue (eager dispatch: :meth:`Worker.hold_slots`, then
``JobQueue.enqueue_started``, then :meth:`Worker.adopt`) run in slots held for them,
without a claim. The worker claims under a session of its own (``JobQueue.session``), so
if its process dies its attempts are rescued as soon as the queue sees the session end. A
housekeeping loop heartbeats every in-flight attempt and runs the queue's maintenance; an
attempt whose job got a cancel request, or that lost its lease to a rescue, has its task
cancelled. A handler that runs past the job's start-to-close timeout is cancelled and the
attempt failed as a timeout.

Shutting down (:meth:`Worker.drain`, or leaving the block): claiming stops at once (jobs a
claim in flight brings back are handed back unstarted), in-flight handlers get a grace
period (``shutdown_grace_s`` unless given) to finish, and those still running then are
cancelled and their attempts handed back to the queue, due again at once and not counted
as failures. :func:`finish_share` splits a process's grace period between the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from enum import Enum
from types import TracebackType
from typing import Self

from graphmesh.orchestrator.queue import metrics
from graphmesh.orchestrator.queue.base import (
    DEFAULT_QUEUE,
    AttemptToken,
    Completion,
    ErrorKind,
    Job,
    JobError,
    JobQueue,
    Wakeup,
    WorkerSession,
)
from graphmesh.orchestrator.queue.errors import (
    DeferJobError,
    PermanentJobError,
    RetryableJobError,
    StaleAttemptError,
)
from graphmesh.orchestrator.queue.job_context import Handler, JobContext
from graphmesh.orchestrator.queue.worker_options import (
    CANCEL_WAIT_S,
    WorkerOptions,
    finish_share,
)

__all__ = ["Handler", "JobContext", "Worker", "WorkerOptions", "finish_share"]

log = logging.getLogger(__name__)


class _Stop(Enum):
    """Why the worker cancelled a handler's task."""

    CANCEL_REQUESTED = "cancel_requested"
    LEASE_LOST = "lease_lost"
    SHUTDOWN = "shutdown"


@dataclass(kw_only=True, eq=False)
class _InFlight:
    job: Job
    token: AttemptToken
    context: JobContext
    task: asyncio.Task[None] | None = None
    stop: _Stop | None = None
    handler_done: bool = False  # only its acknowledgement is left: never cancel it


class Worker:
    """Claims jobs of ``queues`` from ``queue`` and runs ``handler`` on them, at most
    ``concurrency`` at a time (see the module docs and :class:`WorkerOptions`)."""

    def __init__(
        self,
        queue: JobQueue,
        handler: Handler,
        *,
        queues: Sequence[str] = (DEFAULT_QUEUE,),
        concurrency: int = 10,
        options: WorkerOptions | None = None,
    ) -> None:
        if isinstance(queues, str) or not queues:
            raise ValueError("queues must be a non-empty sequence of queue names")
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        self._queue = queue
        self._handler = handler
        self._queues = tuple(queues)
        self._concurrency = concurrency
        self.options = options or WorkerOptions()
        self._claim_size = self.options.batch_size or concurrency
        self._failed_claims = 0  # claims failed in a row (a database outage, say)
        self._in_flight: dict[AttemptToken, _InFlight] = {}
        self._held = 0  # slots kept for jobs this worker will be handed (adopt)
        self._hand_backs: list[asyncio.Task[None]] = []
        self._completions: list[Completion] = []
        self._wake = asyncio.Event()  # jobs enqueued, a slot freed, or stopping
        self._waiting_for_slot = False
        self._flush = asyncio.Event()
        self._stopping = False  # no more claims
        self._closing = False  # no more completions will come
        self._ack_lock = asyncio.Lock()
        self._stack = AsyncExitStack()
        self._background: list[asyncio.Task[None]] = []
        self._claimer: asyncio.Task[None] | None = None
        self._flusher: asyncio.Task[None] | None = None
        self._drained: asyncio.Task[None] | None = None
        self._session: WorkerSession | None = None

    async def __aenter__(self) -> Self:
        try:
            # Entered first, left last: the session ends after the attempts were handed back.
            self._session = await self._stack.enter_async_context(self._queue.session())
            wakeup = await self._stack.enter_async_context(self._queue.wakeups(self._queues))
        except BaseException:
            await self._stack.aclose()
            raise
        self._background = [
            asyncio.create_task(self._relay(wakeup), name="graphmesh-worker-wakeup"),
            asyncio.create_task(self._housekeeping(), name="graphmesh-worker-housekeeping"),
        ]
        self._flusher = asyncio.create_task(self._flush_loop(), name="graphmesh-worker-acks")
        self._claimer = asyncio.create_task(self._claim_loop(), name="graphmesh-worker-claims")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            await self.drain()
        finally:
            self._closing = True
            self._flush.set()
            if self._flusher is not None:
                await self._flusher
            await asyncio.gather(*self._hand_backs)
            for task in self._background:
                task.cancel()
            await asyncio.gather(*self._background, return_exceptions=True)
            await self._stack.aclose()

    @property
    def in_flight(self) -> int:
        """How many handler calls are running now."""
        return len(self._in_flight)

    @property
    def queues(self) -> tuple[str, ...]:
        """The queues this worker claims from."""
        return self._queues

    @property
    def session(self) -> WorkerSession | None:
        """The session this worker's attempts are held by (``None`` before it starts)."""
        return self._session

    def stop_claiming(self) -> None:
        """Claim nothing more (nor adopt): the first step of a shutdown, taken at once."""
        self._stopping = True
        self._wake.set()

    async def drain(self, grace_s: float | None = None) -> None:
        """Stop claiming, give in-flight handlers ``grace_s`` (default: the options'
        ``shutdown_grace_s``) to finish, then cancel the rest and hand them back. Later
        calls (leaving the block) wait for the first one."""
        self.stop_claiming()
        if self._drained is None:
            grace = self.options.shutdown_grace_s if grace_s is None else grace_s
            self._drained = asyncio.create_task(self._stop_and_drain(grace))
        await asyncio.shield(self._drained)

    async def _stop_and_drain(self, grace_s: float) -> None:
        await self._drain(grace_s)
        if self._claimer is not None:
            # A claim still on its way (a database slow to answer) is not waited for long:
            # if it took jobs, the session's end gives them back.
            await asyncio.wait([self._claimer], timeout=CANCEL_WAIT_S)
            self._claimer.cancel()
            await asyncio.gather(self._claimer, return_exceptions=True)

    # -- eager dispatch ---------------------------------------------------------------

    def hold_slots(self, wanted: int) -> int:
        """Keep up to ``wanted`` free slots for jobs that will be started for this worker
        (``JobQueue.enqueue_started``) and handed to :meth:`adopt`; returns how many it
        keeps (none once stopping). Claims leave held slots alone."""
        if self._stopping:
            return 0
        free = self._concurrency - len(self._in_flight) - self._held
        held = max(0, min(wanted, free))
        self._held += held
        return held

    def adopt(self, jobs: Sequence[Job], *, held: int) -> None:
        """Run ``jobs``, attempts started for this worker, in the ``held`` slots kept for
        them by :meth:`hold_slots` (slots they do not fill are freed). A worker that
        began stopping meanwhile hands them back to the queue instead."""
        self._held -= held
        if self._stopping:
            if jobs:
                tokens = [job.token for job in jobs]
                self._hand_backs.append(asyncio.create_task(self._hand_back(tokens)))
            self._slot_freed()
            return
        for job in jobs:
            self._start(job)
        if len(jobs) < held:
            self._slot_freed()

    async def _hand_back(self, tokens: list[AttemptToken]) -> None:
        try:
            await self._queue.release(tokens)
        except Exception:
            log.exception("handing back %d jobs failed; their leases will expire", len(tokens))

    # -- claiming ---------------------------------------------------------------------

    async def _relay(self, wakeup: Wakeup) -> None:
        """Turn the queue's wakeups into the worker's one wake event."""
        while True:
            if await wakeup.wait(3600.0):
                wakeup.clear()
                self._wake.set()

    async def _claim_loop(self) -> None:
        while not self._stopping:
            free = self._concurrency - len(self._in_flight) - self._held
            if free <= 0:
                # Only a freed slot (or shutdown) matters now: forget an enqueue's wake-up,
                # or the set event would end every sleep at once and this loop would spin
                # without ever yielding to the handlers that free slots.
                self._waiting_for_slot = True
                self._wake.clear()
                await self._sleep()
                continue
            wanted = min(free, self._claim_size)
            self._wake.clear()
            jobs = await self._claim(wanted)
            if self._stopping:  # claimed as the shutdown began: not to be started now
                if jobs:
                    await self._hand_back([job.token for job in jobs])
                return
            for job in jobs:
                self._start(job)
            if len(jobs) < wanted:
                await self._sleep()

    async def _claim(self, limit: int) -> list[Job]:
        options = self.options
        try:
            with metrics.CLAIM_SECONDS.time():
                jobs = await self._queue.claim(
                    self._queues, limit=limit, lease_s=options.lease_s, session=self._session
                )
        except Exception:
            # The database may be restarting: keep the worker alive and try again later.
            # The first failure of a series is logged in full, the rest only counted.
            if not self._failed_claims:
                log.exception("claiming jobs failed; retrying every %.1f s", options.retry_pause_s)
            self._failed_claims += 1
            await asyncio.sleep(options.retry_pause_s)
            return []
        if self._failed_claims:
            log.warning("claiming jobs works again after %d failed tries", self._failed_claims)
            self._failed_claims = 0
        return jobs

    async def _sleep(self) -> None:
        """Until something changes (a slot, an enqueue, shutdown) or the poll interval."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.options.poll_interval_s):
                await self._wake.wait()

    def _start(self, job: Job) -> None:
        metrics.observe_start(job)
        flight = _InFlight(job=job, token=job.token, context=JobContext(self._queue, job))
        self._in_flight[flight.token] = flight
        flight.task = asyncio.create_task(self._run(flight), name=f"graphmesh-job-{job.id}")

    # -- running one job --------------------------------------------------------------

    async def _run(self, flight: _InFlight) -> None:
        try:
            await self._attempt(flight)
        finally:
            del self._in_flight[flight.token]
            self._slot_freed()

    def _slot_freed(self) -> None:
        # Only a full worker waits for slots; an idle one would claim for nothing.
        if self._waiting_for_slot:
            self._waiting_for_slot = False
            self._wake.set()

    async def _attempt(self, flight: _InFlight) -> None:
        job = flight.job
        # Most jobs have no start-to-close timeout: they skip the timeout's setup.
        seconds = job.start_to_close_timeout_s
        deadline = None if seconds is None else asyncio.timeout(seconds)
        try:
            async with deadline or contextlib.nullcontext():
                result = await self._handler(job, flight.context)
        except asyncio.CancelledError:
            if flight.stop is None:
                raise  # not ours: let it propagate
            _uncancel()
            await self._stopped(flight)
        except DeferJobError as deferral:
            flight.handler_done = True
            if not flight.context.settled:
                await self._defer(job, deferral.retry_after_s)
        except Exception as error:
            flight.handler_done = True
            if not flight.context.settled:
                timed_out = deadline is not None and deadline.expired()
                await self._fail(job, _job_error(error, timed_out=timed_out))
        else:
            flight.handler_done = True
            if not flight.context.settled:
                self._completions.append(Completion(token=flight.token, result=result))
                self._flush.set()

    async def _stopped(self, flight: _InFlight) -> None:
        """A handler the worker cancelled: record why (a shutdown hands back later)."""
        if flight.stop is _Stop.CANCEL_REQUESTED:
            error = JobError(
                kind=ErrorKind.CANCELLED, message="cancelled on request", retryable=False
            )
            await self._fail(flight.job, error)

    async def _defer(self, job: Job, delay_s: float) -> None:
        """Hand the attempt back, due in ``delay_s``, not counted as a failure."""
        try:
            rejected = await self._queue.release([job.token], delay_s=delay_s)
        except Exception:
            log.exception("handing back job %s for %.2fs failed", job.id, delay_s)
            return
        if rejected:
            log.info("job %s attempt %s lost its lease before handing back", job.id, job.attempt)

    async def _fail(self, job: Job, error: JobError) -> None:
        try:
            await self._queue.fail(job.token, error)
        except StaleAttemptError:
            log.info("job %s attempt %s lost its lease before failing", job.id, job.attempt)
        except Exception:
            # The lease will expire and the job will be rescued and retried.
            log.exception("recording the failure of job %s failed", job.id)

    # -- acknowledgements -------------------------------------------------------------

    async def _flush_loop(self) -> None:
        while not (self._closing and not self._completions):
            await self._flush.wait()
            if self.options.ack_delay_s and not self._closing:
                # Let a few more completions join the batch: one commit for many jobs.
                await asyncio.sleep(self.options.ack_delay_s)
            self._flush.clear()
            await self._flush_completions()

    async def _flush_completions(self) -> None:
        """Write every buffered completion in one batch; they piled up while the previous
        batch was being written, which is what makes batches big under load."""
        while self._completions:
            batch, self._completions = self._completions, []
            try:
                async with self._ack_lock:
                    rejected = await self._queue.complete_many(batch)
            except Exception:
                if self._closing:
                    # Their leases will expire and the jobs run again: at-least-once.
                    log.exception("acknowledging %d jobs failed at shutdown", len(batch))
                    return
                log.exception("acknowledging %d jobs failed; retrying", len(batch))
                self._completions[:0] = batch
                await asyncio.sleep(self.options.retry_pause_s)
                continue
            for token in rejected:
                log.info("job %s attempt %s completed after losing its lease", *_ids(token))

    # -- housekeeping -----------------------------------------------------------------

    async def _housekeeping(self) -> None:
        """Heartbeats every ``heartbeat_s``; maintenance (rescues of lost workers'
        attempts) every ``maintenance_interval_s``, even while all slots are busy and no
        claim runs it; the queue's gauges every ``stats_interval_s``; TTL cleanup."""
        loop = asyncio.get_running_loop()
        options = self.options
        next_beat = loop.time() + options.heartbeat_s
        next_maintenance = next_cleanup = next_sample = loop.time()
        while True:
            await asyncio.sleep(min(options.heartbeat_s, options.maintenance_interval_s))
            if loop.time() >= next_beat:
                next_beat = loop.time() + options.heartbeat_s
                await self._guard(self._heartbeat)
            if loop.time() >= next_maintenance:
                next_maintenance = loop.time() + self.options.maintenance_interval_s
                await self._guard(self._queue.maintain)
            if loop.time() >= next_sample:
                next_sample = loop.time() + options.stats_interval_s
                await self._guard(lambda: metrics.sample(self._queue))
            if self.options.finished_ttl_s is not None and loop.time() >= next_cleanup:
                next_cleanup = loop.time() + self._cleanup_interval_s(self.options.finished_ttl_s)
                await self._guard(self._cleanup)

    def _cleanup_interval_s(self, ttl: float) -> float:
        return max(ttl / 10, self.options.maintenance_interval_s)

    async def _cleanup(self) -> None:
        if self.options.finished_ttl_s is not None:
            await self._queue.delete_finished(self.options.finished_ttl_s)

    async def _guard(self, step: Callable[[], Awaitable[object]]) -> None:
        try:
            await step()
        except Exception:
            log.exception("job queue housekeeping step failed")

    async def _heartbeat(self) -> None:
        flights = sorted(self._in_flight.values(), key=lambda flight: flight.job.id)
        tokens = [flight.token for flight in flights if flight.stop is None]
        if not tokens:
            return
        async with self._ack_lock:
            states = await self._queue.heartbeat_many(tokens, lease_s=self.options.lease_s)
        for token in tokens:
            flight = self._in_flight.get(token)
            state = states.get(token)
            if flight is None:
                continue
            if state is None:
                self._stop(flight, _Stop.LEASE_LOST)
            elif state.cancel_requested:
                flight.context.cancel_requested = True
                self._stop(flight, _Stop.CANCEL_REQUESTED)

    def _stop(self, flight: _InFlight, reason: _Stop) -> None:
        if flight.stop is None and not flight.handler_done and flight.task is not None:
            flight.stop = reason
            flight.task.cancel()

    # -- shutdown ---------------------------------------------------------------------

    async def _drain(self, grace_s: float) -> None:
        """Let in-flight handlers finish within ``grace_s``, then hand back the rest (a
        handler slow to end once cancelled is not waited for long: its late report is
        fenced off, its attempt having been handed back)."""
        tasks = [flight.task for flight in self._in_flight.values() if flight.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=grace_s)
        leftovers = list(self._in_flight.values())
        for flight in leftovers:
            self._stop(flight, _Stop.SHUTDOWN)
        stopping = [f.task for f in leftovers if f.task is not None]
        if stopping:
            await asyncio.wait(stopping, timeout=CANCEL_WAIT_S)
        handed_back = [f.token for f in leftovers if f.stop is _Stop.SHUTDOWN]
        if handed_back:
            await self._hand_back(handed_back)


def _job_error(error: Exception, *, timed_out: bool) -> JobError:
    """The queue's record of a handler's exception."""
    if timed_out:
        return JobError(
            kind=ErrorKind.START_TO_CLOSE_TIMEOUT,
            message="the handler ran past the job's start-to-close timeout",
        )
    message = f"{type(error).__name__}: {error}"
    if isinstance(error, PermanentJobError):
        return JobError(message=message, retryable=False)
    if isinstance(error, RetryableJobError):
        return JobError(message=message, retry_after_s=error.retry_after_s)
    return JobError(message=message)


def _uncancel() -> None:
    # The worker cancelled this task on purpose and handled it; clear the request so
    # the task can still await (record the failure) and ends normally.
    task = asyncio.current_task()
    if task is not None:
        task.uncancel()


def _ids(token: AttemptToken) -> tuple[int, int]:
    return token.job_id, token.attempt
