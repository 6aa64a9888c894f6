"""An orchestrator process's event publishing: the outbox relay to NATS JetStream.

::

    async with publish_run_events(outbox, store.signals, "nats://host:4222"):
        ...  # events the run services commit reach NATS while the block is open

``graphmesh serve orchestrator`` and the worker-only process open this when
``GRAPHMESH_NATS_URL`` is set. The relay wakes on the outbox's own notifications (Postgres
``LISTEN``, from every process on the database) and on this process's run signals (the
only ones SQLite has), and polls besides. NATS may be down when the process starts or go
down later: events wait in the outbox and leave in order once it is back.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from graphmesh.orchestrator.events.jetstream import JetStreamEventBus
from graphmesh.orchestrator.events.outbox import Outbox
from graphmesh.orchestrator.events.relay import OutboxRelay, RelaySettings
from graphmesh.orchestrator.events.subjects import EventStreamConfig
from graphmesh.orchestrator.runs.durable.store import RunSignals
from graphmesh.orchestrator.runs.records import RunState


def nats_servers(url: str) -> list[str]:
    """The servers of ``GRAPHMESH_NATS_URL``: one URL, or several separated by commas."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    if not servers:
        raise ValueError("GRAPHMESH_NATS_URL names no NATS server")
    for server in servers:
        if "://" not in server:
            raise ValueError(f"NATS server {server!r} is not a URL such as nats://host:4222")
    return servers


@asynccontextmanager
async def publish_run_events(
    outbox: Outbox,
    signals: RunSignals,
    nats_url: str,
    *,
    stream: EventStreamConfig | None = None,
    settings: RelaySettings | None = None,
) -> AsyncIterator[OutboxRelay]:
    """Relay ``outbox`` to the JetStream servers of ``nats_url`` while the block is open."""
    servers = nats_servers(nats_url)
    async with (
        JetStreamEventBus.connect(servers, stream=stream) as bus,
        OutboxRelay(outbox, bus, settings) as relay,
    ):

        def wake(_run_id: str, _status: RunState) -> None:
            relay.wake()

        with signals.listening(wake):
            yield relay
