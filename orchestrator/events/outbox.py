"""What the outbox relay needs from the event table, whatever the database.

The run services write events into ``graphmesh_run_events`` in the same transaction as the
state change they describe. An :class:`Outbox` hands the relay the rows not yet published
(:meth:`Outbox.claim`) and stamps ``published_at`` on those it managed to publish
(:meth:`Claim.mark_published`); :meth:`Outbox.wakeups` tells it when rows may have arrived.
Backends: :mod:`~graphmesh.orchestrator.events.postgres` (several relays may share the table)
and :mod:`~graphmesh.orchestrator.events.sqlite` (one relay per database).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import AbstractAsyncContextManager
from itertools import groupby
from typing import Protocol

from graphmesh.orchestrator.runs.records import RunEventRecord
from graphmesh.orchestrator.wakeup import LocalWakeup


class Claim(Protocol):
    """Unpublished events handed to one relay round, ordered by run, then ``seq``."""

    @property
    def events(self) -> Sequence[RunEventRecord]: ...

    async def mark_published(self, events: Sequence[RunEventRecord]) -> None:
        """Stamp ``published_at`` on ``events`` (a subset of :attr:`events`)."""
        ...


class Outbox(Protocol):
    """The table of run events, as the relay sees it."""

    def claim(self, *, max_runs: int, max_per_run: int) -> AbstractAsyncContextManager[Claim]:
        """Up to ``max_per_run`` of the first unpublished events of up to ``max_runs`` runs,
        each run's a gapless run of ``seq`` following its last published event. While the
        block runs no other relay publishes those runs; stamps commit when it ends."""
        ...

    def wakeups(self) -> AbstractAsyncContextManager[LocalWakeup]:
        """Notifications of new events for the block's duration."""
        ...


def by_run(events: Sequence[RunEventRecord]) -> Iterator[list[RunEventRecord]]:
    """``events`` (ordered by run, then seq) split into one list per run."""
    for _, run_events in groupby(events, key=lambda event: event.run_id):
        yield list(run_events)


def gapless_prefix(events: Sequence[RunEventRecord]) -> list[RunEventRecord]:
    """The leading events of one run whose ``seq`` follow each other without a gap.

    A gap means the missing event's transaction has not committed yet; publishing past it
    would put that event out of order when it does."""
    prefix = list(events[:1])
    for event in events[1:]:
        if event.seq != prefix[-1].seq + 1:
            break
        prefix.append(event)
    return prefix
