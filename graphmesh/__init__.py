"""graphmesh: AI pipelines as task graphs, embedded in one process or as a gRPC mesh."""

__version__ = "0.1.0"
