"""OpenTelemetry for every graphmesh process: one trace per pipeline, across every hop.

``with tracing("graphmesh-orchestrator"):`` installs the SDK's tracer provider for the
block, exporting spans over OTLP as the standard ``OTEL_*`` variables say
(``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, ``..._HEADERS``,
``..._INSECURE``, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``,
``OTEL_TRACES_SAMPLER``; ``OTEL_TRACES_EXPORTER=console`` prints spans, ``none`` or
``OTEL_SDK_DISABLED=true`` turns tracing off). With no endpoint configured nothing is
installed: spans stay the API's no-ops and cost next to nothing.

The engine only uses the OpenTelemetry *API* (``opentelemetry.trace``); composition roots
call :func:`tracing` and hand :func:`server_interceptors` / :func:`client_interceptors` to
their gRPC servers and channels (only while a tracer provider is set: otherwise they are
empty), so
every call carries W3C ``traceparent`` metadata and health checks make no spans.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry import trace

logger = logging.getLogger(__name__)
_UNTRACED_SERVICES = ("grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection")


def tracing_active() -> bool:
    """Whether this process has a tracer provider: set by :func:`tracing`, or by the
    application that embeds a graphmesh client and configured OpenTelemetry itself."""
    return not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)


def tracing_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for spans to be exported (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower()
    if exporter in ("none", ""):
        return False
    if exporter == "console":
        return True
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    )


@contextmanager
def tracing(service_name: str, environ: Mapping[str, str] = os.environ) -> Iterator[bool]:
    """Export this process's spans for the block (yields whether it does); on exit the
    pending spans are flushed. ``OTEL_SERVICE_NAME`` overrides ``service_name``."""
    if not tracing_configured(environ):
        yield False
        return
    try:
        provider = _provider(service_name, environ)
    except ImportError as error:  # the SDK comes with the service extras, not the core
        logger.warning("OTEL_* asks for traces, but %s; install graphmesh[telemetry]", error)
        yield False
        return
    trace.set_tracer_provider(provider)
    _instrument_psycopg()
    try:
        yield True
    finally:
        provider.shutdown()  # flushes the batch processor


def _provider(service_name: str, environ: Mapping[str, str]) -> Any:
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SimpleSpanProcessor,
    )

    # Resource.create reads OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME (which wins).
    resource = Resource.create({SERVICE_NAME: environ.get("OTEL_SERVICE_NAME") or service_name})
    provider = TracerProvider(resource=resource)  # the sampler comes from OTEL_TRACES_SAMPLER
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "console":
        provider.add_span_processor(SimpleSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    return provider


def _instrument_psycopg() -> None:
    """Spans for every Postgres statement, where this process has psycopg at all."""
    try:
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    except ImportError:  # a model server or gateway image: no psycopg
        return
    instrumentor = PsycopgInstrumentor()
    if not instrumentor.is_instrumented_by_opentelemetry:
        instrumentor.instrument(skip_dep_check=True)


def server_interceptors() -> Sequence[Any]:
    """The gRPC server interceptor that makes a span per call (health and reflection
    excluded), continuing the caller's trace from its ``traceparent`` metadata."""
    if not tracing_active():
        return []
    from opentelemetry.instrumentation.grpc import aio_server_interceptor, filters

    untraced = filters.any_of(*(filters.service_name(name) for name in _UNTRACED_SERVICES))
    interceptor = aio_server_interceptor(filter_=filters.negate(untraced))  # type: ignore[no-untyped-call]
    return [interceptor]


def client_interceptors() -> Sequence[Any]:
    """The gRPC client interceptors that make a span per call and send ``traceparent``."""
    if not tracing_active():
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors, filters

    untraced = filters.any_of(*(filters.service_name(name) for name in _UNTRACED_SERVICES))
    interceptors = aio_client_interceptors(filter_=filters.negate(untraced))  # type: ignore[no-untyped-call]
    return list(interceptors)
