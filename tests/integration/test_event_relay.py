"""The outbox relay against real Postgres, SQLite and NATS JetStream, and the example subscriber.

Each test gets a JetStream stream of its own (a unique name and subject prefix on the shared
server), deleted afterwards. Rows are inserted here the way the run services write them: in
one transaction, followed by a notification.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import sys
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, closing
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nats
import psycopg
import pytest
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from psycopg.types.json import Jsonb

from graphmesh.orchestrator.events.bus import MemoryEventBus, PublishError
from graphmesh.orchestrator.events.jetstream import JetStreamEventBus
from graphmesh.orchestrator.events.outbox import Outbox
from graphmesh.orchestrator.events.postgres import PostgresOutbox, notify_run_events
from graphmesh.orchestrator.events.relay import Backoff, OutboxRelay, RelaySettings
from graphmesh.orchestrator.events.sqlite import SqliteOutbox
from graphmesh.orchestrator.events.subjects import EventStreamConfig
from graphmesh.orchestrator.runs.records import RunEventKind, RunEventRecord, RunState
from graphmesh.orchestrator.task.base import TaskStatus
from graphmesh.orchestrator.wire.events import event_from_proto, event_to_proto
from graphmesh.v1 import events_pb2

ROOT = Path(__file__).resolve().parents[2]
SUBSCRIBER = ROOT / "examples" / "subscriber.py"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
FAST = RelaySettings(poll_interval_s=0.2, backoff=Backoff(initial_s=0.01, max_s=0.1))
COLUMNS = (
    "run_id, seq, time, kind, run_status, task_id, status, progress, message, error, "
    "error_type, output_ref, details, traceparent"
)
PG_INSERT = f"INSERT INTO graphmesh_run_events ({COLUMNS}) VALUES ({', '.join(['%s'] * 14)})"
SQLITE_INSERT = f"INSERT INTO graphmesh_run_events ({COLUMNS}) VALUES ({', '.join('?' * 14)})"
UNPUBLISHED = "SELECT count(*) FROM graphmesh_run_events WHERE published_at IS NULL"


def make_events(
    run_id: str, count: int, *, start: int = 1, traceparent: str | None = None
) -> list[RunEventRecord]:
    """``count`` varied events of one run, ``seq`` from ``start``."""
    base = datetime(2025, 1, 2, 3, 4, 5, 123456, tzinfo=UTC)
    events = []
    for seq in range(start, start + count):
        task = f"task{seq}"
        events.append(
            RunEventRecord(
                run_id=run_id,
                seq=seq,
                time=base + timedelta(seconds=seq),
                kind=RunEventKind.TASK_PROGRESS if seq % 3 else RunEventKind.TASK_FAILED,
                run_status=RunState.RUNNING,
                task_id=task,
                status=TaskStatus.PROCESSING if seq % 3 else TaskStatus.FAILED,
                progress=float(seq % 100),
                message=f"step {seq}",
                error=None if seq % 3 else f"boom {seq}",
                error_type=None if seq % 3 else "ValueError",
                output_ref=f"{run_id}/{task}",
                details={"seq": seq, "tags": ["a", "b"]},
                traceparent=traceparent,
            )
        )
    return events


def new_run_id() -> str:
    return f"run-{uuid.uuid4().hex[:12]}"


def row(event: RunEventRecord, *, sqlite: bool = False) -> tuple[object, ...]:
    """The column values of an event; SQLite keeps times and JSON as text."""
    status = None if event.status is None else event.status.value
    time = event.time.isoformat() if sqlite else event.time
    details = json.dumps(event.details) if sqlite else Jsonb(event.details)
    return (
        *(event.run_id, event.seq, time, event.kind.value, event.run_status.value),
        *(event.task_id, status, event.progress, event.message, event.error),
        *(event.error_type, event.output_ref, details, event.traceparent),
    )


@dataclass(frozen=True, kw_only=True)
class Backend:
    """One database, seen as outboxes (one per relay) and as the writer of events."""

    name: str
    open_outbox: Callable[[], AbstractAsyncContextManager[Outbox]]
    write: Callable[[Sequence[RunEventRecord]], Awaitable[None]]
    unpublished: Callable[[], Awaitable[int]]


def postgres_backend(dsn: str) -> Backend:
    async def write(events: Sequence[RunEventRecord]) -> None:
        async with await psycopg.AsyncConnection.connect(dsn) as connection:
            async with connection.transaction():
                await connection.cursor().executemany(PG_INSERT, [row(e) for e in events])
                await notify_run_events(connection)

    async def unpublished() -> int:
        async with await psycopg.AsyncConnection.connect(dsn) as connection:
            found = await (await connection.execute(UNPUBLISHED)).fetchone()
            return int(found[0]) if found else -1

    return Backend(
        name="postgres",
        open_outbox=lambda: PostgresOutbox.open(dsn),
        write=write,
        unpublished=unpublished,
    )


def sqlite_backend(path: Path) -> Backend:
    def insert(events: Sequence[RunEventRecord]) -> None:
        connection = sqlite3.connect(path, isolation_level=None, timeout=30)
        try:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(SQLITE_INSERT, [row(e, sqlite=True) for e in events])
            connection.execute("COMMIT")
        finally:
            connection.close()

    outboxes: list[SqliteOutbox] = []

    async def write(events: Sequence[RunEventRecord]) -> None:
        await asyncio.to_thread(insert, events)
        for outbox in outboxes:  # an emitter in this process wakes the relays
            outbox.notify()

    def count() -> int:
        with closing(sqlite3.connect(path)) as connection:
            return int(connection.execute(UNPUBLISHED).fetchone()[0])

    async def unpublished() -> int:
        return await asyncio.to_thread(count)

    @asynccontextmanager
    async def open_outbox() -> AsyncIterator[Outbox]:
        async with SqliteOutbox.open(path) as outbox:
            outboxes.append(outbox)
            yield outbox

    return Backend(name="sqlite", open_outbox=open_outbox, write=write, unpublished=unpublished)


@pytest.fixture(params=["postgres", "sqlite"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "postgres":
        made = postgres_backend(request.getfixturevalue("postgres_dsn"))
    else:
        made = sqlite_backend(tmp_path / "events.sqlite")
    async with made.open_outbox():  # creates and migrates the database
        yield made


@pytest.fixture
def stream() -> EventStreamConfig:
    token = uuid.uuid4().hex[:10]
    return EventStreamConfig(
        name=f"GM_TEST_{token}",
        subject_prefix=f"gmtest.{token}.runs",
        storage="memory",
        max_age_s=3600,
        duplicate_window_s=600,
    )


@pytest.fixture
async def js(nats_url: str, stream: EventStreamConfig) -> AsyncIterator[JetStreamContext]:
    client = await nats.connect(nats_url)
    try:
        yield client.jetstream()
        try:
            await client.jetstream().delete_stream(stream.name)
        except NotFoundError:
            pass
    finally:
        await client.close()


@pytest.fixture
async def bus(
    nats_url: str, stream: EventStreamConfig, js: JetStreamContext
) -> AsyncIterator[JetStreamEventBus]:
    async with JetStreamEventBus.connect(nats_url, stream=stream, ack_timeout_s=2.0) as made:
        yield made


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 20
) -> None:
    """Poll ``check`` until it holds; fail with ``what`` after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.02)


async def stored(js: JetStreamContext, stream: EventStreamConfig) -> list[RawStreamMsg]:
    """Every message in the stream, in stream order."""
    try:
        state = (await js.stream_info(stream.name)).state
    except NotFoundError:
        return []
    if not state.messages:
        return []
    return [
        await js.get_msg(stream.name, seq) for seq in range(state.first_seq, state.last_seq + 1)
    ]


async def stream_holds(js: JetStreamContext, stream: EventStreamConfig, count: int) -> bool:
    try:
        return (await js.stream_info(stream.name)).state.messages >= count
    except NotFoundError:
        return False


def seqs_by_run(messages: Sequence[RawStreamMsg]) -> dict[str, list[int]]:
    """The ``seq`` of each run's events, in stream order."""
    runs: dict[str, list[int]] = {}
    for message in messages:
        event = events_pb2.RunEvent.FromString(message.data or b"")
        runs.setdefault(event.run_id, []).append(event.seq)
    return runs


async def test_subjects_and_stream_settings() -> None:
    config = EventStreamConfig()
    assert config.name == "GRAPHMESH_RUNS"
    assert config.subjects == "graphmesh.runs.*.events"
    assert config.subject_for("r1") == "graphmesh.runs.r1.events"
    assert config.run_id_of("graphmesh.runs.r1.events") == "r1"
    for bad in ("a.b", "a*", ">", "a b", ""):
        with pytest.raises(ValueError):
            config.subject_for(bad)
    with pytest.raises(ValueError):
        EventStreamConfig(duplicate_window_s=10, max_age_s=5)


def test_backoff_is_capped_exponential_with_jitter() -> None:
    policy = Backoff(initial_s=0.5, multiplier=2, max_s=3)
    assert [policy.delay_s(n, lambda: 1.0) for n in range(1, 6)] == [0.5, 1, 2, 3, 3]
    assert [policy.delay_s(n, lambda: 0.0) for n in range(1, 4)] == [0.25, 0.5, 1]


async def test_events_reach_nats_in_order_with_subject_headers_and_payload(
    backend: Backend, bus: JetStreamEventBus, js: JetStreamContext, stream: EventStreamConfig
) -> None:
    traced, plain = new_run_id(), new_run_id()
    events = {traced: make_events(traced, 7, traceparent=TRACEPARENT), plain: make_events(plain, 4)}
    async with backend.open_outbox() as outbox, OutboxRelay(outbox, bus, FAST):
        await backend.write(events[traced][:3] + events[plain])
        await backend.write(events[traced][3:])
        await eventually(lambda: stream_holds(js, stream, 11), "all 11 events are in the stream")
        await eventually(lambda: _none(backend.unpublished), "every row is stamped")
    messages = await stored(js, stream)
    assert seqs_by_run(messages) == {traced: list(range(1, 8)), plain: list(range(1, 5))}
    for message in messages:
        received = events_pb2.RunEvent.FromString(message.data or b"")
        sent = events[received.run_id][received.seq - 1]
        assert message.subject == stream.subject_for(sent.run_id)
        assert received == event_to_proto(sent)
        assert event_from_proto(received) == replace(sent, traceparent=None)
        expected = {"Nats-Msg-Id": f"{sent.run_id}:{sent.seq}"}
        if sent.traceparent:
            expected["traceparent"] = TRACEPARENT
        headers = message.headers or {}
        assert {key: headers[key] for key in expected.keys() & headers.keys()} == expected
        assert ("traceparent" in headers) == bool(sent.traceparent)


async def _none(count: Callable[[], Awaitable[int]]) -> bool:
    return await count() == 0


class Crash(Exception):
    """The relay dies between publishing and stamping."""


async def test_an_event_published_again_after_a_crash_is_dropped_as_a_duplicate(
    backend: Backend, bus: JetStreamEventBus, js: JetStreamContext, stream: EventStreamConfig
) -> None:
    run_id = new_run_id()
    await backend.write(make_events(run_id, 4))
    async with backend.open_outbox() as outbox:
        with pytest.raises(Crash):
            async with outbox.claim(max_runs=10, max_per_run=10) as claim:
                await bus.publish(claim.events)
                raise Crash
        assert await backend.unpublished() == 4
        outcome = await OutboxRelay(outbox, bus, FAST).relay_once()
    assert outcome.published == 4
    assert bus.duplicates == 4
    assert await backend.unpublished() == 0
    assert seqs_by_run(await stored(js, stream)) == {run_id: [1, 2, 3, 4]}


class RecordingBus:
    """Passes events on to a real bus, noting every event it was asked to publish."""

    def __init__(self, inner: JetStreamEventBus) -> None:
        self.inner = inner
        self.attempts: Counter[tuple[str, int]] = Counter()

    async def publish(self, events: Sequence[RunEventRecord]) -> None:
        self.attempts.update((event.run_id, event.seq) for event in events)
        await self.inner.publish(events)


async def write_interleaved(backend: Backend, runs: Sequence[str], per_run: int) -> None:
    """Write every run's events a few at a time, runs interleaved, as busy runs would."""
    for start in range(1, per_run + 1, 3):
        for run_id in runs:
            await backend.write(make_events(run_id, min(3, per_run - start + 1), start=start))


async def test_two_relays_deliver_each_event_once_in_order(
    backend: Backend, bus: JetStreamEventBus, js: JetStreamContext, stream: EventStreamConfig
) -> None:
    runs, per_run = [new_run_id() for _ in range(8)], 12
    recording = RecordingBus(bus)
    small = replace(FAST, max_runs=3, max_per_run=4)
    async with backend.open_outbox() as first, backend.open_outbox() as second:
        async with OutboxRelay(first, recording, small), OutboxRelay(second, recording, small):
            await write_interleaved(backend, runs, per_run)
            await eventually(lambda: _none(backend.unpublished), "every row is stamped")
    assert await stream_holds(js, stream, len(runs) * per_run)
    assert seqs_by_run(await stored(js, stream)) == {r: list(range(1, per_run + 1)) for r in runs}
    if backend.name == "postgres":
        # Runs are claimed under a row lock: no event is ever handed to the bus twice.
        assert set(recording.attempts.values()) == {1}
        assert bus.duplicates == 0


async def test_a_run_stops_at_its_first_failed_event_and_resumes_in_order(backend: Backend) -> None:
    stuck, free = new_run_id(), new_run_id()
    bus = MemoryEventBus(reject=lambda event: event.run_id == stuck and event.seq == 3)
    await backend.write(make_events(stuck, 5) + make_events(free, 3))
    async with backend.open_outbox() as outbox:
        relay = OutboxRelay(outbox, bus, FAST)
        first = await relay.relay_once()
        assert (first.published, first.failed_runs) == (5, (stuck,))
        assert await backend.unpublished() == 3
        bus.reject = None
        second = await relay.relay_once()
    assert (second.published, second.failed_runs) == (3, ())
    assert [e.seq for e in bus.accepted if e.run_id == stuck] == [1, 2, 3, 4, 5]
    assert [e.seq for e in bus.accepted if e.run_id == free] == [1, 2, 3]


async def test_an_event_waits_for_the_one_before_it(backend: Backend) -> None:
    run_id = new_run_id()
    events = make_events(run_id, 4)
    bus = MemoryEventBus()
    await backend.write([events[0], events[2], events[3]])  # seq 2 not committed yet
    async with backend.open_outbox() as outbox:
        relay = OutboxRelay(outbox, bus, FAST)
        assert (await relay.relay_once()).published == 1
        assert (await relay.relay_once()).published == 0
        await backend.write([events[1]])
        assert (await relay.relay_once()).published == 3
    assert [event.seq for event in bus.accepted] == [1, 2, 3, 4]


async def test_the_relay_backs_off_while_the_bus_is_down_and_loses_nothing(
    backend: Backend,
) -> None:
    run_id = new_run_id()
    bus = MemoryEventBus()
    bus.available = False
    async with backend.open_outbox() as outbox, OutboxRelay(outbox, bus, FAST) as relay:
        await backend.write(make_events(run_id, 3))

        async def backing_off() -> bool:
            return relay.failures >= 3

        await eventually(backing_off, "the relay has failed three rounds in a row")
        await backend.write(make_events(run_id, 3, start=4))
        assert await backend.unpublished() == 6
        bus.available = True
        await eventually(lambda: _none(backend.unpublished), "every row is stamped")
        assert relay.failures == 0
    assert [event.seq for event in bus.accepted] == [1, 2, 3, 4, 5, 6]


async def test_a_notification_wakes_the_relay_long_before_it_would_poll(backend: Backend) -> None:
    bus = MemoryEventBus()
    slow_poll = replace(FAST, poll_interval_s=120)
    async with backend.open_outbox() as outbox, OutboxRelay(outbox, bus, slow_poll):
        for run_id in (new_run_id(), new_run_id()):
            await backend.write(make_events(run_id, 2))
            await eventually(lambda: _none(backend.unpublished), "the new run is published", 10)
    assert len(bus.accepted) == 4


async def test_the_jetstream_bus_fails_fast_while_nats_is_unreachable() -> None:
    unreachable = "nats://127.0.0.1:1"
    async with JetStreamEventBus.connect(unreachable, ack_timeout_s=0.3) as bus:
        with pytest.raises(PublishError) as failure:
            await bus.publish(make_events(new_run_id(), 2))
        assert failure.value.published == 0
        assert not bus.connected


async def test_the_jetstream_bus_recreates_a_deleted_stream(
    bus: JetStreamEventBus, js: JetStreamContext, stream: EventStreamConfig
) -> None:
    run_id = new_run_id()
    await bus.publish(make_events(run_id, 1))
    await js.delete_stream(stream.name)
    await bus.publish(make_events(run_id, 1, start=2))
    assert seqs_by_run(await stored(js, stream)) == {run_id: [2]}


async def run_subscriber(nats_url: str, stream: EventStreamConfig, *args: str) -> list[str]:
    """Run the example subscriber to completion; its output lines."""
    process = await asyncio.create_subprocess_exec(
        *subscriber_command(nats_url, stream, *args),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, err.decode()
    return out.decode().splitlines()


def subscriber_command(nats_url: str, stream: EventStreamConfig, *args: str) -> list[str]:
    options = [
        "--nats",
        nats_url,
        "--stream",
        stream.name,
        "--subject-prefix",
        stream.subject_prefix,
    ]
    return [sys.executable, str(SUBSCRIBER), *options, *args]


def fields(line: str) -> tuple[str, int]:
    parts = dict(part.split("=", 1) for part in line.split() if "=" in part)
    return parts["run"], int(parts["seq"])


async def test_the_example_subscriber_prints_one_line_per_event(
    nats_url: str, bus: JetStreamEventBus, stream: EventStreamConfig
) -> None:
    first, second = new_run_id(), new_run_id()
    await bus.publish(make_events(first, 3, traceparent=TRACEPARENT))
    await bus.publish(make_events(second, 2))
    every = await run_subscriber(nats_url, stream, "--count", "5")
    assert sorted(fields(line) for line in every) == sorted(
        [(first, 1), (first, 2), (first, 3), (second, 1), (second, 2)]
    )
    assert every[0].startswith(f"run={first} seq=1 kind=TASK_PROGRESS task=task1 status=PROCESSING")
    assert "trace=4bf92f3577b34da6a3ce929d0e0e4736" in every[0]
    one_run = await run_subscriber(nats_url, stream, "--run", second, "--count", "2")
    assert [fields(line) for line in one_run] == [(second, 1), (second, 2)]


async def test_a_durable_example_subscriber_resumes_where_it_stopped(
    nats_url: str, bus: JetStreamEventBus, stream: EventStreamConfig
) -> None:
    run_id = new_run_id()
    await bus.publish(make_events(run_id, 5))
    durable = ("--durable", "printer")
    before = await run_subscriber(nats_url, stream, *durable, "--count", "2")
    after = await run_subscriber(nats_url, stream, *durable, "--count", "3")
    assert [fields(line)[1] for line in before + after] == [1, 2, 3, 4, 5]


async def test_the_example_subscriber_stops_cleanly_on_ctrl_c(
    nats_url: str, bus: JetStreamEventBus, stream: EventStreamConfig
) -> None:
    run_id = new_run_id()
    await bus.publish(make_events(run_id, 2))
    process = await asyncio.create_subprocess_exec(
        *subscriber_command(nats_url, stream), stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    lines = [await asyncio.wait_for(process.stdout.readline(), 30) for _ in range(2)]
    assert [fields(line.decode()) for line in lines] == [(run_id, 1), (run_id, 2)]
    process.send_signal(signal.SIGINT)
    assert await asyncio.wait_for(process.wait(), 30) == 0
