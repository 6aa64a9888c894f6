"""Spans for task runs, with the OpenTelemetry API only (the SDK is the composition root's).

:class:`TracingMiddleware` makes one span per task call, named ``task <type>``, with the
run, task and task type as attributes (never as metric labels), inside whatever trace is
current: the CreateRun call's for a run in this process, the job's stored ``traceparent``
for a durable run (:func:`continued`). A model call the task makes is a child of it. The
composition root adds the middleware only when tracing is on, so an untraced runner pays
nothing.

:func:`context_of` and :func:`traceparent_of_current` carry a trace over what gRPC metadata
does not: job rows and NATS headers.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from graphmesh.orchestrator.runner.middleware import Handler, TaskCall
from graphmesh.orchestrator.task.base import TaskOutput

TRACEPARENT = "traceparent"
RUN_ID = "graphmesh.run_id"
TASK_ID = "graphmesh.task_id"
TASK_TYPE = "graphmesh.task_type"
_PROPAGATOR = TraceContextTextMapPropagator()
tracer = trace.get_tracer("graphmesh.orchestrator")


class TracingMiddleware:
    """One span per task call (see the module docstring)."""

    async def __call__(self, call: TaskCall, call_next: Handler) -> TaskOutput:
        attributes = {
            RUN_ID: call.context.run_id,
            TASK_ID: call.context.task_id,
            TASK_TYPE: call.task.type,
        }
        with tracer.start_as_current_span(f"task {call.task.type}", attributes=attributes):
            return await call_next(call)


def tracing_middleware() -> list[TracingMiddleware]:
    """``[TracingMiddleware()]`` when this process has a tracer provider (the composition
    root called the SDK's setup), else nothing: an untraced runner keeps its speed."""
    if isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
        return []
    return [TracingMiddleware()]


def context_of(traceparent: str | None) -> otel_context.Context | None:
    """The trace context a stored W3C ``traceparent`` continues (None: none or malformed)."""
    if not traceparent:
        return None
    extracted = _PROPAGATOR.extract({TRACEPARENT: traceparent})
    valid = trace.get_current_span(extracted).get_span_context().is_valid
    return extracted if valid else None


def traceparent_of_current() -> str | None:
    """The ``traceparent`` of the current span, to store or send on; None outside a trace."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier)
    return carrier.get(TRACEPARENT)


@contextmanager
def continued(traceparent: str | None) -> Iterator[None]:
    """Make the trace of a stored ``traceparent`` current for the block (if there is one)."""
    context = context_of(traceparent)
    if context is None:
        yield
        return
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)
