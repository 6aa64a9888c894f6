"""RunEventRecord <-> ``graphmesh.v1.RunEvent``: the one place run events change shape.

WatchRun streams the message, the outbox relay publishes its bytes to NATS
(:func:`event_to_bytes`), and subscribers read them back (:func:`event_from_bytes`).
"""

from __future__ import annotations

from graphmesh.orchestrator.runs.records import RunEventKind, RunEventRecord
from graphmesh.orchestrator.wire.values import (
    dict_to_struct,
    from_timestamp,
    run_status_from_proto,
    run_status_to_proto,
    struct_to_dict,
    task_status_from_proto,
    task_status_to_proto,
    timestamp,
)
from graphmesh.v1 import common_pb2, events_pb2


def event_to_proto(event: RunEventRecord) -> events_pb2.RunEvent:
    """The protobuf form of a stored event (what WatchRun streams and NATS carries)."""
    message = events_pb2.RunEvent(
        run_id=event.run_id,
        seq=event.seq,
        kind=events_pb2.RunEventKind.Value(f"RUN_EVENT_KIND_{event.kind.value}"),
        task_id=event.task_id,
        status=task_status_to_proto(event.status),
        progress=event.progress,
        message=event.message,
        output_ref=event.output_ref,
        run_status=run_status_to_proto(event.run_status),
    )
    message.time.CopyFrom(timestamp(event.time))
    if event.error is not None:
        message.error.CopyFrom(
            common_pb2.Error(
                message=event.error, reason=event.error_type or "", task_id=event.task_id
            )
        )
    if event.details:
        message.details.CopyFrom(dict_to_struct(event.details))
    return message


def event_from_proto(message: events_pb2.RunEvent) -> RunEventRecord:
    """Back to the domain form (subscribers and the Python SDK use this)."""
    has_error = message.HasField("error")
    return RunEventRecord(
        run_id=message.run_id,
        seq=message.seq,
        time=from_timestamp(message.time),
        kind=RunEventKind(
            events_pb2.RunEventKind.Name(message.kind).removeprefix("RUN_EVENT_KIND_")
        ),
        run_status=run_status_from_proto(message.run_status),
        task_id=message.task_id,
        status=task_status_from_proto(message.status),
        progress=message.progress,
        message=message.message,
        error=message.error.message if has_error else None,
        error_type=(message.error.reason or None) if has_error else None,
        output_ref=message.output_ref,
        details=struct_to_dict(message.details) if message.HasField("details") else None,
    )


def event_to_bytes(event: RunEventRecord) -> bytes:
    """The serialized ``RunEvent`` of an event: a NATS message's payload."""
    return event_to_proto(event).SerializeToString()


def event_from_bytes(data: bytes) -> RunEventRecord:
    """An event from a serialized ``RunEvent`` (a NATS message's payload)."""
    return event_from_proto(events_pb2.RunEvent.FromString(data))
