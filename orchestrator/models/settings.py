"""Settings of the orchestrator's gRPC ModelClient (``GRAPHMESH_*`` environment)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from graphmesh.orchestrator.models.remote import GrpcModelClient
from graphmesh.orchestrator.models.routes import ModelRoutes, parse_routes


class ModelSettings(BaseSettings):
    """Where models are served and how calls to them behave.

    ``model_routes``: see :mod:`graphmesh.orchestrator.models.routes`. ``model_call_timeout_s``
    bounds a call when its task has no timeout of its own. A replica that fails to answer
    (UNAVAILABLE, connection refused) is skipped for ``model_replica_down_s`` seconds.
    (The usage price table is ``GRAPHMESH_MODEL_PRICES_FILE``, read by
    :func:`graphmesh.orchestrator.ai.usage.default_prices`.)
    """

    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_", extra="ignore")

    model_routes: str = ""
    model_call_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    model_replica_down_s: float = Field(default=5.0, ge=0, le=3_600)

    @field_validator("model_routes")
    @classmethod
    def _routes_parse(cls, value: str) -> str:
        parse_routes(value)  # a RouteConfigError (ValueError) names the bad entry
        return value

    def routes(self) -> ModelRoutes:
        return parse_routes(self.model_routes)

    def client(self, interceptors: Sequence[Any] = ()) -> GrpcModelClient:
        """A client for these routes (open it with ``async with``)."""
        return GrpcModelClient(
            self.routes(),
            call_timeout=self.model_call_timeout_s,
            down_s=self.model_replica_down_s,
            interceptors=interceptors,
        )
