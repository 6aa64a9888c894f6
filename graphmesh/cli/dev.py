"""``graphmesh dev``: the mesh on loopback until Ctrl-C (see :mod:`graphmesh.dev`)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from graphmesh.settings import EmbeddedSettings

console = Console()
errors = Console(stderr=True)


def dev(
    port: Annotated[int, typer.Option(help="the orchestrator's gRPC port")] = 50051,
    viewer_port: Annotated[int, typer.Option(help="the run viewer's port")] = 8080,
    state_dir: Annotated[
        Path | None,
        typer.Option(help="logs and the SQLite runs database (default: GRAPHMESH_STATE_DIR)"),
    ] = None,
    models: Annotated[
        bool, typer.Option("--models/--no-models", help="start a model server")
    ] = True,
    model_server_config: Annotated[
        Path | None,
        typer.Option(help="the model server's TOML file (default: the packaged models)"),
    ] = None,
    gateway_config: Annotated[
        Path | None,
        typer.Option(help="the gateway's TOML file (default: a few OpenAI/Anthropic models)"),
    ] = None,
) -> None:
    """Start orchestrator, model server and (with a provider key set) gateway on loopback,
    print their endpoints, and stop them all on Ctrl-C."""
    from graphmesh.dev import DevError, DevMesh

    directory = state_dir or EmbeddedSettings().state_dir
    mesh = DevMesh(
        state_dir=directory.resolve(),
        orchestrator_port=port,
        viewer_port=viewer_port,
        with_models=models,
        model_server_config=model_server_config.resolve() if model_server_config else None,
        gateway_config=gateway_config.resolve() if gateway_config else None,
    )
    stopping: list[int] = []

    def request_stop(signum: int, _frame: object) -> None:
        stopping.append(signum)

    previous = {signal.SIGTERM: signal.signal(signal.SIGTERM, request_stop)}
    try:
        with console.status("starting the mesh (the first model load takes a while)…"):
            mesh.start()
        # Ctrl-C from here on, also where a non-interactive shell started us with SIGINT
        # ignored (as it does for background jobs): a signal asks the loop below to stop.
        previous[signal.SIGINT] = signal.signal(signal.SIGINT, request_stop)
        table = Table(title="graphmesh dev", show_lines=False)
        for column in ("service", "address", ""):
            table.add_column(column)
        for row in mesh.endpoints():
            table.add_row(*row)
        console.print(table)
        for note in mesh.notes:
            console.print(f"[yellow]{note}")
        console.print(f"logs: {directory / 'dev-logs'}    Ctrl-C stops everything")
        example = "graphmesh submit examples/seed_pipeline.json --watch"
        console.print(f"try:  {example} --address 127.0.0.1:{port}")
        while not stopping:
            died = mesh.exited()
            if died is not None:
                errors.print(f"[red]{died.name} exited; its log: {died.log}")
                raise typer.Exit(1)
            time.sleep(0.5)
    except KeyboardInterrupt:
        pass
    except DevError as exc:
        errors.print(f"[red]{exc}")
        raise typer.Exit(1) from None
    finally:
        console.print("stopping…")
        mesh.stop()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
