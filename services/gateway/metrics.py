"""The gateway's Prometheus metrics, in the process's default registry (served by
:func:`graphmesh.services.kit.metrics.metrics_endpoint`). Labels are the provider, the
routed model and the gRPC code: a bounded set, never a key, prompt or request id."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

from graphmesh.services.gateway.errors import GatewayError, LimiterUnavailable
from graphmesh.services.gateway.types import Usage

REQUESTS = Counter(
    "graphmesh_gateway_requests",
    "ModelService calls answered, by provider, routed model, method and gRPC code",
    ["provider", "model", "method", "code"],
)
RETRIES = Counter(
    "graphmesh_gateway_retries",
    "provider calls tried again after a retryable failure",
    ["provider", "model"],
)
LIMITER_WAIT = Histogram(
    "graphmesh_gateway_limiter_wait_seconds",
    "time the shared limits took to admit a call (waiting for a slot included)",
    ["provider", "model"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
LIMITER_DENIALS = Counter(
    "graphmesh_gateway_limiter_denials",
    "calls the shared limits refused (reason: limited, or unavailable when the store is down)",
    ["provider", "model", "reason"],
)
TOKENS = Counter(
    "graphmesh_gateway_tokens",
    "tokens the providers reported, by direction (input, output)",
    ["provider", "model", "direction"],
)
COST = Counter(
    "graphmesh_gateway_cost_usd",
    "estimated cost of the calls from the price table, USD",
    ["provider", "model"],
)


class GatewayMetrics:
    """Records a gateway's events; ``provider_of`` names the provider of a routed model."""

    def __init__(self, provider_of: dict[str, str]) -> None:
        self._provider_of = provider_of

    def _labels(self, model: str) -> tuple[str, str]:
        """``(provider, model)``; a name with no route is ``unknown`` (a caller's made-up
        names must not grow the label set)."""
        provider = self._provider_of.get(model)
        return (provider, model) if provider is not None else ("unknown", "unknown")

    def retried(self, model: str, error: GatewayError) -> None:
        RETRIES.labels(*self._labels(model)).inc()

    def admitted(self, model: str, waited: float) -> None:
        LIMITER_WAIT.labels(*self._labels(model)).observe(waited)

    def refused(self, model: str, error: GatewayError) -> None:
        reason = "unavailable" if isinstance(error, LimiterUnavailable) else "limited"
        LIMITER_DENIALS.labels(*self._labels(model), reason).inc()

    def answered(self, model: str, method: str, code: str) -> None:
        REQUESTS.labels(*self._labels(model), method, code).inc()

    def used(self, model: str, usage: Usage, cost: float | None) -> None:
        labels = self._labels(model)
        TOKENS.labels(*labels, "input").inc(usage.input_tokens)
        TOKENS.labels(*labels, "output").inc(usage.output_tokens)
        if cost:
            COST.labels(*labels).inc(cost)
