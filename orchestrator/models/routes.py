"""Model routes: which pool of endpoints serves a routed model name.

``GRAPHMESH_MODEL_ROUTES`` is ``prefix=endpoint[,endpoint...]`` entries separated by ``;``::

    hf:=host1:7001,host2:7001;triton:=host3:7001;openai:=gw:7100;anthropic:=gw:7100

A prefix ends with ``:`` and is matched against the model name (``hf:all-MiniLM-L6-v2`` goes
to the ``hf:`` pool); the longest matching prefix wins, so ``hf:big/`` may have its own
pool beside ``hf:``. An endpoint is any gRPC target (``host:port``, ``dns:///name:port``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from graphmesh.orchestrator.ai.client import ModelError

_PREFIX = re.compile(r"^[a-z][a-z0-9_-]*:[^\s=;,]*$")
_ENDPOINT = re.compile(r"^[^\s;,=]+$")


def shown(model: str, limit: int = 120) -> str:
    """``repr(model)`` for messages, cut short: a graph may name a model of any length."""
    return repr(model if len(model) <= limit else model[:limit] + "…")


class UnknownModelRouteError(ModelError):
    """No configured route serves the model's prefix (never retryable)."""


class RouteConfigError(ValueError):
    """The routes text is malformed; the message names the entry."""


@dataclass(frozen=True, kw_only=True)
class ModelRoutes:
    """Endpoints by prefix, each pool in configured order."""

    pools: Mapping[str, tuple[str, ...]]

    def prefix_for(self, model: str) -> str:
        """The longest configured prefix of ``model``."""
        matches = [prefix for prefix in self.pools if model.startswith(prefix)]
        if not matches or len(model) == len(max(matches, key=len)):
            known = ", ".join(sorted(self.pools)) or "none"
            raise UnknownModelRouteError(
                f"no model route serves {shown(model)}: configured prefixes are {known} "
                "(GRAPHMESH_MODEL_ROUTES)"
            )
        return max(matches, key=len)


def parse_routes(text: str) -> ModelRoutes:
    """Parse ``GRAPHMESH_MODEL_ROUTES``; empty text means no routes."""
    pools: dict[str, tuple[str, ...]] = {}
    for entry in (part.strip() for part in text.split(";")):
        if not entry:
            continue
        prefix, sep, endpoints_text = (s.strip() for s in entry.partition("="))
        if not sep:
            raise RouteConfigError(f"model route {entry!r}: expected prefix=endpoint[,endpoint]")
        if not _PREFIX.match(prefix):
            raise RouteConfigError(
                f"model route {entry!r}: prefix {prefix!r} must look like 'hf:' "
                "(lower-case letters, digits, '-' or '_', then ':')"
            )
        if prefix in pools:
            raise RouteConfigError(f"model route prefix {prefix!r} is configured twice")
        endpoints = tuple(e.strip() for e in endpoints_text.split(",") if e.strip())
        if not endpoints:
            raise RouteConfigError(f"model route {entry!r}: no endpoints for {prefix!r}")
        for endpoint in endpoints:
            if not _ENDPOINT.match(endpoint):
                raise RouteConfigError(f"model route {entry!r}: bad endpoint {endpoint!r}")
        if len(set(endpoints)) != len(endpoints):
            raise RouteConfigError(f"model route {entry!r}: an endpoint is listed twice")
        pools[prefix] = endpoints
    return ModelRoutes(pools=pools)
