"""The durable job queue: one :class:`JobQueue` interface, backends in memory
(:mod:`.memory`), SQLite (:mod:`.sqlite`) and Postgres (:mod:`.postgres`), and the
:class:`~graphmesh.orchestrator.queue.worker.Worker` that runs handlers on claimed jobs.

The backends import their database drivers; import them from their modules.
"""

from graphmesh.orchestrator.queue.base import (
    DEFAULT_QUEUE,
    FINISHED,
    AttemptToken,
    Completion,
    ErrorKind,
    FailedAttempt,
    Job,
    JobError,
    JobQueue,
    JobSpec,
    JobStatus,
    LeaseState,
    MaintenanceReport,
    RetryPolicy,
    Wakeup,
    WorkerSession,
)
from graphmesh.orchestrator.queue.errors import (
    DeferJobError,
    JobHandlerError,
    JobNotFoundError,
    PermanentJobError,
    QueueError,
    RetryableJobError,
    StaleAttemptError,
)
from graphmesh.orchestrator.queue.memory import MemoryJobQueue
from graphmesh.orchestrator.queue.worker import Handler, JobContext, Worker, WorkerOptions

__all__ = [
    "DEFAULT_QUEUE",
    "FINISHED",
    "AttemptToken",
    "Completion",
    "DeferJobError",
    "ErrorKind",
    "FailedAttempt",
    "Handler",
    "Job",
    "JobContext",
    "JobError",
    "JobHandlerError",
    "JobNotFoundError",
    "JobQueue",
    "JobSpec",
    "JobStatus",
    "LeaseState",
    "MaintenanceReport",
    "MemoryJobQueue",
    "PermanentJobError",
    "QueueError",
    "RetryPolicy",
    "RetryableJobError",
    "StaleAttemptError",
    "Wakeup",
    "Worker",
    "WorkerOptions",
    "WorkerSession",
]
