"""``graphmesh run | tasks | codegen | validate``: the embedded engine from a terminal."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from graphmesh.cli.dev import dev
from graphmesh.cli.display import RunProgress, result_table
from graphmesh.cli.gateway import serve_gateway
from graphmesh.cli.remote import register as register_remote_commands
from graphmesh.cli.remote import serve_app
from graphmesh.orchestrator.errors import GraphValidationError
from graphmesh.orchestrator.graph import TaskGraph, loads_graph
from graphmesh.settings import EmbeddedSettings

app = typer.Typer(
    name="graphmesh",
    help="Run AI pipelines described as task graphs.",
    no_args_is_help=True,
    add_completion=False,
)
console = Console()
errors = Console(stderr=True)


def _load(path: Path) -> TaskGraph:
    import graphmesh.orchestrator.catalog  # noqa: F401  (registers the catalog)

    try:
        return loads_graph(path.read_text(encoding="utf-8"))
    except OSError as exc:
        errors.print(f"[red]cannot read {path}: {exc.strerror}")
        raise typer.Exit(2) from None
    except GraphValidationError as exc:
        _print_issues(path, exc)
        raise typer.Exit(2) from None


def _print_issues(path: Path, exc: GraphValidationError) -> None:
    errors.print(f"[red]{path} is not a valid graph:")
    for issue in exc.issues:
        errors.print(f"  - {issue.message}")


def _parse_inputs(pairs: list[str]) -> dict[str, Any]:
    inputs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--input")
        try:
            inputs[key] = json.loads(raw)
        except json.JSONDecodeError:
            inputs[key] = raw
    return inputs


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="graph JSON file (graph or dependency form)")],
    input: Annotated[
        list[str] | None,
        typer.Option("--input", "-i", help="KEY=VALUE for root task inputs (JSON values)"),
    ] = None,
    state_dir: Annotated[Path | None, typer.Option(help="where the SQLite cache lives")] = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="do not read or write the output cache")
    ] = False,
    timeout: Annotated[float | None, typer.Option(help="graph timeout in seconds")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the full result as JSON")] = False,
) -> None:
    """Run a graph embedded: in-process models, SQLite cache, live progress."""
    from graphmesh.embedded import EmbeddedEngine

    graph = _load(file)
    try:
        graph.check()
    except GraphValidationError as exc:
        _print_issues(file, exc)
        raise typer.Exit(2) from None
    settings = EmbeddedSettings()
    updates: dict[str, Any] = {"cache": settings.cache and not no_cache}
    if state_dir is not None:
        updates["state_dir"] = state_dir
    settings = settings.model_copy(update=updates)

    async def execute() -> Any:
        async with EmbeddedEngine(settings) as engine:
            with RunProgress((task.id for task in graph), errors if as_json else console) as view:
                return await engine.run(
                    graph, _parse_inputs(input or []), listener=view.on_event, timeout=timeout
                )

    result = asyncio.run(execute())
    if as_json:
        console.print_json(
            data={
                "run_id": result.run_id,
                "status": result.status,
                "error": result.error,
                "outputs": result.outputs,
                "usage": result.usage.to_json(),
            }
        )
    else:
        console.print(result_table(result))
    if not result.ok:
        errors.print(f"[red]run {result.status.lower()}: {result.error}")
        raise typer.Exit(1)


@app.command()
def tasks(
    as_json: Annotated[bool, typer.Option("--json", help="print the catalog as JSON")] = False,
    tenant: Annotated[
        str | None,
        typer.Option(
            help="only what this remote tenant may use under the task policy "
            "(--policy, or GRAPHMESH_POLICY_FILE; without a file: the deny-by-default policy)"
        ),
    ] = None,
    policy_file: Annotated[
        Path | None, typer.Option("--policy", help="the operator's policy file (TOML)")
    ] = None,
) -> None:
    """List the task catalog with ports (everything the local user may run, or with
    --tenant what a remote tenant may use)."""
    from graphmesh.orchestrator.catalog import catalog_entries
    from graphmesh.orchestrator.policy import load_policy
    from graphmesh.orchestrator.policy.settings import PolicyFileError
    from graphmesh.orchestrator.task import default_registry

    entries = catalog_entries()
    if tenant is not None:
        try:
            usable = load_policy(policy_file).for_tenant(tenant)
        except PolicyFileError as error:
            errors.print(f"[red]{error}")
            raise typer.Exit(2) from None
        entries = [e for e in entries if usable.allows(default_registry.get(str(e["type"])))]
    if as_json:
        console.print_json(data=entries)
        return
    table = Table(title="graphmesh task catalog")
    for column in ("type", "category", "inputs", "outputs", "side effects"):
        table.add_column(column, overflow="fold")
    for entry in entries:
        table.add_row(
            entry["type"],
            entry["category"],
            _ports(entry["inputs"]),
            _ports(entry["outputs"]),
            "yes" if entry["side_effects"] else "",
        )
    console.print(table)


def _ports(ports: list[dict[str, Any]]) -> str:
    """``text: text, items: vector[], top_k: integer?`` (``?`` marks an optional input)."""
    return ", ".join(_port(port) for port in ports)


def _port(port: dict[str, Any]) -> str:
    array = "[]" if port["is_array"] else ""
    optional = "" if port.get("required", True) else "?"
    return f"{port['id']}: {port['value_type']}{array}{optional}"


@app.command()
def codegen(file: Annotated[Path, typer.Argument(help="graph JSON file")]) -> None:
    """Print Python builder code that rebuilds the graph."""
    from graphmesh.orchestrator.builder.codegen import graph_to_code

    print(graph_to_code(_load(file)), end="")


@app.command()
def validate(file: Annotated[Path, typer.Argument(help="graph JSON file")]) -> None:
    """Check a graph: types, ports, required inputs, cycles."""
    graph = _load(file)
    issues = graph.validate()
    if issues:
        _print_issues(file, GraphValidationError(issues))
        raise typer.Exit(1)
    console.print(f"[green]{file}: valid ({len(graph)} tasks, {len(graph.dataflows)} dataflows)")


register_remote_commands(app)
serve_app.command("gateway")(serve_gateway)
app.command()(dev)
