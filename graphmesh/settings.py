"""Settings for the embedded engine and the CLI (environment prefix ``GRAPHMESH_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EmbeddedSettings(BaseSettings):
    """Where the embedded engine keeps its state, and how it runs.

    ``GRAPHMESH_STATE_DIR`` moves the SQLite cache; ``GRAPHMESH_CACHE=false`` turns it off.
    """

    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_", extra="ignore")

    state_dir: Path = Field(default=Path(".graphmesh"))
    cache: bool = True
    task_timeout: float | None = None
    max_new_tokens: int = Field(
        default=96, ge=1, description="cap for summaries, rewrites, translations, answers"
    )
