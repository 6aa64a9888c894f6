"""Tracing set-up from the standard OTEL_* variables, and trace context on job rows."""

from __future__ import annotations

import pytest

from graphmesh.orchestrator.runner.tracing import context_of, continued, traceparent_of_current
from graphmesh.services.kit.telemetry import tracing, tracing_configured

VALID = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.mark.parametrize(
    ("environ", "configured"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4317"}, True),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_SDK_DISABLED": "true"}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4317", "OTEL_TRACES_EXPORTER": "none"}, False),
        ({"OTEL_TRACES_EXPORTER": "console"}, True),
    ],
)
def test_tracing_is_on_only_where_the_environment_asks(
    environ: dict[str, str], configured: bool
) -> None:
    assert tracing_configured(environ) is configured


def test_without_configuration_nothing_is_installed() -> None:
    with tracing("graphmesh-test", {}) as on:
        assert on is False


@pytest.mark.parametrize("value", [None, "", "garbage", "00-" + "0" * 32 + "-00f067aa0ba902b7-01"])
def test_a_missing_or_malformed_traceparent_continues_no_trace(value: str | None) -> None:
    assert context_of(value) is None


def test_a_stored_traceparent_becomes_the_current_trace() -> None:
    assert traceparent_of_current() is None
    with continued(VALID):
        assert traceparent_of_current() == VALID
    assert traceparent_of_current() is None
