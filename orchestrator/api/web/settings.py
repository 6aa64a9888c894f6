"""The viewer's settings, from the environment (prefix ``GRAPHMESH_``).

``GRAPHMESH_VIEWER_LISTEN`` is where the page and its API are served (default
``127.0.0.1:8080``; port 0 picks a free port; ``off`` turns the viewer off).
``GRAPHMESH_TRACE_URL_TEMPLATE`` links each run to a trace UI, e.g. Jaeger's
``http://jaeger:16686/trace/{trace_id}``; unset, the page shows no trace links.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

OFF = frozenset({"", "off", "none", "false", "0"})


class ViewerSettings(BaseSettings):
    """Where the run viewer listens and what it links to."""

    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_", extra="ignore")

    viewer_listen: str = Field(
        default="127.0.0.1:8080", description="HOST:PORT of the viewer; 'off' turns it off"
    )
    trace_url_template: str | None = Field(
        default=None,
        description="trace UI link with {trace_id}, e.g. http://jaeger:16686/trace/{trace_id}",
    )

    @property
    def listen(self) -> str | None:
        """The address to serve on, or ``None`` when the viewer is off."""
        return None if self.viewer_listen.strip().lower() in OFF else self.viewer_listen.strip()

    @field_validator("trace_url_template")
    @classmethod
    def _trace_link(cls, value: str | None) -> str | None:
        if not value:
            return None
        if "{trace_id}" not in value:
            raise ValueError("GRAPHMESH_TRACE_URL_TEMPLATE must contain {trace_id}")
        if urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("GRAPHMESH_TRACE_URL_TEMPLATE must be an http(s) URL")
        return value
