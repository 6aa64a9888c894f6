"""Where run events go on NATS: subject names, message headers and the stream's settings.

Each run has its own subject, ``<prefix>.<run_id>.events`` (``graphmesh.runs.<run_id>.events``
by default), all of them captured by one JetStream stream. A message carries the protobuf
``graphmesh.v1.RunEvent`` and two headers: ``Nats-Msg-Id`` = ``<run_id>:<seq>``, so that
JetStream drops a re-published event inside the stream's duplicate window, and
``traceparent`` when the event was written inside a trace. Nothing here imports NATS: the
example subscriber and tests share these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from graphmesh.orchestrator.runs.records import RunEventRecord

DEFAULT_STREAM = "GRAPHMESH_RUNS"
DEFAULT_SUBJECT_PREFIX = "graphmesh.runs"
MSG_ID_HEADER = "Nats-Msg-Id"
TRACEPARENT_HEADER = "traceparent"

# A subject token may not hold separators, wildcards or whitespace.
_TOKEN = re.compile(r"^[^.*>\s]+$")
_STREAM_NAME = re.compile(r"^[A-Za-z0-9_-]+$")


def check_token(kind: str, token: str) -> str:
    """``token`` if it can be one token of a NATS subject, else ``ValueError``."""
    if not _TOKEN.match(token):
        raise ValueError(f"{kind} {token!r} cannot be a NATS subject token")
    return token


@dataclass(frozen=True, kw_only=True)
class EventStreamConfig:
    """The JetStream stream that holds run events, and how long it keeps them.

    ``duplicate_window_s`` bounds how late a re-published event is still recognised as a
    duplicate: a relay that crashed after publishing but before stamping ``published_at``
    re-publishes when it restarts, so the window should exceed a restart (JetStream's
    default of two minutes is short for that). Subscribers that must never see a duplicate
    can also drop events whose ``seq`` they have seen: it is gapless per run.
    """

    name: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    retention: Literal["limits", "interest", "workqueue"] = "limits"
    storage: Literal["file", "memory"] = "file"
    max_age_s: float = 7 * 24 * 3600.0
    max_bytes: int = -1
    duplicate_window_s: float = 600.0
    replicas: int = 1

    def __post_init__(self) -> None:
        if not _STREAM_NAME.match(self.name):
            raise ValueError(f"stream name {self.name!r} may hold only letters, digits, - and _")
        for token in self.subject_prefix.split("."):
            check_token("subject prefix part", token)
        if not 0 < self.duplicate_window_s <= self.max_age_s:
            raise ValueError("duplicate_window_s must be positive and at most max_age_s")

    @property
    def subjects(self) -> str:
        """The wildcard subject the stream captures: every run's events."""
        return f"{self.subject_prefix}.*.events"

    def subject_for(self, run_id: str) -> str:
        """The subject of one run's events."""
        return f"{self.subject_prefix}.{check_token('run id', run_id)}.events"

    def run_id_of(self, subject: str) -> str:
        """The run id in a subject of this stream (the inverse of :meth:`subject_for`)."""
        head = f"{self.subject_prefix}."
        if not (subject.startswith(head) and subject.endswith(".events")):
            raise ValueError(f"{subject!r} is not a run-events subject under {head!r}")
        return check_token("run id", subject[len(head) : -len(".events")])


def message_id(event: RunEventRecord) -> str:
    """The JetStream deduplication id of an event: ``<run_id>:<seq>``."""
    return f"{event.run_id}:{event.seq}"


def headers_for(event: RunEventRecord) -> dict[str, str]:
    """The NATS headers of an event's message."""
    headers = {MSG_ID_HEADER: message_id(event)}
    if event.traceparent:
        headers[TRACEPARENT_HEADER] = event.traceparent
    return headers
