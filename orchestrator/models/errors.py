"""gRPC statuses of model servers and gateways as the engine's one ``ModelError``.

One table: what a queue may retry (and when) and what no retry can fix.
RESOURCE_EXHAUSTED carries the delay the server asks for (``google.rpc.RetryInfo`` in the
status details, else a ``retry-after-ms`` trailer), so the durable queue reschedules the job
for then instead of holding a worker.
"""

from __future__ import annotations

from typing import Any

import grpc
from google.rpc import error_details_pb2, status_pb2

from graphmesh.orchestrator.ai.client import ModelError
from graphmesh.orchestrator.models.routes import shown

_DETAILS_KEY = "grpc-status-details-bin"

RETRYABLE = frozenset(
    {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.ABORTED,
        grpc.StatusCode.CANCELLED,
    }
)
# A replica that answers with these is not serving: try another one of the pool.
FAILOVER = frozenset({grpc.StatusCode.UNAVAILABLE})


def model_error(error: grpc.aio.AioRpcError, *, model: str, target: str) -> ModelError:
    """The ModelError for a failed call to ``target`` about ``model``."""
    code = error.code()
    text = error.details() or code.name
    retry_after = _retry_after(error.trailing_metadata()) if code in RETRYABLE else None
    message = f"model {shown(model)} at {target}: {code.name}: {text}"
    return ModelError(message, retryable=code in RETRYABLE, retry_after=retry_after)


def _retry_after(metadata: Any) -> float | None:
    pairs = list(metadata or ())
    for key, value in pairs:
        if key == _DETAILS_KEY and isinstance(value, bytes):
            delay = _retry_info_delay(value)
            if delay is not None:
                return delay
    for key, value in pairs:
        if key == "retry-after-ms":
            try:
                milliseconds = float(value)
            except (TypeError, ValueError):
                return None
            return milliseconds / 1000 if 0 <= milliseconds < float("inf") else None
    return None


def _retry_info_delay(raw: bytes) -> float | None:
    try:
        status = status_pb2.Status.FromString(raw)
    except Exception:  # a malformed trailer from a peer: ignore it, as if absent
        return None
    for packed in status.details:
        if packed.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            info = error_details_pb2.RetryInfo()
            packed.Unpack(info)
            nanoseconds: int = info.retry_delay.ToNanoseconds()
            return max(0.0, nanoseconds / 1e9)
    return None
