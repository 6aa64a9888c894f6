"""Eager dispatch: tasks a run worker's commit makes ready start in the same process.

Without it, a task made ready is a pending job that some worker claims: the commit's
NOTIFY wakes the claim loops and one claim statement later the task starts. With it, the
commit that makes a task ready also inserts its job with the first attempt already
started, leased to this process (``JobQueue.enqueue_started``), in a slot the local
queue worker holds for it (``Worker.hold_slots``); after the commit the worker runs it
(``Worker.adopt``). A transaction starts here at most as many tasks as it ended here (a
task's successor takes its slot), only in free slots and only for the queues this worker
serves: the rest (a fan-out's growth, work beyond this worker) is enqueued as pending jobs
that any replica claims, so replicas still share the work. Priorities hold: a job whose
queue has a due job of higher priority waiting is inserted pending instead, and the slot
held for it is freed for a claim. The jobs are held by the worker's session: a process
that dies before running them has them rescued as any lost worker's attempts are.
"""

from __future__ import annotations

from collections.abc import Sequence

from graphmesh.orchestrator.queue.base import Job, JobSpec, WorkerSession
from graphmesh.orchestrator.queue.worker import Worker


class EagerDispatch:
    """Starts jobs a commit enqueues in free slots of ``worker`` (see the module docs)."""

    def __init__(self, worker: Worker, *, lease_s: float) -> None:
        self.lease_s = lease_s
        self._worker = worker
        self._queues = frozenset(worker.queues)

    @property
    def session(self) -> WorkerSession | None:
        """The worker session the started jobs are held by."""
        return self._worker.session

    def split(self, specs: Sequence[JobSpec], *, limit: int) -> tuple[list[JobSpec], list[JobSpec]]:
        """Up to ``limit`` specs to start here (a worker slot is held for each), and the
        rest."""
        local = [index for index, spec in enumerate(specs) if spec.queue in self._queues]
        chosen = set(local[: self._worker.hold_slots(min(limit, len(local)))])
        started = [specs[index] for index in sorted(chosen)]
        return started, [spec for index, spec in enumerate(specs) if index not in chosen]

    def adopt(self, jobs: Sequence[Job], *, held: int) -> None:
        """Run the started ``jobs`` in the ``held`` slots; slots left over are freed."""
        self._worker.adopt(jobs, held=held)
