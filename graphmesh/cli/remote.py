"""``graphmesh serve orchestrator | model-server``, ``submit | watch | runs | cancel | resume``.

The client commands talk to an orchestrator through :class:`graphmesh.Client`; the address
and token come from ``--address``/``--token`` or ``GRAPHMESH_ADDRESS``/``GRAPHMESH_TOKEN``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from graphmesh.cli.display import RunProgress, describe_usage
from graphmesh.client import Client
from graphmesh.orchestrator.errors import GraphmeshError, GraphValidationError
from graphmesh.orchestrator.runs.records import (
    RunRecord,
    RunState,
)

T = TypeVar("T")
console = Console()
errors = Console(stderr=True)

Address = Annotated[
    str, typer.Option("--address", envvar="GRAPHMESH_ADDRESS", help="orchestrator HOST:PORT")
]
Token = Annotated[
    str | None,
    typer.Option("--token", envvar="GRAPHMESH_TOKEN", help="bearer token", show_default=False),
]
Timeout = Annotated[float, typer.Option("--timeout", help="deadline of each call, seconds")]

serve_app = typer.Typer(help="Run a graphmesh service.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    """Add the service commands to the ``graphmesh`` app."""
    app.add_typer(serve_app, name="serve")
    for command in (submit, watch, runs, cancel, resume):
        app.command()(command)


# -- serve -------------------------------------------------------------------------------
@serve_app.command("orchestrator")
def serve_orchestrator(
    listen: Annotated[str | None, typer.Option(help="HOST:PORT (port 0: any free port)")] = None,
    store: Annotated[
        str, typer.Option(help="where runs live: memory, sqlite, postgres")
    ] = "memory",
    no_auth: Annotated[
        bool, typer.Option("--no-auth", help="accept every caller as tenant 'default'")
    ] = False,
    local_models: Annotated[
        bool, typer.Option("--local-models", help="serve AI tasks with in-process models")
    ] = False,
    metrics_listen: Annotated[
        str | None,
        typer.Option(help="HOST:PORT for Prometheus /metrics (env GRAPHMESH_METRICS_LISTEN)"),
    ] = None,
    viewer_listen: Annotated[
        str | None,
        typer.Option(
            help="HOST:PORT of the run viewer, 'off' for none (env GRAPHMESH_VIEWER_LISTEN)"
        ),
    ] = None,
) -> None:
    """Serve the OrchestratorService until SIGTERM/SIGINT (settings: GRAPHMESH_* env)."""
    from graphmesh.services.kit.settings import ServiceSettings

    settings = ServiceSettings()
    updates: dict[str, Any] = {"auth": settings.auth and not no_auth}
    if listen is not None:
        updates["listen"] = listen
    if metrics_listen is not None:
        updates["metrics_listen"] = metrics_listen
    settings = settings.model_copy(update=updates)
    tokens = settings.token_tenants() if settings.auth else None
    if tokens is not None and not tokens:
        _fail(
            "auth is on but no tokens are configured: set GRAPHMESH_TOKENS or "
            "GRAPHMESH_TOKENS_FILE, or pass --no-auth for local development"
        )
    from graphmesh.orchestrator.api.web.settings import ViewerSettings
    from graphmesh.orchestrator.main import ModelsOpener, serve

    opener: ModelsOpener | None = None
    if local_models:  # only then: the model server's libraries (torch) load with it
        from graphmesh.local_models import LocalModelClient

        opener = LocalModelClient
    viewer = ViewerSettings()
    if viewer_listen is not None:
        viewer = viewer.model_copy(update={"viewer_listen": viewer_listen})
    try:
        asyncio.run(
            serve(
                settings,
                store=store,
                tokens=tokens,
                viewer=viewer,
                local_models=opener,
            )
        )
    except OSError as exc:  # an address in use, or one this host does not have
        _fail(str(exc))
    except ValueError as exc:  # the store, GRAPHMESH_MODEL_ROUTES or the prices file
        _fail(str(exc))


@serve_app.command("model-server")
def serve_model_server(
    config: Annotated[
        Path | None, typer.Option("--config", help="TOML config file (docs/model-server.md)")
    ] = None,
    listen: Annotated[
        str | None, typer.Option(help="HOST:PORT, overriding the config (port 0: any free port)")
    ] = None,
    metrics_listen: Annotated[
        str | None, typer.Option(help="HOST:PORT for Prometheus /metrics, overriding the config")
    ] = None,
) -> None:
    """Serve the ModelService (transformers/torch models) until SIGTERM/SIGINT."""
    from graphmesh.model_server.service.config import ConfigError, load_config, parse_config
    from graphmesh.model_server.service.main import serve

    try:
        loaded = load_config(config) if config is not None else parse_config({})
        updates = {"listen": listen, "metrics_listen": metrics_listen}
        data = loaded.model_dump() | {k: v for k, v in updates.items() if v is not None}
        loaded = parse_config(data, source=str(config or "options"))
    except ConfigError as exc:
        _fail(str(exc))
    try:
        asyncio.run(serve(loaded))
    except OSError as exc:  # an address in use, or one this host does not have
        _fail(str(exc))


# -- client commands ---------------------------------------------------------------------
def submit(
    file: Annotated[Path, typer.Argument(help="graph JSON file (graph or dependency form)")],
    input: Annotated[
        list[str] | None,
        typer.Option(
            "--input", "-i", help="KEY=VALUE (JSON value); KEY is a root port or TASK.PORT"
        ),
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE")] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="retry-safe submission key")] = None,
    watch_run: Annotated[bool, typer.Option("--watch", "-w", help="follow the run")] = False,
    address: Address = "localhost:50051",
    token: Token = None,
    timeout: Timeout = 30.0,
) -> None:
    """Submit a graph to an orchestrator; print the run id (or follow it with --watch)."""
    from graphmesh.cli.app import _parse_inputs

    inputs = _parse_inputs(input or [])
    labels = _labels(label or [])

    async def call(client: Client) -> RunRecord:
        run = await client.submit(
            file, inputs=inputs, labels=labels, idempotency_key=idempotency_key
        )
        if not watch_run:
            return run
        errors.print(f"run {run.run_id}")
        return await _follow(client, run.run_id)

    run = _remote(address, token, timeout, call)
    if not watch_run:
        typer.echo(run.run_id)
    _exit_for(run, watch_run)


def watch(
    run_id: Annotated[str, typer.Argument(help="the run to follow")],
    address: Address = "localhost:50051",
    token: Token = None,
    timeout: Timeout = 30.0,
) -> None:
    """Follow a run with a progress bar per task until it ends."""
    run = _remote(address, token, timeout, lambda client: _follow(client, run_id))
    _exit_for(run, True)


def runs(
    status: Annotated[
        list[RunState] | None, typer.Option("--status", "-s", help="only runs in this status")
    ] = None,
    label: Annotated[list[str] | None, typer.Option("--label", "-l", help="KEY=VALUE")] = None,
    limit: Annotated[int, typer.Option(help="at most this many runs")] = 20,
    address: Address = "localhost:50051",
    token: Token = None,
    timeout: Timeout = 30.0,
) -> None:
    """List runs, newest first."""
    labels = _labels(label or [])

    async def call(client: Client) -> list[RunRecord]:
        found: list[RunRecord] = []
        async for run in client.runs(statuses=status or (), labels=labels):
            found.append(run)
            if len(found) >= limit:
                break
        return found

    console.print(_runs_table(_remote(address, token, timeout, call)))


def cancel(
    run_id: Annotated[str, typer.Argument(help="the run to cancel")],
    reason: Annotated[str, typer.Option(help="recorded as the run's error")] = "",
    address: Address = "localhost:50051",
    token: Token = None,
    timeout: Timeout = 30.0,
) -> None:
    """Cancel a run: running tasks are aborted, pending ones skipped."""
    run = _remote(address, token, timeout, lambda client: client.cancel(run_id, reason=reason))
    console.print(f"run {run.run_id}: {run.status}")


def resume(
    run_id: Annotated[str, typer.Argument(help="the failed or cancelled run")],
    address: Address = "localhost:50051",
    token: Token = None,
    timeout: Timeout = 30.0,
) -> None:
    """Resume a failed or cancelled run; completed tasks are kept."""
    run = _remote(address, token, timeout, lambda client: client.resume(run_id))
    console.print(f"run {run.run_id}: {run.status}")


# -- helpers -----------------------------------------------------------------------------
def _remote(
    address: str, token: str | None, timeout: float, call: Callable[[Client], Awaitable[T]]
) -> T:
    async def main() -> T:
        async with Client(address, token=token, timeout=timeout) as client:
            return await call(client)

    from graphmesh.services.kit.telemetry import tracing

    try:
        with tracing("graphmesh-cli"):  # OTEL_* set: the CLI's calls start the trace
            return asyncio.run(main())
    except GraphValidationError as exc:
        errors.print("[red]invalid graph:")
        for issue in exc.issues:
            errors.print(f"  - {issue.message}")
        raise typer.Exit(2) from None
    except GraphmeshError as exc:
        _fail(str(exc))


async def _follow(client: Client, run_id: str) -> RunRecord:
    run = await client.get(run_id)
    with RunProgress([task.task_id for task in run.tasks], console) as view:
        async for event in client.watch(run_id):
            view.on_run_event(event)
    return await client.get(run_id)


def _exit_for(run: RunRecord, show: bool) -> None:
    if show:
        style = "green" if run.status == RunState.COMPLETED else "red"
        console.print(f"[{style}]run {run.run_id}: {run.status}")
        if not run.usage.empty:
            console.print(f"usage: {describe_usage(run.usage)}")
    if run.status.finished and run.status != RunState.COMPLETED:
        if run.error:
            errors.print(f"[red]{run.error}")
        raise typer.Exit(1)


def _runs_table(found: Sequence[RunRecord]) -> Table:
    table = Table(title="graphmesh runs")
    for column in ("run", "status", "created", "labels", "error"):
        table.add_column(column, overflow="fold")
    for run in found:
        labels = ", ".join(f"{key}={value}" for key, value in sorted(run.labels.items()))
        created = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
        table.add_row(run.run_id, str(run.status), created, labels, (run.error or "")[:60])
    return table


def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--label")
        labels[key] = value
    return labels


def _fail(message: str) -> NoReturn:
    errors.print(f"[red]{message}")
    raise typer.Exit(1)
