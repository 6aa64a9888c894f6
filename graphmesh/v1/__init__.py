"""Generated gRPC stubs of the graphmesh.v1 contract; regenerate with ``python proto/generate.py``."""
