"""What checking a request at the edge costs, per CreateRun request.

The request: a 200-task graph as ``graph_json`` (each task with a few defaults, one of
them a nested object), run inputs for 20 tasks and a few labels. Timed: the edge's checks
(``check_request`` over every field, parsing and checking ``graph_json``, the graph's
shape, the inputs) as the server runs them before any core call. Reference, measured in
the same run: what CreateRun did with the same request before the edge existed and still
does after it (``json.loads`` of ``graph_json``, then ``graph_from_json``), and parsing the
protobuf request. Prints one JSON line.
"""

from __future__ import annotations

import os
import sys

# Run as a script, this folder comes first on sys.path, and bench/queue.py would shadow the
# standard library's ``queue``: drop the folder first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import json
import time
from collections.abc import Callable
from typing import Any

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the task catalog)
from graphmesh.orchestrator.graph import graph_from_json
from graphmesh.orchestrator.runs.quotas import QuotaPolicy
from graphmesh.orchestrator.wire import convert
from graphmesh.orchestrator.wire.validation import RequestLimits, check_request
from graphmesh.v1 import orchestrator_pb2 as pb

TASKS = 200
ROUNDS = 200


def request() -> pb.CreateRunRequest:
    tasks = [
        {
            "id": f"t{i}",
            "type": "DebugLogTask",
            "defaults": {"message": f"hello {i}", "values": {"a": [1, 2, {"b": "c"}], "n": 1.5}},
            "config": {"note": "x" * 40},
        }
        for i in range(TASKS)
    ]
    graph = {"tasks": tasks, "dataflows": []}
    inputs = convert.inputs_to_proto({f"t{i}.message": f"input {i}" for i in range(20)})
    return pb.CreateRunRequest(
        graph_json=json.dumps(graph), inputs=inputs, labels={"team": "search", "env": "prod"}
    )


def per_call(work: Callable[[], Any]) -> float:
    work()  # warm up
    started = time.perf_counter()
    for _ in range(ROUNDS):
        work()
    return (time.perf_counter() - started) / ROUNDS


def main() -> None:
    message = request()
    raw = message.SerializeToString()
    limits, quotas = RequestLimits(), QuotaPolicy()

    def edge() -> None:
        check_request(message, limits)
        data = convert.graph_source(message, limits)
        quotas.check_graph("t", data)
        convert.inputs_from_proto(message.inputs, limits)

    edge_s = per_call(edge)
    load_s = per_call(lambda: graph_from_json(json.loads(message.graph_json)))
    parse_s = per_call(lambda: pb.CreateRunRequest.FromString(raw))
    print(
        json.dumps(
            {
                "bench": "edge",
                "request_bytes": len(raw),
                "tasks": TASKS,
                "edge_check_ms": round(edge_s * 1000, 3),
                "reference_parse_and_load_ms": round(load_s * 1000, 3),
                "reference_protobuf_parse_ms": round(parse_s * 1000, 3),
                "edge_vs_parse_and_load": round(edge_s / load_s, 2),
            }
        )
    )


if __name__ == "__main__":
    main()
