"""The outbox relay: moves run events from the database to the event bus, in order, none lost.

::

    async with PostgresOutbox.open(dsn) as outbox, JetStreamEventBus.connect(url) as bus:
        async with OutboxRelay(outbox, bus):
            ...  # events written by the run services reach NATS within milliseconds

Each round claims unpublished events (several runs, each run's in ``seq`` order; see
:meth:`~graphmesh.orchestrator.events.outbox.Outbox.claim`), publishes every run's events
one after another, runs side by side, and stamps ``published_at`` on those the bus
accepted. A run stops at its first failed event, so its later events wait for the next
round: per-run order holds. Rounds follow each other while there is work; then the relay
waits for a notification of new events (``LISTEN/NOTIFY`` on Postgres) or, as a fallback,
``poll_interval_s``. When a round publishes nothing because the bus (or the database) is
failing, the relay backs off, capped and exponentially, and tries again: an outage delays
events, it never loses them. A crash between publishing and stamping re-publishes those
events later; the bus drops them as duplicates (JetStream ``Nats-Msg-Id``).
"""

from __future__ import annotations

import asyncio
import logging
import random as _random
from collections.abc import Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

from graphmesh.orchestrator.events.bus import EventBus, PublishError
from graphmesh.orchestrator.events.outbox import Outbox, by_run, gapless_prefix
from graphmesh.orchestrator.runs.records import RunEventRecord
from graphmesh.orchestrator.wakeup import LocalWakeup

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Capped exponential backoff with jitter: the n-th consecutive failure waits between
    half and all of ``min(max_s, initial_s * multiplier ** (n - 1))``."""

    initial_s: float = 0.2
    multiplier: float = 2.0
    max_s: float = 10.0

    def delay_s(self, failures: int, random: Callable[[], float] = _random.random) -> float:
        """How long to wait after ``failures`` consecutive failed rounds (``failures >= 1``)."""
        ceiling = min(self.max_s, self.initial_s * self.multiplier ** max(failures - 1, 0))
        # Jitter keeps the replicas of a fleet from retrying in lockstep after an outage.
        return ceiling * (0.5 + random() / 2)


@dataclass(frozen=True, kw_only=True)
class RelaySettings:
    """How much one round claims and how the relay waits between rounds."""

    max_runs: int = 64
    max_per_run: int = 256
    poll_interval_s: float = 1.0
    backoff: Backoff = field(default_factory=Backoff)


@dataclass(frozen=True, kw_only=True)
class RelayRound:
    """What one round did: ``published`` events; ``failed_runs`` stopped at a failure;
    ``more`` when it claimed all it could, so more events may be waiting."""

    published: int
    failed_runs: tuple[str, ...] = ()
    more: bool = False


@dataclass(frozen=True, kw_only=True)
class _RunResult:
    run_id: str
    accepted: Sequence[RunEventRecord]
    error: PublishError | None = None


class OutboxRelay:
    """Publishes the outbox's events to ``bus`` in a background task while open."""

    def __init__(
        self,
        outbox: Outbox,
        bus: EventBus,
        settings: RelaySettings | None = None,
        *,
        random: Callable[[], float] = _random.random,
    ) -> None:
        self._outbox = outbox
        self._bus = bus
        self._settings = settings or RelaySettings()
        self._random = random
        self._wakeup: LocalWakeup | None = None
        self._task: asyncio.Task[None] | None = None
        self._resources = AsyncExitStack()
        self.failures = 0
        """Consecutive rounds that published nothing because something failed."""

    async def __aenter__(self) -> Self:
        # Listening starts before we return, so an event written after entry wakes us.
        self._wakeup = await self._resources.enter_async_context(self._outbox.wakeups())
        self._task = asyncio.create_task(self._run(self._wakeup), name="graphmesh-outbox-relay")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the background task; a round in progress is abandoned (its stamps roll back
        on Postgres, and what it published is dropped as duplicates when re-published)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        self._wakeup = None
        await self._resources.aclose()

    def wake(self) -> None:
        """Start a round now if the relay is idle (for writers in this process)."""
        if self._wakeup is not None:
            self._wakeup.notify()

    async def relay_once(self) -> RelayRound:
        """One round: claim, publish run by run, stamp what was accepted."""
        settings = self._settings
        claimed = self._outbox.claim(max_runs=settings.max_runs, max_per_run=settings.max_per_run)
        async with claimed as claim:
            runs = [gapless_prefix(run) for run in by_run(claim.events)]
            results = await asyncio.gather(*(self._publish_run(run) for run in runs))
            published = [event for result in results for event in result.accepted]
            if published:
                await claim.mark_published(published)
        failed = [result for result in results if result.error is not None]
        if failed:
            self._log_failures(failed, len(runs))
        full = len(runs) >= settings.max_runs or any(len(r) >= settings.max_per_run for r in runs)
        failed_runs = tuple(result.run_id for result in failed)
        return RelayRound(published=len(published), failed_runs=failed_runs, more=full)

    async def _publish_run(self, events: Sequence[RunEventRecord]) -> _RunResult:
        run_id = events[0].run_id
        try:
            await self._bus.publish(events)
        except PublishError as error:
            return _RunResult(run_id=run_id, accepted=events[: error.published], error=error)
        return _RunResult(run_id=run_id, accepted=events)

    def _log_failures(self, failed: Sequence[_RunResult], claimed: int) -> None:
        # Once per outage at WARNING; the rounds that keep failing would flood the log.
        level = logging.WARNING if self.failures == 0 else logging.DEBUG
        first = failed[0]
        log.log(
            level,
            "%d of %d runs stopped publishing events, e.g. run %s: %s; retrying",
            len(failed),
            claimed,
            first.run_id,
            first.error,
        )

    async def _run(self, wakeup: LocalWakeup) -> None:
        while True:
            wakeup.clear()
            outcome = await self._round_or_none()
            await self._pause(wakeup, outcome)

    async def _round_or_none(self) -> RelayRound | None:
        try:
            return await self.relay_once()
        except Exception:
            # The database is unreachable, or a bug: log it, back off and try again.
            log.exception("outbox relay round failed")
            return None

    async def _pause(self, wakeup: LocalWakeup, outcome: RelayRound | None) -> None:
        if outcome is None or (outcome.failed_runs and not outcome.published):
            self.failures += 1
            # Sleep, not wait: new events must not cut a backoff short during an outage.
            await asyncio.sleep(self._settings.backoff.delay_s(self.failures, self._random))
            return
        if self.failures:
            log.info("outbox relay publishing again after %d failed rounds", self.failures)
        self.failures = 0
        if not (outcome.more or outcome.failed_runs):
            await wakeup.wait(self._settings.poll_interval_s)
