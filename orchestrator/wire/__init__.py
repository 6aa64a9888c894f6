"""The wire layer: the OrchestratorService's protobuf messages <-> the engine's domain types.

One layer for everyone who reads or writes ``graphmesh.v1`` messages of the orchestrator:
the servicer (``api/``), the Python SDK (``graphmesh.client``), the NATS event publisher
(``events/jetstream.py``) and subscribers (``examples/subscriber.py``).

- :mod:`.values`: JSON values (``Struct``/``Value``), timestamps, run and task statuses.
- :mod:`.events`: run events (``RunEvent``, as messages and as NATS payload bytes).
- :mod:`.convert`: graphs, runs, usage, the catalog, saved graphs, graph issues, and the
  request fields the server converts and checks.
- :mod:`.validation`: what a request may hold (:class:`~.validation.RequestLimits`).
- :mod:`.errors`: the error table, domain exceptions <-> gRPC statuses, both directions.

Only this layer, the servicers (``api/``), the SDK, the CLI and the model clients import
``grpc`` and the generated stubs; the engine below never sees them (an import-linter
contract in ``pyproject.toml``).
"""
