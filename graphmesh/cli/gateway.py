"""``graphmesh serve gateway --config FILE``: the cloud gateway (see
:mod:`graphmesh.services.gateway.serve`)."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

errors = Console(stderr=True)


def serve_gateway(
    config: Annotated[
        Path, typer.Option(help="the gateway's TOML file (accounts, models, limits, prices)")
    ],
    listen: Annotated[str | None, typer.Option(help="HOST:PORT (port 0: any free port)")] = None,
    metrics_listen: Annotated[
        str | None,
        typer.Option(help="HOST:PORT for Prometheus /metrics (env GRAPHMESH_METRICS_LISTEN)"),
    ] = None,
) -> None:
    """Serve OpenAI and Anthropic models as ModelService until SIGTERM/SIGINT; API keys come
    from the environment or files the config names (settings: GRAPHMESH_* env)."""
    from graphmesh.services.gateway import ConfigError, GatewayError
    from graphmesh.services.gateway.serve import load_config, serve
    from graphmesh.services.kit.settings import ServiceSettings

    _log_to_stderr(os.environ.get("GRAPHMESH_LOG_LEVEL", "INFO"))
    service = ServiceSettings()
    updates = {"listen": listen, "metrics_listen": metrics_listen}
    service = service.model_copy(update={k: v for k, v in updates.items() if v is not None})
    try:
        gateway_config = load_config(config, service)
        asyncio.run(serve(gateway_config, service))
    except (ConfigError, GatewayError, OSError) as exc:
        errors.print(f"[red]graphmesh gateway: {exc}")
        raise typer.Exit(2) from None


def _log_to_stderr(level: str) -> None:
    """Log records at ``level`` (``GRAPHMESH_LOG_LEVEL``: DEBUG, INFO, WARNING, ERROR)."""
    number = logging.getLevelNamesMapping().get(level.strip().upper())
    if number is None:
        errors.print(f"[red]GRAPHMESH_LOG_LEVEL {level!r} is not DEBUG, INFO, WARNING or ERROR")
        raise typer.Exit(2)
    logging.basicConfig(level=number, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
