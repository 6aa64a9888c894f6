"""The W3C ``traceparent`` a caller sends: valid ones are kept, anything else ignored."""

from __future__ import annotations

import pytest

from graphmesh.orchestrator.api.trace_context import parse_traceparent, traceparent_of

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        VALID.upper(),  # upper-case hex is invalid
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # zero parent id
        VALID + "-extra",  # version 00 has exactly four fields
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
    ],
)
def test_malformed_traceparents_are_ignored(value: str) -> None:
    assert parse_traceparent(value) is None


def test_valid_traceparents_are_kept_including_newer_versions() -> None:
    assert parse_traceparent(VALID) == VALID
    newer = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-more"
    assert parse_traceparent(newer) == newer


def test_the_traceparent_is_found_among_request_metadata() -> None:
    metadata = (("authorization", "Bearer t"), ("traceparent", VALID))
    assert traceparent_of(metadata) == VALID
    assert traceparent_of((("authorization", "Bearer t"),)) is None
    assert traceparent_of(None) is None
