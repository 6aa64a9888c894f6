"""Checks of what the API's edge answers: statuses, their details, and no leaked text."""

from __future__ import annotations

import re
from typing import Any

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

LEAKS = re.compile(
    r"Traceback|DETAIL|CONTEXT:|HINT:|psycopg|sqlite3|\.py\b|/usr/|/tmp/|site-packages|"
    r"\b(?:SELECT|INSERT|UPDATE|DELETE)\b.*\b(?:FROM|INTO|SET|WHERE)\b|"
    r"\b[A-Z][a-zA-Z]+(?:Error|Exception)\b|<class "
)
"""Text from inside the server: tracebacks, driver or SQL text, paths, class names."""


def leaked(text: str) -> str | None:
    """The first piece of inside text found in ``text``, or None."""
    found = LEAKS.search(text)
    return None if found is None else found.group(0)


def details(error: grpc.aio.AioRpcError, kind: type[Any]) -> Any:
    """The first rich detail of type ``kind`` of a failed call's status (fails without)."""
    status = rpc_status.from_call(error)
    assert status is not None, "the status carries no details"
    found = [kind.FromString(d.value) for d in status.details if d.Is(kind.DESCRIPTOR)]
    assert found, f"no {kind.__name__} in the status"
    return found[0]


def fields(error: grpc.aio.AioRpcError) -> dict[str, str]:
    """``{field: reason}`` of the status's BadRequest field violations."""
    request = details(error, error_details_pb2.BadRequest)
    return {v.field: v.reason for v in request.field_violations}


def retry_delay(error: grpc.aio.AioRpcError) -> float:
    info = details(error, error_details_pb2.RetryInfo)
    return float(info.retry_delay.ToNanoseconds()) / 1e9
