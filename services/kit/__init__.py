"""The small kit every graphmesh gRPC service shares: settings, the server bootstrap
(:mod:`.server`) and telemetry (:mod:`.telemetry`).

It imports neither the engine nor a deployable, so the orchestrator, model servers and
gateways can all build on it. Import its modules directly: this package imports nothing,
so the SDK can use :mod:`.telemetry` without the service extras' health and reflection
packages.
"""
