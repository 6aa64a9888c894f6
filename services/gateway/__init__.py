"""The cloud gateway: OpenAI and Anthropic models behind routed names (``openai:<model>``,
``anthropic:<model>``), called through the official SDKs, with one retry loop and central
rate limits shared by every replica through Postgres (see ``docs/architecture.md``).

The core is :class:`Gateway` (opened from a :class:`GatewayConfig` by :func:`open_gateway`);
providers implement :class:`Provider` (``OpenAIProvider``, ``AnthropicProvider``, and the
in-memory twin ``MemoryProvider``); errors form one tree under :class:`GatewayError`.
"""

from graphmesh.services.gateway.assembly import open_gateway
from graphmesh.services.gateway.config import ConfigError, GatewayConfig, GatewaySettings
from graphmesh.services.gateway.errors import (
    DeadlineExceeded,
    GatewayError,
    InvalidRequest,
    LimiterUnavailable,
    ModelNotFound,
    PermissionDenied,
    ProviderUnavailable,
    RateLimited,
)
from graphmesh.services.gateway.gateway import Gateway, Route
from graphmesh.services.gateway.provider import OpenedStream, Provider
from graphmesh.services.gateway.types import (
    ChatRequest,
    Chunk,
    Completion,
    Embeddings,
    Message,
    RateSignals,
    Usage,
)

__all__ = [
    "ChatRequest",
    "Chunk",
    "Completion",
    "ConfigError",
    "DeadlineExceeded",
    "Embeddings",
    "Gateway",
    "GatewayConfig",
    "GatewayError",
    "GatewaySettings",
    "InvalidRequest",
    "LimiterUnavailable",
    "Message",
    "ModelNotFound",
    "OpenedStream",
    "PermissionDenied",
    "Provider",
    "ProviderUnavailable",
    "RateLimited",
    "RateSignals",
    "Route",
    "Usage",
    "open_gateway",
]
