"""The W3C trace context a caller sends with a request (gRPC metadata ``traceparent``).

OpenTelemetry's gRPC instrumentation and other W3C-compliant clients put the caller's span
into ``traceparent``; CreateRun keeps it on the run, so the run's events (NATS header
``traceparent``) and jobs join the caller's trace. A malformed value is ignored, as the
W3C Trace Context recommendation asks: a bad header never fails the request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from graphmesh.orchestrator.runner.tracing import traceparent_of_current

TRACEPARENT = "traceparent"
_FORMAT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


def parse_traceparent(value: str) -> str | None:
    """``value`` if it is a valid ``traceparent`` (lower-case, no all-zero ids, version not
    ``ff``; a newer version may append fields), else ``None``."""
    match = _FORMAT.match(value.strip())
    if match is None:
        return None
    version, trace_id, parent_id, _flags, extra = match.groups()
    if version == "ff" or (version == "00" and extra):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return value.strip()


def traceparent_of(metadata: Iterable[Any] | None) -> str | None:
    """The trace a run created by this request continues: this call's server span while
    tracing is on (so the run's spans hang under it), else the caller's valid
    ``traceparent`` among the request's metadata pairs, if any."""
    current = traceparent_of_current()
    if current is not None:
        return current
    for key, value in metadata or ():
        if key == TRACEPARENT and isinstance(value, str):
            return parse_traceparent(value)
    return None
