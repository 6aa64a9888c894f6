"""The run viewer: a web page and a browser-reachable API, served by the orchestrator.

The API is the Connect protocol (JSON or binary bodies of the ``graphmesh.v1`` messages,
``POST /graphmesh.v1.OrchestratorService/<Method>``, server streaming for WatchRun), spoken
by the ``connect-python`` library and bridged into this process's own gRPC server, so every
call passes the same auth, edge checks, quotas and error table as a gRPC call
(:mod:`.bridge`). The page's assets are built from ``viewer/`` and shipped in ``static/``.
"""
