"""Run events leave the orchestrator through an outbox: the run services write them into
``graphmesh_run_events`` in the transaction of the change they describe, and the
:class:`~graphmesh.orchestrator.events.relay.OutboxRelay` publishes them, in order per run,
to an :class:`~graphmesh.orchestrator.events.bus.EventBus` (NATS JetStream in the mesh,
subject ``graphmesh.runs.<run_id>.events``).

Modules: ``subjects`` (names, headers, stream settings), ``bus`` (the interface, its errors,
the in-memory bus), ``jetstream`` (the NATS bus), ``outbox`` (what the relay needs from the
table), ``relay``, ``postgres`` and ``sqlite`` (the outboxes).
"""
