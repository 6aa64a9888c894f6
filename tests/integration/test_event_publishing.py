"""An orchestrator process's run events reach NATS when ``GRAPHMESH_NATS_URL`` is set.

``open_durable`` (what ``graphmesh serve orchestrator --store sqlite|postgres`` calls) starts
the outbox relay; a run's every event then lands on ``graphmesh.runs.<run_id>.events`` of
the real NATS server, in ``seq`` order, for both stores.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from pathlib import Path

import nats
import nats.errors
import nats.js.errors
import pytest
from nats.aio.msg import Msg
from pydantic import SecretStr

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the task catalog)
from graphmesh.orchestrator.events.publisher import nats_servers
from graphmesh.orchestrator.events.subjects import EventStreamConfig
from graphmesh.orchestrator.main import DurableSettings, open_durable
from graphmesh.orchestrator.runs.durable.service import DurableRunService
from graphmesh.orchestrator.runs.records import RunRecord, RunState
from graphmesh.v1 import events_pb2

TENANT = "t"
TRACE = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
GRAPH = {
    "tasks": [
        {"id": "a", "type": "DebugLogTask", "defaults": {"message": "hello"}, "config": {}},
        {"id": "b", "type": "DebugLogTask", "defaults": {}, "config": {}},
    ],
    "dataflows": [
        {"source_task": "a", "source_port": "message", "target_task": "b", "target_port": "message"}
    ],
}


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> tuple[str, str]:
    """A store name and its database URL."""
    if request.param == "sqlite":
        return "sqlite", f"sqlite:///{tmp_path / 'runs.sqlite'}"
    return "postgres", request.getfixturevalue("postgres_dsn")


async def test_a_runs_events_reach_nats_in_order_in_its_trace(
    store: tuple[str, str], nats_url: str
) -> None:
    name, url = store
    settings = DurableSettings(database_url=SecretStr(url), nats_url=nats_url)
    async with AsyncExitStack() as stack:
        runs, _ = await open_durable(stack, name, settings)
        run = await runs.create_run(graph=GRAPH, inputs={}, tenant=TENANT, traceparent=TRACE)
        done = await asyncio.wait_for(finished(runs, run.run_id), 30)
        messages = await asyncio.wait_for(stream_events(nats_url, run.run_id, done.last_seq), 30)
        jobs = await runs.store.queue.list_jobs()
    events = [events_pb2.RunEvent.FromString(message.data) for message in messages]
    assert done.status == RunState.COMPLETED, done.error
    assert [event.seq for event in events] == list(range(1, done.last_seq + 1))
    assert events[-1].kind == events_pb2.RUN_EVENT_KIND_RUN_COMPLETED
    assert {(message.headers or {}).get("traceparent") for message in messages} == {TRACE}
    assert [job.traceparent for job in jobs] == [TRACE, TRACE]


def test_a_malformed_nats_url_is_named() -> None:
    assert nats_servers("nats://a:4222, nats://b:4222") == ["nats://a:4222", "nats://b:4222"]
    with pytest.raises(ValueError, match="'localhost:4222' is not a URL"):
        nats_servers("localhost:4222")
    with pytest.raises(ValueError, match="names no NATS server"):
        nats_servers(" , ")


async def finished(runs: DurableRunService, run_id: str) -> RunRecord:
    while True:
        record = await runs.get_run(run_id, tenant=TENANT)
        if record.status.finished:
            return record
        await asyncio.sleep(0.02)


async def stream_events(url: str, run_id: str, count: int) -> list[Msg]:
    """The messages of the run's first ``count`` events in the stream (waiting for the
    relay)."""
    client = await nats.connect(url)
    try:
        subject = EventStreamConfig().subject_for(run_id)
        js = client.jetstream()
        while True:  # the relay creates the stream before its first publish
            try:
                subscription = await js.subscribe(subject, ordered_consumer=True)
                break
            except nats.js.errors.NotFoundError:
                await asyncio.sleep(0.1)
        events: list[Msg] = []
        while len(events) < count:
            events.append(await subscription.next_msg(timeout=10))
        return events
    finally:
        await client.close()
