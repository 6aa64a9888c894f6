"""Domain exceptions <-> gRPC statuses, in one table used in both directions.

The server turns an exception into a status with rich details (``google.rpc.ErrorInfo``
with the row's reason always; ``google.rpc.BadRequest`` field violations
``tasks[<id>].<port>`` for invalid graphs and ``inputs.x``, ``labels["k"]``, ``timeout``
... for invalid requests; ``google.rpc.RetryInfo`` when a retry delay is known;
``google.rpc.QuotaFailure`` naming the quota): :func:`to_status`. The SDK reads the reason
back to raise the same exception class, rebuilding issues and violations from the field
violations: :func:`from_rpc_error`. Anything not in the table is a bug: INTERNAL with an
opaque reference, never the exception's text (it may hold secrets, SQL or paths). Status
text is always valid UTF-8 (a lone surrogate from a request cannot break it). The
servicer's guard that applies the table to every call is
:class:`~graphmesh.orchestrator.api.errors.ErrorInterceptor`.

Client-side errors with no domain meaning::

    RemoteError                   (code, message)
    ├── UnauthenticatedError      UNAUTHENTICATED, PERMISSION_DENIED
    ├── RemoteDeadlineError       DEADLINE_EXCEEDED (also a TimeoutError)
    └── UnavailableError          UNAVAILABLE
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from graphmesh.orchestrator.ai.client import ModelError
from graphmesh.orchestrator.errors import GraphError, GraphmeshError, GraphValidationError
from graphmesh.orchestrator.runs.quotas import QuotaExceededError
from graphmesh.orchestrator.runs.records import (
    InvalidPageTokenError,
    RunNotFoundError,
    RunStateError,
    StoreUnavailableError,
)
from graphmesh.orchestrator.runs.storable import UnstorableValueError, storable_text
from graphmesh.orchestrator.storage.saved_graphs import GraphNotFoundError
from graphmesh.orchestrator.wire.convert import issue_field, issue_from_field
from graphmesh.orchestrator.wire.validation import FieldViolation, InvalidRequestError, violation

logger = logging.getLogger(__name__)
DOMAIN = "graphmesh"
_DETAILS_KEY = "grpc-status-details-bin"
MAX_MESSAGE_CHARS = 4000


class RemoteError(GraphmeshError):
    """A call failed with a status that means nothing more specific to graphmesh."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        self.code = code
        super().__init__(f"{code.name}: {message}")


class UnauthenticatedError(RemoteError):
    """No token, an unknown token, or a token without access."""


class RemoteDeadlineError(RemoteError, TimeoutError):
    """The call's deadline passed before the server answered."""


class UnavailableError(RemoteError):
    """The server could not be reached, or is shutting down; retrying may help."""


@dataclass(frozen=True, kw_only=True)
class ErrorRow:
    exception: type[Exception]
    code: grpc.StatusCode
    reason: str
    applies: Callable[[Exception], bool] = lambda exc: True


def _retry_after(exc: Exception) -> bool:
    return getattr(exc, "retry_after", None) is not None


ERROR_TABLE: tuple[ErrorRow, ...] = (
    ErrorRow(
        exception=InvalidRequestError,
        code=grpc.StatusCode.INVALID_ARGUMENT,
        reason="INVALID_REQUEST",
    ),
    ErrorRow(
        exception=QuotaExceededError,
        code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        reason="QUOTA_EXCEEDED",
    ),
    ErrorRow(
        exception=UnstorableValueError,
        code=grpc.StatusCode.INVALID_ARGUMENT,
        reason="UNSTORABLE_VALUE",
    ),
    ErrorRow(
        exception=GraphValidationError,
        code=grpc.StatusCode.INVALID_ARGUMENT,
        reason="INVALID_GRAPH",
    ),
    ErrorRow(exception=GraphError, code=grpc.StatusCode.INVALID_ARGUMENT, reason="GRAPH_ERROR"),
    ErrorRow(
        exception=InvalidPageTokenError,
        code=grpc.StatusCode.INVALID_ARGUMENT,
        reason="INVALID_PAGE_TOKEN",
    ),
    ErrorRow(exception=RunNotFoundError, code=grpc.StatusCode.NOT_FOUND, reason="RUN_NOT_FOUND"),
    ErrorRow(
        exception=GraphNotFoundError, code=grpc.StatusCode.NOT_FOUND, reason="GRAPH_NOT_FOUND"
    ),
    ErrorRow(exception=RunStateError, code=grpc.StatusCode.FAILED_PRECONDITION, reason="RUN_STATE"),
    ErrorRow(
        exception=StoreUnavailableError,
        code=grpc.StatusCode.UNAVAILABLE,
        reason="STORE_UNAVAILABLE",
    ),
    ErrorRow(
        exception=ModelError,
        code=grpc.StatusCode.RESOURCE_EXHAUSTED,
        reason="MODEL_RATE_LIMITED",
        applies=_retry_after,
    ),
    ErrorRow(
        exception=ModelError,
        code=grpc.StatusCode.UNAVAILABLE,
        reason="MODEL_UNAVAILABLE",
        applies=lambda exc: bool(getattr(exc, "retryable", False)),
    ),
    ErrorRow(exception=ModelError, code=grpc.StatusCode.FAILED_PRECONDITION, reason="MODEL_ERROR"),
)
_BY_REASON = {row.reason: row for row in ERROR_TABLE}
_BY_CODE: dict[grpc.StatusCode, type[RemoteError]] = {
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: UnauthenticatedError,
    grpc.StatusCode.DEADLINE_EXCEEDED: RemoteDeadlineError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
}


# -- server side -----------------------------------------------------------------------
def find_row(exc: Exception) -> ErrorRow | None:
    return next(
        (row for row in ERROR_TABLE if isinstance(exc, row.exception) and row.applies(exc)), None
    )


def to_status(exc: Exception) -> grpc.Status:
    """The gRPC status (with rich details in its trailing metadata) for an exception."""
    row = find_row(exc)
    if row is None:
        reference = uuid.uuid4().hex[:12]
        logger.error("unexpected error, reference %s", reference, exc_info=exc)
        return status_of(grpc.StatusCode.INTERNAL, f"internal error (reference {reference})", [])
    details: list[Any] = [error_details_pb2.ErrorInfo(reason=row.reason, domain=DOMAIN)]
    if isinstance(exc, GraphValidationError):
        details.append(_bad_request(exc))
    if isinstance(exc, InvalidRequestError):
        details.append(_field_violations(exc.violations))
    if isinstance(exc, QuotaExceededError):
        quota = error_details_pb2.QuotaFailure.Violation(subject=exc.quota, description=str(exc))
        details.append(error_details_pb2.QuotaFailure(violations=[quota]))
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return status_of(row.code, str(exc), details)


def _bad_request(exc: GraphValidationError) -> error_details_pb2.BadRequest:
    return _field_violations(
        violation(issue_field(issue), issue.message, issue.code.upper()) for issue in exc.issues
    )


def _field_violations(violations: Any) -> error_details_pb2.BadRequest:
    return error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(
                field=_safe(v.field), description=_safe(v.description), reason=_safe(v.reason)
            )
            for v in violations
        ]
    )


def _safe(text: str) -> str:
    """Text a status can carry: valid UTF-8, of bounded length."""
    text = storable_text(text)
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def status_of(code: grpc.StatusCode, message: str, details: Sequence[Any]) -> grpc.Status:
    message = _safe(message)
    packed = []
    for detail in details:
        wrapper = any_pb2.Any()
        wrapper.Pack(detail)
        packed.append(wrapper)
    code_number: int = code.value[0]
    status = status_pb2.Status(code=code_number, message=message, details=packed)
    return rpc_status.to_status(status)


# -- client side -----------------------------------------------------------------------
def from_rpc_error(error: grpc.aio.AioRpcError) -> Exception:
    """The domain exception a failed call stands for (see the module docstring)."""
    code, message = error.code(), error.details() or ""
    details = _details(error.trailing_metadata())
    info = next((d for d in details if isinstance(d, error_details_pb2.ErrorInfo)), None)
    row = _BY_REASON.get(info.reason) if info is not None and info.domain == DOMAIN else None
    if row is None:
        return _BY_CODE.get(code, RemoteError)(code, message)
    if row.exception is GraphValidationError:
        return _graph_error(message, details)
    if row.exception is InvalidRequestError:
        return InvalidRequestError(_violations(details), message)
    if row.exception is QuotaExceededError:
        quota = next((d for d in details if isinstance(d, error_details_pb2.QuotaFailure)), None)
        subject = quota.violations[0].subject if quota is not None and quota.violations else ""
        return QuotaExceededError(message, quota=subject, retry_after=_delay(details) or 0.0)
    if row.exception is ModelError:
        return ModelError(
            message, retryable=row.reason != "MODEL_ERROR", retry_after=_delay(details)
        )
    return row.exception(message)


def _graph_error(message: str, details: Sequence[Any]) -> GraphValidationError:
    request = next((d for d in details if isinstance(d, error_details_pb2.BadRequest)), None)
    violations = request.field_violations if request is not None else []
    issues = [issue_from_field(v.field, v.description, v.reason) for v in violations]
    if not issues:
        issues = [issue_from_field("graph", message, "INVALID_GRAPH")]
    return GraphValidationError(issues)


def _violations(details: Sequence[Any]) -> list[FieldViolation]:
    request = next((d for d in details if isinstance(d, error_details_pb2.BadRequest)), None)
    found = request.field_violations if request is not None else []
    return [violation(v.field, v.description, v.reason) for v in found]


def _delay(details: Sequence[Any]) -> float | None:
    info = next((d for d in details if isinstance(d, error_details_pb2.RetryInfo)), None)
    return None if info is None else info.retry_delay.ToNanoseconds() / 1e9


def packed_details(metadata: Any) -> list[any_pb2.Any]:
    """The ``google.rpc`` details of a status, still packed, from its trailing metadata."""
    raw = next((value for key, value in metadata or () if key == _DETAILS_KEY), None)
    if not isinstance(raw, bytes):
        return []
    return list(status_pb2.Status.FromString(raw).details)


def _details(metadata: Any) -> list[Any]:
    """The unpacked ``google.rpc`` details of a status, those of known types only."""
    known = (
        error_details_pb2.ErrorInfo,
        error_details_pb2.BadRequest,
        error_details_pb2.RetryInfo,
        error_details_pb2.QuotaFailure,
    )
    unpacked = []
    for packed in packed_details(metadata):
        for kind in known:
            if packed.Is(kind.DESCRIPTOR):
                message = kind()
                packed.Unpack(message)
                unpacked.append(message)
    return unpacked
