"""Where run events are published: the :class:`EventBus` interface and its in-memory form.

The service mesh publishes to NATS JetStream
(:class:`~graphmesh.orchestrator.events.jetstream.JetStreamEventBus`); tests and the
embedded mode can use :class:`MemoryEventBus`, which keeps what it accepted and, like
JetStream, drops an event whose ``<run_id>:<seq>`` it has already accepted.

Errors::

    GraphmeshError
    └── EventBusError
        └── PublishError   (some events were not accepted; ``published`` says how many were)
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Protocol

from graphmesh.orchestrator.errors import GraphmeshError
from graphmesh.orchestrator.events.subjects import message_id
from graphmesh.orchestrator.runs.records import RunEventRecord


class EventBusError(GraphmeshError):
    """The event bus could not do what was asked."""


class PublishError(EventBusError):
    """Publishing stopped at an event that was not accepted.

    ``published`` counts the leading events of the call that were accepted (durably, for
    JetStream); the rest were not, or their fate is unknown, and must be published again.
    """

    def __init__(self, message: str, *, published: int) -> None:
        super().__init__(message)
        self.published = published


class EventBus(Protocol):
    """Publishes run events to subscribers."""

    async def publish(self, events: Sequence[RunEventRecord]) -> None:
        """Publish ``events`` one after another, in the order given, and return once every
        one is accepted. Re-publishing an accepted event is harmless: it is dropped as a
        duplicate. Raises :class:`PublishError` at the first event not accepted, without
        trying the ones after it, so that a caller retrying later keeps the order."""
        ...


class MemoryEventBus:
    """An :class:`EventBus` in this process's memory.

    ``accepted`` lists the events in the order they were accepted, each ``<run_id>:<seq>``
    once; ``duplicates`` counts the re-published ones that were dropped. Setting
    ``available = False`` makes every publish fail, as an outage would; ``reject`` makes
    single events fail. ``changed`` is set whenever something is accepted.
    """

    def __init__(self, *, reject: Callable[[RunEventRecord], bool] | None = None) -> None:
        self.accepted: list[RunEventRecord] = []
        self.duplicates = 0
        self.attempts = 0
        self.available = True
        self.reject = reject
        self.changed = asyncio.Event()
        self._seen: set[str] = set()

    async def publish(self, events: Sequence[RunEventRecord]) -> None:
        """Accept ``events`` in order (see :class:`EventBus`)."""
        for index, event in enumerate(events):
            self.attempts += 1
            if not self.available or (self.reject is not None and self.reject(event)):
                raise PublishError(f"event {message_id(event)} not accepted", published=index)
            self._accept(event)
            # A real bus waits for an acknowledgement here; yielding keeps concurrent
            # publishers interleaving as they would.
            await asyncio.sleep(0)

    def _accept(self, event: RunEventRecord) -> None:
        key = message_id(event)
        if key in self._seen:
            self.duplicates += 1
            return
        self._seen.add(key)
        self.accepted.append(event)
        self.changed.set()
