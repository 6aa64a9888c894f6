"""The job queue's exceptions, under the engine's :class:`GraphmeshError`.

    GraphmeshError
    ├── QueueError
    │   ├── StaleAttemptError   (the attempt no longer holds the job: its lease was rescued,
    │   │                        it was handed back, or the job already ended)
    │   └── JobNotFoundError
    └── JobHandlerError         (raised by a job handler to say how its failure is treated)
        ├── RetryableJobError   (try again, after ``retry_after_s`` if given)
        ├── DeferJobError       (not now: back to the queue for ``retry_after_s``, no failure)
        └── PermanentJobError   (never retry: dead-letter the job now)

Any other exception a handler raises counts as retryable.
"""

from __future__ import annotations

from graphmesh.orchestrator.errors import GraphmeshError


class QueueError(GraphmeshError):
    """A job queue operation was refused."""


class StaleAttemptError(QueueError):
    """An acknowledgement came from an attempt that no longer holds the job.

    The attempt number is the fencing token: once a lease expires and the job is rescued
    (or handed back, or finished), reports from the old attempt are rejected, so a worker
    that stalled and woke up again cannot overwrite the newer attempt's outcome.
    """

    def __init__(self, job_id: int, attempt: int):
        self.job_id = job_id
        self.attempt = attempt
        super().__init__(f"job {job_id} attempt {attempt} no longer holds the job")


class JobNotFoundError(QueueError):
    """No job has this id (it never existed, or TTL cleanup deleted it)."""

    def __init__(self, job_id: int):
        self.job_id = job_id
        super().__init__(f"no job with id {job_id}")


class JobHandlerError(GraphmeshError):
    """Base of the errors a handler raises to choose between retrying and giving up."""


class RetryableJobError(JobHandlerError):
    """A transient failure: retry under the job's policy, not before ``retry_after_s``
    when the failing service said when to come back (an HTTP ``retry-after``)."""

    def __init__(self, message: str, *, retry_after_s: float | None = None):
        self.retry_after_s = retry_after_s
        super().__init__(message)


class DeferJobError(JobHandlerError):
    """Not a failure but "not now" (a provider's shared rate limit is reached): the attempt
    is handed back and the job is due again in ``retry_after_s``, without counting against
    its attempts, so no worker is held while it waits."""

    def __init__(self, message: str, *, retry_after_s: float):
        self.retry_after_s = retry_after_s
        super().__init__(message)


class PermanentJobError(JobHandlerError):
    """A failure retrying cannot fix (bad input): the job is dead-lettered at once."""
