"""The model server as a gRPC service: config, the model host, the servicer, the process."""
