"""The gRPC edge of the orchestrator: servicers, interceptors and protobuf conversion.

Only modules under ``api/`` (and the event relay, which publishes protobuf) import ``grpc``
and the generated ``graphmesh.v1`` stubs; the engine below never sees them.
"""
