"""What a :class:`~graphmesh.orchestrator.queue.worker.Worker` hands a job's handler
besides the job."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from graphmesh.orchestrator.queue.base import Job, JobQueue, JsonObject


class JobContext:
    """What a handler gets besides its job: progress reports, the cancel flag, and
    :meth:`mark_settled` for a handler that ends its job itself."""

    def __init__(self, queue: JobQueue, job: Job) -> None:
        self.job = job
        self._queue = queue
        self.cancel_requested = False
        self.settled = False

    def mark_settled(self) -> None:
        """Say that the handler completed or failed this attempt itself, e.g. with
        ``queue.within(connection)`` in the transaction that stored its result: the worker
        then writes nothing more for it (a second completion would only be rejected)."""
        self.settled = True

    async def report_progress(self, percent: float) -> None:
        """Persist progress (clamped to 0-100); raises ``StaleAttemptError`` when this
        attempt no longer holds the job, which also stops the handler."""
        await self._queue.report_progress(self.job.token, percent)


Handler = Callable[[Job, JobContext], Awaitable[JsonObject | None]]
