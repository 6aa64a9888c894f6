"""The graphmesh engine: task model, graphs, runner, builder, catalog and storage."""
