"""How a :class:`~graphmesh.orchestrator.queue.worker.Worker` claims, leases, cleans up
and shuts down."""

from __future__ import annotations

from dataclasses import dataclass

from graphmesh.orchestrator.queue.base import DEFAULT_LEASE_S

# Of a shutdown's grace period, a quarter, at most this much, is kept for what follows the
# handlers' time to finish: cancelling the rest, handing them back, the last writes, exit.
HAND_BACK_S = 2.0
CANCEL_WAIT_S = 0.5  # how long cancelled handlers get to end before they are handed back


def finish_share(grace_s: float) -> float:
    """How much of a shutdown's ``grace_s`` in-flight handlers get to finish (see
    :data:`HAND_BACK_S`)."""
    return max(0.0, grace_s - min(HAND_BACK_S, grace_s / 4))


@dataclass(frozen=True, kw_only=True)
class WorkerOptions:
    """How a worker claims, leases, cleans up and shuts down.

    ``batch_size`` caps one claim (default: the worker's concurrency). Heartbeats run every
    ``heartbeat_interval_s`` (default: a third of the lease). An idle worker claims again
    when woken by an enqueue, or every ``poll_interval_s`` (delayed jobs, other
    processes). ``maintenance_interval_s``: how often it rescues lost attempts (expired
    leases, ended sessions); ``stats_interval_s``: how often it samples the queue's gauges
    (:mod:`~graphmesh.orchestrator.queue.metrics`). ``shutdown_grace_s``: how long in-flight
    handlers get to finish when it stops, unless ``Worker.drain`` is given another time.
    ``finished_ttl_s`` turns on TTL cleanup of finished jobs. Completions wait up to
    ``ack_delay_s`` to be written together.
    """

    batch_size: int | None = None
    lease_s: float = DEFAULT_LEASE_S
    heartbeat_interval_s: float | None = None
    poll_interval_s: float = 1.0
    maintenance_interval_s: float = 1.0
    stats_interval_s: float = 10.0
    shutdown_grace_s: float = 10.0
    finished_ttl_s: float | None = None
    retry_pause_s: float = 0.5
    ack_delay_s: float = 0.002

    @property
    def heartbeat_s(self) -> float:
        """Seconds between heartbeats."""
        return self.heartbeat_interval_s or self.lease_s / 3
