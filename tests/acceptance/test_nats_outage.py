"""A NATS outage delays run events and loses none.

A nats-server of this test's own (JetStream, file store) is SIGKILLed while events are being
written and relayed from Postgres, more events are written while it is down, and it is
started again on the same port with the same store. A durable consumer created before the
outage must then receive every event exactly once, each run's in ``seq`` order.

The second test does the same to a whole orchestrator process
(``graphmesh serve orchestrator --store postgres`` with ``GRAPHMESH_NATS_URL``) in the
middle of a run: after NATS is back, its stream holds the run's every event once, in order,
the same events ``WatchRun`` returns.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import nats
import nats.errors
import psycopg
import pytest
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from support.durable_tasks import create_executions_table
from support.nats import NatsProcess
from support.orchestrator_process import orchestrator_process, record_lattice, until_completed

from graphmesh.client import Client
from graphmesh.orchestrator.events.jetstream import JetStreamEventBus
from graphmesh.orchestrator.events.postgres import PostgresOutbox, notify_run_events
from graphmesh.orchestrator.events.relay import Backoff, OutboxRelay, RelaySettings
from graphmesh.orchestrator.events.subjects import EventStreamConfig
from graphmesh.orchestrator.runs.records import RunState
from graphmesh.v1 import events_pb2

pytestmark = pytest.mark.slow

RUNS = [f"outage-run-{index}" for index in range(4)]
EVENTS_PER_RUN = 40
TOTAL = len(RUNS) * EVENTS_PER_RUN
INSERT = """
    INSERT INTO graphmesh_run_events (run_id, seq, time, kind, run_status, message)
    VALUES (%s, %s, %s, 'TASK_PROGRESS', 'RUNNING', %s)
"""
STAMPED = "SELECT run_id, seq FROM graphmesh_run_events WHERE published_at IS NOT NULL"
UNSTAMPED = "SELECT count(*) FROM graphmesh_run_events WHERE published_at IS NULL"
SETTINGS = RelaySettings(poll_interval_s=0.2, backoff=Backoff(initial_s=0.05, max_s=0.5))


class Emitter:
    """Writes events the way the run services do: one transaction each, then NOTIFY.
    Round-robin over the runs, so every run is mid-stream when NATS dies."""

    def __init__(self, dsn: str) -> None:
        self._dsn = dsn
        self.written: list[tuple[str, int]] = []

    async def run(self) -> None:
        async with await psycopg.AsyncConnection.connect(self._dsn) as connection:
            for seq in range(1, EVENTS_PER_RUN + 1):
                for run_id in RUNS:
                    await self._write(connection, run_id, seq)
                    await asyncio.sleep(0.005)

    async def _write(self, connection: psycopg.AsyncConnection[object], run: str, seq: int) -> None:
        async with connection.transaction():
            await connection.execute(INSERT, (run, seq, datetime.now(UTC), f"step {seq}"))
            await notify_run_events(connection)
        self.written.append((run, seq))


async def stamped(dsn: str) -> set[tuple[str, int]]:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(STAMPED)
        return {(run_id, seq) for run_id, seq in await cursor.fetchall()}


async def eventually(
    check: Callable[[], Awaitable[bool]], what: str, timeout_s: float = 60
) -> None:
    """Poll ``check`` until it holds; fail with ``what`` after ``timeout_s``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        await asyncio.sleep(0.05)


@asynccontextmanager
async def durable_consumer(
    url: str, stream: EventStreamConfig
) -> AsyncIterator[JetStreamContext.PullSubscription]:
    """A durable consumer of every run's events, on a connection that outlives outages."""
    client = await nats.connect(
        url, max_reconnect_attempts=-1, reconnect_time_wait=1, error_cb=_expected_while_down
    )
    try:
        js = client.jetstream()
        yield await js.pull_subscribe(stream.subjects, durable="watcher", stream=stream.name)
    finally:
        await client.close()


async def receive_all(subscription: JetStreamContext.PullSubscription) -> list[Msg]:
    """Every message the consumer delivers, until it has had all and then none for a second."""
    received: list[Msg] = []
    deadline = asyncio.get_running_loop().time() + 60
    while asyncio.get_running_loop().time() < deadline:
        try:
            batch = await subscription.fetch(batch=100, timeout=1)
        except nats.errors.TimeoutError:
            if len(received) >= TOTAL:
                return received
            continue
        for msg in batch:
            await msg.ack_sync()
        received.extend(batch)
    return received


def by_run(messages: Sequence[Msg]) -> dict[str, list[int]]:
    runs: dict[str, list[int]] = {}
    for msg in messages:
        event = events_pb2.RunEvent.FromString(msg.data)
        assert msg.subject == f"graphmesh.runs.{event.run_id}.events"
        runs.setdefault(event.run_id, []).append(event.seq)
    return runs


async def run_through_an_outage(
    dsn: str, server: NatsProcess, emitter: Emitter, relay: OutboxRelay
) -> None:
    """Kill NATS while events are relayed, write more while it is down, start it again."""
    emitting = asyncio.create_task(emitter.run())

    async def some_published() -> bool:
        return len(await stamped(dsn)) >= 20

    await eventually(some_published, "the relay has published 20 events")
    assert len(emitter.written) < TOTAL, "the emitter finished before the outage"
    server.kill()
    written_before_kill = len(emitter.written)

    async def more_written() -> bool:
        return len(emitter.written) >= written_before_kill + 40

    await eventually(more_written, "40 more events are written while NATS is down")

    async def relay_backing_off() -> bool:
        return relay.failures >= 2

    await eventually(relay_backing_off, "the relay has failed two rounds in a row")
    assert not set(emitter.written[written_before_kill:]) & await stamped(dsn)
    server.start()
    await emitting

    async def all_published() -> bool:
        return len(await stamped(dsn)) == TOTAL

    await eventually(all_published, "every event is stamped published")


async def test_a_nats_outage_delays_events_and_loses_none(
    postgres_dsn: str, tmp_path: Path
) -> None:
    server = NatsProcess(tmp_path / "nats-store")
    server.start()
    stream = EventStreamConfig()
    try:
        async with (
            PostgresOutbox.open(postgres_dsn) as outbox,
            JetStreamEventBus.connect(server.url, stream=stream, ack_timeout_s=1.0) as bus,
        ):
            await bus.ensure_stream()
            async with durable_consumer(server.url, stream) as watcher:
                async with OutboxRelay(outbox, bus, SETTINGS) as relay:
                    emitter = Emitter(postgres_dsn)
                    await run_through_an_outage(postgres_dsn, server, emitter, relay)
                received = await receive_all(watcher)
    finally:
        server.stop()
    keys = [(event.run_id, event.seq) for event in map(_decode, received)]
    assert len(keys) == TOTAL
    assert set(Counter(keys).values()) == {1}
    assert by_run(received) == {run_id: list(range(1, EVENTS_PER_RUN + 1)) for run_id in RUNS}


async def test_an_orchestrator_publishes_a_whole_run_through_a_nats_outage(
    postgres_dsn: str, tmp_path: Path
) -> None:
    dsn = postgres_dsn
    await create_executions_table(dsn)
    graph = record_lattice(dsn, width=3, depth=8, seconds=0.2)  # 24 tasks, ~1.6 s of work
    server = NatsProcess(tmp_path / "nats-store")
    server.start()
    try:
        with orchestrator_process(dsn, env={"GRAPHMESH_NATS_URL": server.url}) as (_, address):
            async with Client(address, timeout=10) as client:
                run = await client.submit(graph)
                await asyncio.wait_for(until_completed(dsn, run.run_id, 4), 60)
                server.kill()
                await asyncio.wait_for(until_completed(dsn, run.run_id, 10), 60)
                assert await unstamped(dsn) > 0, "events written while NATS was down"
                server.start()
                done = await asyncio.wait_for(client.wait(run.run_id), 60)
                watched = [event async for event in client.watch(run.run_id)]

                async def all_published() -> bool:
                    return await unstamped(dsn) == 0

                await eventually(all_published, "every event of the run is published")
            published = await stream_events(server.url, run.run_id)
    finally:
        server.stop()
    assert done.status == RunState.COMPLETED, done.error
    assert [event.seq for event in published] == list(range(1, done.last_seq + 1))
    assert [(e.seq, e.kind.name, e.task_id) for e in watched] == [
        (e.seq, events_pb2.RunEventKind.Name(e.kind).removeprefix("RUN_EVENT_KIND_"), e.task_id)
        for e in published
    ]


async def unstamped(dsn: str) -> int:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        cursor = await connection.execute(UNSTAMPED)
        row = await cursor.fetchone()
        assert row is not None
        return int(row[0])


async def stream_events(url: str, run_id: str) -> list[events_pb2.RunEvent]:
    """Every message on the run's subject in the stream, from its first."""
    client = await nats.connect(url)
    try:
        subject = EventStreamConfig().subject_for(run_id)
        subscription = await client.jetstream().pull_subscribe(subject, durable=None)
        messages: list[Msg] = []
        while True:
            try:
                messages += await subscription.fetch(batch=100, timeout=1)
            except nats.errors.TimeoutError:
                return [_decode(msg) for msg in messages]
    finally:
        await client.close()


async def _expected_while_down(error: Exception) -> None:
    """Refused reconnects are the point of this test; nats-py would log each at ERROR."""


def _decode(msg: Msg) -> events_pb2.RunEvent:
    return events_pb2.RunEvent.FromString(msg.data)
