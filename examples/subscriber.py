"""Print graphmesh run events from NATS JetStream, one line per event.

    python examples/subscriber.py --nats nats://127.0.0.1:4222                 # every run
    python examples/subscriber.py --nats nats://127.0.0.1:4222 --run RUN_ID --count 10

Each event is a protobuf ``graphmesh.v1.RunEvent`` on ``graphmesh.runs.<run_id>.events``.
By default an ordered consumer replays the stream from its start, then follows it live.
With ``--durable NAME`` a durable consumer acknowledges what it printed, so the next start
with the same name goes on where this one stopped. Stops after ``--count`` events, or on
Ctrl-C. Any language with a NATS client and the protos can do the same. With the standard
``OTEL_*`` variables set (e.g. ``OTEL_EXPORTER_OTLP_ENDPOINT``), each printed event is a
consumer span in its run's trace.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

import nats
import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from opentelemetry.trace import SpanKind

from graphmesh.orchestrator.events.subjects import (
    DEFAULT_STREAM,
    DEFAULT_SUBJECT_PREFIX,
    TRACEPARENT_HEADER,
    EventStreamConfig,
)
from graphmesh.orchestrator.runner.tracing import RUN_ID, context_of, tracer
from graphmesh.orchestrator.runs.records import RunEventRecord
from graphmesh.orchestrator.wire.events import event_from_bytes
from graphmesh.services.kit.telemetry import tracing


@dataclass(frozen=True, kw_only=True)
class Options:
    nats: str
    run: str | None
    count: int | None
    durable: str | None
    stream: EventStreamConfig


def parse_args(argv: Sequence[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description="Print graphmesh run events from NATS.")
    parser.add_argument("--nats", default="nats://127.0.0.1:4222", help="NATS server URL")
    parser.add_argument("--run", help="only this run's events")
    parser.add_argument("--count", type=int, help="exit after this many events")
    parser.add_argument("--durable", help="durable consumer name (resumes where it stopped)")
    parser.add_argument("--stream", default=DEFAULT_STREAM, help="JetStream stream name")
    parser.add_argument("--subject-prefix", default=DEFAULT_SUBJECT_PREFIX)
    args = parser.parse_args(argv)
    stream = EventStreamConfig(name=args.stream, subject_prefix=args.subject_prefix)
    return Options(
        nats=args.nats, run=args.run, count=args.count, durable=args.durable, stream=stream
    )


def describe(event: RunEventRecord) -> str:
    """One line for an event: what happened, to which task, with which progress."""
    parts = [f"run={event.run_id}", f"seq={event.seq}", f"kind={event.kind.value}"]
    if event.task_id:
        parts.append(f"task={event.task_id}")
    if event.status is not None:
        parts.append(f"status={event.status.value}")
    if event.progress:
        parts.append(f"progress={event.progress:g}%")
    if event.message:
        parts.append(f"message={event.message!r}")
    if event.error:
        parts.append(f"error={event.error!r}")
    if event.traceparent:
        parts.append(f"trace={event.traceparent.split('-')[1]}")
    return " ".join(parts)


def decode(msg: Msg) -> RunEventRecord:
    """The event a message carries; the trace context travels in a header."""
    event = event_from_bytes(msg.data)
    traceparent = (msg.headers or {}).get(TRACEPARENT_HEADER)
    return event if traceparent is None else replace(event, traceparent=traceparent)


@contextmanager
def processing_span(event: RunEventRecord, subject: str) -> Iterator[None]:
    """With OpenTelemetry on (``OTEL_*``), a consumer span in the run's trace: its parent is
    the orchestrator's publish span named by the ``traceparent`` header."""
    context = context_of(event.traceparent)
    if context is None:
        yield
        return
    with tracer.start_as_current_span(
        f"{subject} process",
        context=context,
        kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "nats", RUN_ID: event.run_id, "graphmesh.seq": event.seq},
    ):
        yield


Wanted = Callable[[], int]
"""How many more events the caller will print."""


async def ordered_messages(
    js: JetStreamContext, options: Options, wanted: Wanted
) -> AsyncIterator[Msg]:
    subject = _subject(options)
    subscription = await js.subscribe(subject, stream=options.stream.name, ordered_consumer=True)
    async for msg in subscription.messages:
        yield msg


async def durable_messages(
    js: JetStreamContext, options: Options, wanted: Wanted
) -> AsyncIterator[Msg]:
    subject, name = _subject(options), options.durable
    subscription = await js.pull_subscribe(subject, durable=name, stream=options.stream.name)
    while True:
        try:
            # Never fetch more than we will print: what is fetched and not acked comes back
            # to the next subscriber only after the consumer's ack wait.
            for msg in await subscription.fetch(batch=min(wanted(), 100), timeout=5):
                yield msg
        except nats.errors.TimeoutError:
            continue


class Tally:
    """How many events were printed, and how many more are wanted."""

    def __init__(self, count: int | None) -> None:
        self.count = count
        self.printed = 0

    def wanted(self) -> int:
        return 100 if self.count is None else max(self.count - self.printed, 1)

    @property
    def done(self) -> bool:
        return self.count is not None and self.printed >= self.count


async def follow(options: Options, emit: Callable[[str], None]) -> int:
    """Print events until ``options.count`` were printed or the task is cancelled."""
    client = await nats.connect(options.nats)
    tally = Tally(options.count)
    try:
        source = durable_messages if options.durable else ordered_messages
        async for msg in source(client.jetstream(), options, tally.wanted):
            event = decode(msg)
            with processing_span(event, msg.subject):
                emit(describe(event))
            if options.durable:
                await msg.ack_sync()
            tally.printed += 1
            if tally.done:
                break
    finally:
        await client.close()
    return tally.printed


async def run(options: Options) -> None:
    """:func:`follow` printing to stdout, stopped cleanly by SIGINT or SIGTERM."""
    task = asyncio.create_task(follow(options, lambda line: print(line, flush=True)))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    try:
        await task
    except asyncio.CancelledError:
        if not task.cancelled():
            raise


def _subject(options: Options) -> str:
    stream = options.stream
    return stream.subjects if options.run is None else stream.subject_for(options.run)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        with tracing("graphmesh-subscriber"):
            asyncio.run(run(parse_args(argv)))
    except KeyboardInterrupt:  # where signal handlers are unavailable
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
