"""Prometheus metrics of the job queue, for the orchestrator's ``/metrics``.

Measured by the workers of this process:
``graphmesh_queue_claim_duration_seconds`` (one claim statement) and
``graphmesh_queue_schedule_to_start_seconds{queue}`` (from a job being due — enqueued, or its
retry's time — to its attempt starting, both by the database's clock).

Sampled from the database by the workers' housekeeping (:func:`sample`), so every replica
reports the same queue-wide figures (aggregate them with ``max``):
``graphmesh_queue_jobs{queue,state}`` with state ``runnable``, ``scheduled``, ``retrying``
(pending after a failed attempt), ``running``, ``dead_letter``; and
``graphmesh_queue_oldest_runnable_age_seconds{queue}``.
"""

from __future__ import annotations

from prometheus_client import Gauge, Histogram

from graphmesh.orchestrator.queue.base import Job, JobQueue, QueueStats

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_STATES = ("runnable", "scheduled", "retrying", "running", "dead_letter")

CLAIM_SECONDS = Histogram(
    "graphmesh_queue_claim_duration_seconds",
    "Time one claim of jobs took, by this process's workers",
    buckets=_LATENCY_BUCKETS,
)
SCHEDULE_TO_START_SECONDS = Histogram(
    "graphmesh_queue_schedule_to_start_seconds",
    "Time from a job being due (enqueued or its retry time) to its attempt starting",
    ["queue"],
    buckets=_LATENCY_BUCKETS,
)
JOBS = Gauge("graphmesh_queue_jobs", "Jobs by queue and state (sampled)", ["queue", "state"])
OLDEST_RUNNABLE_SECONDS = Gauge(
    "graphmesh_queue_oldest_runnable_age_seconds",
    "How long the oldest runnable job of each queue has been due (sampled)",
    ["queue"],
)
_seen: set[str] = set()


def observe_start(job: Job) -> None:
    """A job's attempt started: how long after it was due."""
    if job.started_at is not None:
        waited = (job.started_at - job.run_at).total_seconds()
        SCHEDULE_TO_START_SECONDS.labels(queue=job.queue).observe(max(0.0, waited))


async def sample(queue: JobQueue) -> None:
    """Set the sampled gauges from ``queue.stats()``; queues now empty read 0."""
    record(await queue.stats())


def record(stats: list[QueueStats]) -> None:
    current = {entry.queue: entry for entry in stats}
    for name in _seen | set(current):
        entry = current.get(name, QueueStats(queue=name))
        for state in _STATES:
            JOBS.labels(queue=name, state=state).set(getattr(entry, state))
        OLDEST_RUNNABLE_SECONDS.labels(queue=name).set(entry.oldest_runnable_s)
    _seen.update(current)
