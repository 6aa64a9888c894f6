"""The gRPC edge of the orchestrator: servicers, interceptors, server and run viewer.

Protobuf <-> domain conversion, request checks and the error table live one layer down,
in :mod:`graphmesh.orchestrator.wire`, which the SDK and the event publisher share.
"""
