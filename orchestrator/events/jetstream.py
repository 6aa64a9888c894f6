"""The NATS JetStream :class:`~graphmesh.orchestrator.events.bus.EventBus` (nats-py).

``async with JetStreamEventBus.connect("nats://host:4222") as bus:`` returns at once: the
connection is made in the background and, once up, re-made whenever it drops, forever.
While NATS is unreachable :meth:`~JetStreamEventBus.publish` fails after ``ack_timeout_s``
with :class:`~graphmesh.orchestrator.events.bus.PublishError`; the outbox relay keeps the
events and retries, so an orchestrator starts and runs while NATS is down.

The stream (:class:`~graphmesh.orchestrator.events.subjects.EventStreamConfig`) is created,
or updated to the configured limits, before the first publish, and again if it vanishes
(a NATS server that restarted without its store). Each publish waits for the stream's
acknowledgement, so an accepted event is stored; with the file store's default settings
that survives a crash of the NATS process, but not of its machine (see NATS ``sync_interval``).
Each publish of an event in a trace is a producer span of that trace, and the message's
``traceparent`` header names it, so a subscriber's span continues the run's trace.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager

import nats.errors
import nats.js.errors
from nats.aio.client import Client
from nats.js import api
from opentelemetry.trace import SpanKind

from graphmesh.orchestrator.events.bus import EventBusError, PublishError
from graphmesh.orchestrator.events.subjects import (
    TRACEPARENT_HEADER,
    EventStreamConfig,
    headers_for,
    message_id,
)
from graphmesh.orchestrator.runner.tracing import RUN_ID, context_of, traceparent_of_current, tracer
from graphmesh.orchestrator.runs.records import RunEventRecord
from graphmesh.orchestrator.wire.events import event_to_bytes

log = logging.getLogger(__name__)

STREAM_NAME_IN_USE = 10058  # JetStream: "stream name already in use with a different config"
# What a publish can raise: NATS errors (no ack in time, connection closed, stream API
# errors), a bad subject, and our own stream-setup error.
_PUBLISH_ERRORS = (nats.errors.Error, TimeoutError, OSError, ValueError, EventBusError)


def stream_config(stream: EventStreamConfig) -> api.StreamConfig:
    """The nats-py form of our stream settings."""
    return api.StreamConfig(
        name=stream.name,
        subjects=[stream.subjects],
        retention=api.RetentionPolicy(stream.retention),
        storage=api.StorageType(stream.storage),
        max_age=stream.max_age_s,
        max_bytes=stream.max_bytes,
        duplicate_window=stream.duplicate_window_s,
        num_replicas=stream.replicas,
    )


class JetStreamEventBus:
    """Publishes run events to a JetStream stream, each acknowledged before the next."""

    def __init__(
        self, client: Client, stream: EventStreamConfig, *, ack_timeout_s: float = 5.0
    ) -> None:
        self._client = client
        self._js = client.jetstream(timeout=ack_timeout_s)
        self._stream = stream
        self._ack_timeout_s = ack_timeout_s
        self._connecting: asyncio.Task[None] | None = None
        self._stream_ready = False
        self._closing = False
        self.duplicates = 0
        """How many publishes JetStream dropped as duplicates (re-published events)."""

    @classmethod
    @asynccontextmanager
    async def connect(
        cls,
        servers: str | Sequence[str],
        *,
        stream: EventStreamConfig | None = None,
        ack_timeout_s: float = 5.0,
        reconnect_wait_s: int = 1,
        name: str = "graphmesh-events",
    ) -> AsyncIterator[JetStreamEventBus]:
        """A bus connecting to ``servers`` in the background, closed on exit."""
        bus = cls(Client(), stream or EventStreamConfig(), ack_timeout_s=ack_timeout_s)
        urls = [servers] if isinstance(servers, str) else list(servers)
        bus._connecting = asyncio.create_task(
            bus._connect(urls, reconnect_wait_s, name), name="graphmesh-nats-connect"
        )
        try:
            yield bus
        finally:
            await bus.close()

    @property
    def stream(self) -> EventStreamConfig:
        """The stream this bus publishes to."""
        return self._stream

    @property
    def connected(self) -> bool:
        """Whether the connection to NATS is up right now."""
        return self._client.is_connected

    async def publish(self, events: Sequence[RunEventRecord]) -> None:
        """Publish ``events`` in order, each acknowledged by the stream before the next
        (see :class:`~graphmesh.orchestrator.events.bus.EventBus`)."""
        for index, event in enumerate(events):
            try:
                await self._publish_one(event)
            except _PUBLISH_ERRORS as error:
                raise PublishError(
                    f"event {message_id(event)} not acknowledged: {error!r}", published=index
                ) from error

    async def ensure_stream(self) -> None:
        """Create the stream, or bring an existing one to the configured limits."""
        await self._wait_connected()
        config = stream_config(self._stream)
        try:
            await self._js.add_stream(config)
        except nats.js.errors.BadRequestError as error:
            if error.err_code != STREAM_NAME_IN_USE:
                raise EventBusError(f"cannot create stream {self._stream.name}: {error}") from error
            await self._js.update_stream(config)
        self._stream_ready = True

    async def close(self) -> None:
        """Stop connecting, or close the connection; safe to call twice."""
        self._closing = True
        if self._connecting is not None and not self._connecting.done():
            self._connecting.cancel()
            await asyncio.gather(self._connecting, return_exceptions=True)
        if not self._client.is_closed:
            await self._client.close()

    async def _publish_one(self, event: RunEventRecord) -> None:
        if not self._stream_ready:
            await self.ensure_stream()
        try:
            ack = await self._send(event)
        except nats.js.errors.NoStreamResponseError:
            # Nothing captured the subject: the stream is gone (a NATS server that lost its
            # store). Create it again and retry once.
            self._stream_ready = False
            await self.ensure_stream()
            ack = await self._send(event)
        if ack.duplicate:
            self.duplicates += 1

    async def _send(self, event: RunEventRecord) -> api.PubAck:
        subject = self._stream.subject_for(event.run_id)
        headers = headers_for(event)
        with _publish_span(event, subject):
            if event.traceparent:  # a subscriber's span becomes a child of this publish
                headers[TRACEPARENT_HEADER] = traceparent_of_current() or event.traceparent
            return await self._js.publish(
                subject,
                event_to_bytes(event),
                timeout=self._ack_timeout_s,
                stream=self._stream.name,
                headers=headers,
            )

    async def _wait_connected(self) -> None:
        if self._connecting is not None:
            # shield: a caller's timeout must not cancel the background connection attempt.
            await asyncio.wait_for(asyncio.shield(self._connecting), self._ack_timeout_s)

    async def _connect(self, urls: list[str], reconnect_wait_s: int, name: str) -> None:
        await self._client.connect(
            urls,
            name=name,
            max_reconnect_attempts=-1,
            reconnect_time_wait=reconnect_wait_s,
            connect_timeout=2,
            error_cb=_log_error,
            disconnected_cb=self._log_disconnected,
            reconnected_cb=_log_reconnected,
        )
        log.info("connected to NATS for run events (stream %s)", self._stream.name)

    async def _log_disconnected(self) -> None:
        if not self._closing:
            log.warning("NATS connection lost; run events wait in the outbox until it is back")


async def _log_error(error: Exception) -> None:
    # Every failed reconnect attempt lands here; the disconnect itself is logged once.
    log.debug("NATS client error: %r", error)


async def _log_reconnected() -> None:
    log.info("NATS connection re-established")


@contextmanager
def _publish_span(event: RunEventRecord, subject: str) -> Iterator[None]:
    """A producer span in the event's run trace (none for an event outside any trace)."""
    context = context_of(event.traceparent)
    if context is None:
        yield
        return
    attributes = {
        "messaging.system": "nats",
        "messaging.destination.name": subject,
        "messaging.message.id": message_id(event),
        RUN_ID: event.run_id,
    }
    with tracer.start_as_current_span(
        f"{subject} publish", context=context, kind=SpanKind.PRODUCER, attributes=attributes
    ):
        yield
