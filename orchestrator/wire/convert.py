"""Protobuf <-> domain conversion of the OrchestratorService's messages: graphs, runs,
task states, usage, the catalog, saved graphs and graph issues (run events are in
:mod:`.events`, JSON values, timestamps and statuses in :mod:`.values`). The servicer and
the Python SDK both use these functions.

The ``*_from_request`` functions (and :func:`graph_source`, :func:`inputs_from_proto`) are
the server's edge: they check what they convert against
:class:`~graphmesh.orchestrator.wire.validation.RequestLimits` and raise
:class:`~graphmesh.orchestrator.wire.validation.InvalidRequestError` naming the field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from google.protobuf.duration_pb2 import Duration
from google.protobuf.struct_pb2 import Struct

from graphmesh.orchestrator.ai.usage import TaskUsage
from graphmesh.orchestrator.errors import GraphIssue
from graphmesh.orchestrator.runs.records import JsonObject, RunRecord, RunState, TaskState
from graphmesh.orchestrator.runs.storable import key_path
from graphmesh.orchestrator.storage.saved_graphs import SavedGraph
from graphmesh.orchestrator.task.base import TaskStatus
from graphmesh.orchestrator.wire.validation import (
    FieldViolation,
    InvalidRequestError,
    RequestLimits,
    check_graph_shape,
    check_timeout,
    json_violations,
    parse_json,
    raise_if,
    violation,
)
from graphmesh.orchestrator.wire.values import (
    dict_to_struct,
    from_timestamp,
    run_status_from_proto,
    run_status_to_proto,
    struct_to_dict,
    task_status_from_proto,
    task_status_to_proto,
    timestamp,
    value_from_proto,
    value_to_proto,
)
from graphmesh.v1 import common_pb2, model_pb2, orchestrator_pb2

ROOT_INPUTS = "*"
"""``CreateRunRequest.inputs`` key whose ports reach every root task having them."""
_SETTLED = (TaskStatus.COMPLETED, TaskStatus.SKIPPED, TaskStatus.FAILED)


def timeout_from_request(request: Any, limits: RequestLimits) -> float | None:
    """A request's ``timeout`` in seconds (``None`` when unset), positive and bounded."""
    if not request.HasField("timeout"):
        return None
    duration: Duration = request.timeout
    seconds, nanos = duration.seconds, duration.nanos
    if not -999_999_999 <= nanos <= 999_999_999 or (
        seconds and nanos and (seconds < 0) != (nanos < 0)
    ):
        raise_if([violation("timeout", "not a valid duration", "OUT_OF_RANGE")])
    return check_timeout(seconds + nanos / 1e9, limits)


def statuses_from_request(values: Sequence[int]) -> frozenset[RunState]:
    """A status filter; unknown values and UNSPECIFIED are refused by position."""
    known = {s for s in common_pb2.RunStatus.values() if s != common_pb2.RUN_STATUS_UNSPECIFIED}
    raise_if(
        violation(f"statuses[{index}]", f"{value} is not a run status to filter by", "UNKNOWN_ENUM")
        for index, value in enumerate(values)
        if value not in known
    )
    return frozenset(run_status_from_proto(value) for value in values)  # type: ignore[arg-type]


# -- graphs ------------------------------------------------------------------------------
def graph_to_proto(data: Mapping[str, Any]) -> common_pb2.Graph:
    """Graph JSON as a ``Graph`` message (field for field)."""
    return common_pb2.Graph(
        tasks=[_task_to_proto(task) for task in data.get("tasks", [])],
        dataflows=[common_pb2.DataFlow(**flow) for flow in data.get("dataflows", [])],
    )


def _task_to_proto(task: Mapping[str, Any]) -> common_pb2.Task:
    message = common_pb2.Task(id=task["id"], type=task["type"])
    message.defaults.CopyFrom(dict_to_struct(task.get("defaults") or {}))
    message.config.CopyFrom(dict_to_struct(task.get("config") or {}))
    if task.get("subgraph") is not None:
        message.subgraph.CopyFrom(graph_to_proto(task["subgraph"]))
    return message


def graph_from_proto(message: common_pb2.Graph) -> JsonObject:
    """A ``Graph`` message as graph JSON."""
    return {
        "tasks": [_task_from_proto(task) for task in message.tasks],
        "dataflows": [
            {
                "source_task": flow.source_task,
                "source_port": flow.source_port,
                "target_task": flow.target_task,
                "target_port": flow.target_port,
            }
            for flow in message.dataflows
        ],
    }


def _task_from_proto(message: common_pb2.Task) -> JsonObject:
    task: JsonObject = {
        "id": message.id,
        "type": message.type,
        "defaults": struct_to_dict(message.defaults),
        "config": struct_to_dict(message.config),
    }
    if message.HasField("subgraph"):
        task["subgraph"] = graph_from_proto(message.subgraph)
    return task


def graph_source(request: Any, limits: RequestLimits) -> Any:
    """The graph of a request's ``graph_source`` oneof, ``graph`` or ``graph_json``, as
    graph JSON (a dependency-JSON list stays a list), within ``limits``. ``graph_id`` is
    the caller's to load."""
    which = request.WhichOneof("graph_source")
    if which == "graph":
        data: Any = graph_from_proto(request.graph)
    elif which == "graph_json":
        data = parse_json(request.graph_json, "graph_json", limits)
    else:
        raise InvalidRequestError(
            [violation("graph_source", "the request names no graph", "MISSING")]
        )
    check_graph_shape(data, limits, parsed=which == "graph_json")
    return data


# -- run inputs --------------------------------------------------------------------------
def inputs_from_proto(inputs: Mapping[str, Struct], limits: RequestLimits) -> JsonObject:
    """``{task_id: {port: value}}`` as runner input keys: ``task.port``, or ``port`` for
    the :data:`ROOT_INPUTS` entry; every value within ``limits`` (field ``inputs.<key>``)."""
    flat: JsonObject = {}
    violations: list[FieldViolation] = []
    for task_id, values in inputs.items():
        converted = struct_to_dict(values)
        path = "inputs" + ("" if task_id == ROOT_INPUTS else key_path(task_id))
        violations += json_violations(converted, path, limits.json_depth)
        for port, value in converted.items():
            flat[port if task_id == ROOT_INPUTS else f"{task_id}.{port}"] = value
    raise_if(violations)
    return flat


def inputs_to_proto(inputs: Mapping[str, Any]) -> dict[str, Struct]:
    """Runner input keys (``port`` or ``task.port``) grouped by task for the request."""
    grouped: dict[str, dict[str, Any]] = {}
    for key, value in inputs.items():
        task_id, dot, port = key.rpartition(".")
        grouped.setdefault(task_id if dot else ROOT_INPUTS, {})[port] = value
    return {task_id: dict_to_struct(values) for task_id, values in grouped.items()}


# -- runs --------------------------------------------------------------------------------
def run_to_proto(
    record: RunRecord, view: orchestrator_pb2.RunView.ValueType = orchestrator_pb2.RUN_VIEW_FULL
) -> orchestrator_pb2.Run:
    message = orchestrator_pb2.Run(
        run_id=record.run_id,
        status=run_status_to_proto(record.status),
        labels=dict(record.labels),
        idempotency_key=record.idempotency_key or "",
        progress=run_progress(record.tasks),
        last_seq=record.last_seq,
    )
    message.create_time.CopyFrom(timestamp(record.created_at))
    message.update_time.CopyFrom(timestamp(record.updated_at))
    if record.started_at is not None:
        message.start_time.CopyFrom(timestamp(record.started_at))
    if record.ended_at is not None:
        message.end_time.CopyFrom(timestamp(record.ended_at))
    if record.error is not None:
        message.error.CopyFrom(
            common_pb2.Error(reason=f"RUN_{record.status}", message=record.error)
        )
    message.trace_id = trace_id_of(record.traceparent)
    message.task_counts.CopyFrom(task_counts(record.tasks))
    message.usage.CopyFrom(usage_to_proto(record.usage))
    if view != orchestrator_pb2.RUN_VIEW_BASIC:
        message.graph.CopyFrom(graph_to_proto(record.graph))
        message.tasks.extend(task_state_to_proto(task) for task in record.tasks)
    return message


def trace_id_of(traceparent: str | None) -> str:
    """The trace id of a W3C ``traceparent`` (``00-<trace id>-<span id>-<flags>``), or ``""``."""
    parts = (traceparent or "").split("-")
    return parts[1] if len(parts) >= 4 and len(parts[1]) == 32 else ""


_COUNTED = {
    TaskStatus.PENDING: "pending",
    TaskStatus.PROCESSING: "processing",
    TaskStatus.ABORTING: "processing",
    TaskStatus.COMPLETED: "completed",
    TaskStatus.FAILED: "failed",
    TaskStatus.SKIPPED: "skipped",
}


def task_counts(tasks: Sequence[TaskState]) -> orchestrator_pb2.TaskCounts:
    """How many of ``tasks`` are in each status (aborting counts as processing)."""
    counts = dict.fromkeys(_COUNTED.values(), 0)
    for task in tasks:
        counts[_COUNTED[task.status]] += 1
    return orchestrator_pb2.TaskCounts(total=len(tasks), **counts)


def run_progress(tasks: tuple[TaskState, ...]) -> float:
    """Mean task progress, settled tasks counting as done."""
    if not tasks:
        return 0.0
    return sum(100.0 if t.status in _SETTLED else t.progress for t in tasks) / len(tasks)


def task_state_to_proto(task: TaskState) -> orchestrator_pb2.TaskState:
    message = orchestrator_pb2.TaskState(
        task_id=task.task_id,
        status=task_status_to_proto(task.status),
        progress=task.progress,
        attempt=task.attempts,
        output_ref=task.output_ref,
    )
    if task.error is not None:
        message.error.CopyFrom(common_pb2.Error(message=task.error, task_id=task.task_id))
    if not task.usage.empty:
        message.usage.CopyFrom(usage_to_proto(task.usage))
    return message


def usage_to_proto(usage: TaskUsage) -> model_pb2.Usage:
    message = model_pb2.Usage(input_tokens=usage.input_tokens, output_tokens=usage.output_tokens)
    if usage.cost_usd is not None:
        message.cost_usd = usage.cost_usd
    return message


def usage_from_proto(message: model_pb2.Usage) -> TaskUsage:
    return TaskUsage(
        input_tokens=max(0, message.input_tokens),
        output_tokens=max(0, message.output_tokens),
        cost_usd=message.cost_usd if message.HasField("cost_usd") else None,
    )


def run_from_proto(message: orchestrator_pb2.Run) -> RunRecord:
    """The SDK's view of a run; ``tenant`` and ``inputs`` are not part of the API."""
    graph = graph_from_proto(message.graph) if message.HasField("graph") else {}
    types = {task["id"]: task["type"] for task in graph.get("tasks", [])}
    return RunRecord(
        run_id=message.run_id,
        tenant="",
        status=run_status_from_proto(message.status),
        graph=graph,
        inputs={},
        labels=dict(message.labels),
        idempotency_key=message.idempotency_key or None,
        created_at=from_timestamp(message.create_time),
        updated_at=from_timestamp(message.update_time),
        error=message.error.message if message.HasField("error") else None,
        last_seq=message.last_seq,
        tasks=tuple(_task_state_from_proto(task, types) for task in message.tasks),
        started_at=_optional_time(message, "start_time"),
        ended_at=_optional_time(message, "end_time"),
        reported_usage=usage_from_proto(message.usage),
    )


def _task_state_from_proto(
    message: orchestrator_pb2.TaskState, types: Mapping[str, str]
) -> TaskState:
    return TaskState(
        task_id=message.task_id,
        type=types.get(message.task_id, ""),
        status=task_status_from_proto(message.status) or TaskStatus.PENDING,
        progress=message.progress,
        error=message.error.message if message.HasField("error") else None,
        attempts=message.attempt,
        output_ref=message.output_ref,
        usage=usage_from_proto(message.usage),
    )


def _optional_time(message: Any, name: str) -> datetime | None:
    return from_timestamp(getattr(message, name)) if message.HasField(name) else None


# -- catalog -----------------------------------------------------------------------------
def task_type_to_proto(entry: Mapping[str, Any], version: int = 1) -> orchestrator_pb2.TaskType:
    """A :func:`~graphmesh.orchestrator.catalog.catalog_entries` entry as a ``TaskType``."""
    return orchestrator_pb2.TaskType(
        type=entry["type"],
        category=entry["category"],
        description=entry["description"],
        side_effects=entry["side_effects"],
        cacheable=entry["cacheable"],
        version=str(version),
        inputs=[port_to_proto(port) for port in entry["inputs"]],
        outputs=[port_to_proto(port) for port in entry["outputs"]],
        compound=entry.get("kind") == "compound",
    )


def port_to_proto(port: Mapping[str, Any]) -> common_pb2.Port:
    message = common_pb2.Port(
        id=port["id"],
        name=port["name"],
        value_type=port["value_type"],
        json_schema=json.dumps(port["json_schema"]),
        is_array=port["is_array"],
        required=port.get("required", False),
    )
    if not message.required:
        message.default.CopyFrom(value_to_proto(port.get("default")))
    return message


def task_type_from_proto(message: orchestrator_pb2.TaskType) -> JsonObject:
    """Back to the catalog-entry JSON form (what ``graphmesh tasks --json`` prints)."""
    return {
        "type": message.type,
        "category": message.category,
        "description": message.description,
        "side_effects": message.side_effects,
        "cacheable": message.cacheable,
        "version": message.version,
        "compound": message.compound,
        "inputs": [_port_from_proto(port) for port in message.inputs],
        "outputs": [_port_from_proto(port) for port in message.outputs],
    }


def _port_from_proto(message: common_pb2.Port) -> JsonObject:
    return {
        "id": message.id,
        "name": message.name,
        "value_type": message.value_type,
        "json_schema": json.loads(message.json_schema) if message.json_schema else None,
        "is_array": message.is_array,
        "required": message.required,
        "default": value_from_proto(message.default) if message.HasField("default") else None,
    }


# -- saved graphs ------------------------------------------------------------------------
def saved_graph_to_proto(saved: SavedGraph) -> orchestrator_pb2.SavedGraph:
    message = orchestrator_pb2.SavedGraph(
        graph_id=saved.graph_id,
        name=saved.name,
        description=saved.description,
        labels=dict(saved.labels),
        version=saved.version,
    )
    if saved.graph:
        message.graph.CopyFrom(graph_to_proto(saved.graph))
    message.create_time.CopyFrom(timestamp(saved.created_at))
    message.update_time.CopyFrom(timestamp(saved.updated_at))
    return message


def saved_graph_from_proto(message: orchestrator_pb2.SavedGraph) -> SavedGraph:
    return SavedGraph(
        graph_id=message.graph_id,
        name=message.name,
        description=message.description,
        graph=graph_from_proto(message.graph) if message.HasField("graph") else {},
        labels=dict(message.labels),
        created_at=from_timestamp(message.create_time),
        updated_at=from_timestamp(message.update_time),
        version=message.version,
    )


# -- graph issues ------------------------------------------------------------------------
def issue_field(issue: GraphIssue) -> str:
    """Where an issue is: ``tasks[<id>].<port>``, ``tasks[<id>]``, ``inputs[<key>]`` or
    ``graph``."""
    if issue.task_id is None:
        return "graph" if issue.port is None else f"inputs[{issue.port}]"
    return f"tasks[{issue.task_id}]" + ("" if issue.port is None else f".{issue.port}")


def issue_from_field(field: str, description: str, reason: str) -> GraphIssue:
    """The inverse of :func:`issue_field` (the SDK rebuilds issues from violations)."""
    task_id: str | None = None
    port: str | None = None
    if field.startswith("tasks[") and field.endswith("]"):
        task_id = field[len("tasks[") : -1]
    elif field.startswith("tasks["):
        task_id, _, port = field[len("tasks[") :].rpartition("].")
    elif field.startswith("inputs[") and field.endswith("]"):
        port = field[len("inputs[") : -1]
    return GraphIssue(code=reason.lower(), message=description, task_id=task_id, port=port)


def violation_to_proto(issue: GraphIssue) -> orchestrator_pb2.GraphViolation:
    return orchestrator_pb2.GraphViolation(
        field=issue_field(issue), description=issue.message, task_id=issue.task_id or ""
    )
