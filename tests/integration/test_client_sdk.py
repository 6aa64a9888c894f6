"""The Python SDK (``graphmesh.Client``) and the service CLI commands against live servers.

SDK tests serve in this process (real gRPC on loopback); CLI tests start
``graphmesh serve orchestrator`` as a process and drive ``submit``, ``watch``, ``runs``,
``cancel`` and ``resume`` through typer's CliRunner.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from support.orchestrator import orchestrator
from support.run_tasks import flow, sleep_task
from typer.testing import CliRunner

import graphmesh
from graphmesh.cli import app
from graphmesh.client import Client
from graphmesh.orchestrator.api.server import OrchestratorServer
from graphmesh.orchestrator.builder import TaskGraphBuilder, code_to_graph
from graphmesh.orchestrator.errors import GraphValidationError
from graphmesh.orchestrator.graph import graph_from_json, graph_to_json
from graphmesh.orchestrator.runs.memory import MemoryRunService
from graphmesh.orchestrator.runs.records import (
    RunEventKind,
    RunEventRecord,
    RunNotFoundError,
    RunRecord,
    RunState,
    RunStateError,
    StoreUnavailableError,
)
from graphmesh.orchestrator.storage.memory import MemoryGraphRepository
from graphmesh.orchestrator.storage.saved_graphs import GraphNotFoundError
from graphmesh.orchestrator.task.base import TaskStatus
from graphmesh.orchestrator.wire.errors import RemoteDeadlineError, UnauthenticatedError
from graphmesh.orchestrator.wire.validation import InvalidRequestError

SLOW = {"tasks": [sleep_task("slow", 30)], "dataflows": []}


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    async with orchestrator() as server, Client(server.target, token="token-a") as opened:
        yield opened


def pipeline() -> TaskGraphBuilder:
    return TaskGraphBuilder().add("RunTestSleep", id="a").add("RunTestSleep", id="b")


async def test_client_is_exported_from_the_package() -> None:
    assert graphmesh.Client is Client


async def test_submit_a_builder_then_watch_wait_and_read_outputs(client: Client) -> None:
    run = await client.submit(pipeline(), inputs={"value": {"n": 3}}, labels={"team": "x"})
    assert run.labels == {"team": "x"} and [t.task_id for t in run.tasks] == ["a", "b"]
    events = [event async for event in client.watch(run.run_id)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert events[0].kind == RunEventKind.RUN_CREATED
    assert events[-1].kind == RunEventKind.RUN_COMPLETED
    done = await client.wait(run.run_id)
    assert done.status == RunState.COMPLETED and done.ended_at is not None
    assert [(t.type, t.status) for t in done.tasks] == [("RunTestSleep", TaskStatus.COMPLETED)] * 2
    assert await client.output(run.run_id, "b") == {"value": {"n": 3}}
    later = [e async for e in client.watch(run.run_id, from_seq=events[-2].seq)]
    assert [e.seq for e in later] == [events[-2].seq, events[-1].seq]


async def test_progress_details_keep_their_types_over_watch_run(client: Client) -> None:
    details = {"done": 3, "of": 6, "ratio": 0.5, "ok": True, "nested": {"batch": [1, 2.5, False]}}
    graph = {"tasks": [sleep_task("a", details=details)], "dataflows": []}
    run = await client.submit(graph)
    events = [event async for event in client.watch(run.run_id)]
    (progress,) = [e for e in events if e.kind == RunEventKind.TASK_PROGRESS]
    assert progress.details == details
    assert type(progress.details["done"]) is int and type(progress.details["ok"]) is bool
    batch = progress.details["nested"]["batch"]
    assert [type(item) for item in batch] == [int, float, bool]


async def test_submit_takes_json_text_files_dicts_and_dependency_json(
    client: Client, tmp_path: Path
) -> None:
    graph = {"tasks": [sleep_task("a", value=1.5)], "dataflows": []}
    file = tmp_path / "graph.json"
    file.write_text(json.dumps(graph))
    dependency = [{"id": "a", "type": "RunTestSleep", "input": {"value": 1.5}}]
    for form in (graph, json.dumps(graph), file, dependency, graph_from_json(graph)):
        run = await client.submit(form)
        assert (await client.wait(run.run_id)).status == RunState.COMPLETED
        assert await client.output(run.run_id, "a") == {"value": 1.5}


async def test_runs_iterates_every_page(client: Client) -> None:
    ids = []
    for team in ("x", "y", "x"):
        run = await client.submit(pipeline(), labels={"team": team})
        await client.wait(run.run_id)
        ids.append(run.run_id)
    listed = [run.run_id async for run in client.runs(page_size=1)]
    assert listed == ids[::-1]
    team_x = [r.run_id async for r in client.runs(labels={"team": "x"}, page_size=1)]
    assert team_x == [ids[2], ids[0]]
    failed = [r async for r in client.runs(statuses=[RunState.FAILED])]
    assert failed == []


async def test_an_idempotent_submit_returns_the_first_run(client: Client) -> None:
    first = await client.submit(pipeline(), idempotency_key="k")
    second = await client.submit(pipeline(), idempotency_key="k")
    assert second.run_id == first.run_id and second.deduplicated and not first.deduplicated


async def test_cancel_then_resume(client: Client) -> None:
    run = await client.submit(SLOW)
    async for event in client.watch(run.run_id):
        if event.kind == RunEventKind.TASK_STARTED:
            break
    cancelling = await client.cancel(run.run_id, reason="stop")
    assert cancelling.status == RunState.CANCELLING
    cancelled = await client.wait(run.run_id)
    assert cancelled.status == RunState.CANCELLED and cancelled.error == "stop"
    resumed = await client.resume(run.run_id)
    assert not resumed.status.finished
    await client.cancel(run.run_id)
    assert (await client.wait(run.run_id)).status == RunState.CANCELLED


async def test_errors_arrive_as_domain_exceptions(client: Client) -> None:
    graph = {
        "tasks": [sleep_task("a"), {"id": "js", "type": "JavaScriptTask"}],
        "dataflows": [flow("a", "js", "nope")],
    }
    with pytest.raises(GraphValidationError) as invalid:
        await client.submit(graph)
    assert {(i.code, i.task_id, i.port) for i in invalid.value.issues} == {
        ("unknown_input_port", "js", "nope"),
        ("missing_input", "js", "code"),
    }
    with pytest.raises(RunNotFoundError):
        await client.get("no-such-run")
    with pytest.raises(RunNotFoundError):
        [event async for event in client.watch("no-such-run")]
    done = await client.submit(pipeline())
    await client.wait(done.run_id)
    with pytest.raises(RunStateError):
        await client.resume(done.run_id)
    with pytest.raises(GraphNotFoundError):
        await client.get_graph("nope")


async def test_bad_tokens_and_passed_deadlines_raise_remote_errors(client: Client) -> None:
    async with Client(client.target, token="wrong") as stranger:
        with pytest.raises(UnauthenticatedError):
            await stranger.task_types()
    run = await client.submit(SLOW)
    async with Client(client.target, token="token-a", stream_timeout=0.3) as impatient:
        with pytest.raises(RemoteDeadlineError):
            [event async for event in impatient.watch(run.run_id)]
    async with Client(client.target, token="token-b") as other_tenant:
        with pytest.raises(RunNotFoundError):
            await other_tenant.get(run.run_id)
    await client.cancel(run.run_id)


async def test_catalog_validation_code_export_and_saved_graphs(client: Client) -> None:
    types = {entry["type"]: entry for entry in await client.task_types()}
    assert types["RunTestSleep"]["inputs"][1]["default"] == 0
    assert await client.validate(pipeline()) == []
    broken = {"tasks": [{"id": "js", "type": "JavaScriptTask"}], "dataflows": []}
    [issue] = await client.validate(broken)
    assert (issue.task_id, issue.port) == ("js", "code")
    code = await client.export_code(pipeline())
    assert graph_to_json(code_to_graph(code)) == pipeline().to_json()
    saved = await client.save_graph(pipeline(), graph_id="p", name="P", labels={"k": "v"})
    assert saved.version == 1 and saved.graph == pipeline().to_json()
    assert (await client.get_graph("p")).name == "P"
    assert [g.graph_id for g in await client.list_graphs(labels={"k": "v"})] == ["p"]
    assert graph_to_json(code_to_graph(await client.export_code(graph_id="p"))) == saved.graph


# -- the CLI against a served orchestrator -------------------------------------------------
runner = CliRunner()
JS_GRAPH = {
    "tasks": [
        {
            "id": "double",
            "type": "JavaScriptTask",
            "defaults": {"code": "return input.a * 2", "input": {"a": 21}},
        }
    ],
    "dataflows": [],
}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """``graphmesh serve orchestrator`` on a free port; yields the client environment.
    Tokens come from the environment (``cli-token``) and a file (``file-token``)."""
    command = [str(Path(sys.executable).parent / "graphmesh"), "serve", "orchestrator"]
    tokens_file = tmp_path_factory.mktemp("tokens") / "tokens"
    tokens_file.write_text("# token tenant\nfile-token other\n")
    env = {
        **os.environ,
        "GRAPHMESH_TOKENS": json.dumps({"cli-token": "cli"}),
        "GRAPHMESH_TOKENS_FILE": str(tokens_file),
    }
    process = subprocess.Popen(
        [*command, "--listen", "127.0.0.1:0"], env=env, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    line = process.stdout.readline()
    assert "listening on" in line, line
    address = line.split("listening on ")[1].split()[0]
    yield {"GRAPHMESH_ADDRESS": address, "GRAPHMESH_TOKEN": "cli-token"}
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) == 0  # SIGTERM is a graceful stop, not a crash
    process.stdout.close()


def invoke(env: dict[str, str], *args: str) -> Any:
    return runner.invoke(app, list(args), env={**env, "COLUMNS": "200"})


def test_cli_submit_then_watch_and_list(served: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "graph.json"
    file.write_text(json.dumps(JS_GRAPH))
    submitted = invoke(served, "submit", str(file), "--label", "via=cli")
    assert submitted.exit_code == 0, submitted.output
    run_id = submitted.stdout.strip().splitlines()[-1]
    watched = invoke(served, "watch", run_id)
    assert watched.exit_code == 0, watched.output
    assert "double" in watched.stdout and f"run {run_id}: COMPLETED" in watched.stdout
    listed = invoke(served, "runs", "--label", "via=cli")
    assert listed.exit_code == 0 and run_id in listed.stdout
    followed = invoke(served, "submit", str(file), "--watch")
    assert followed.exit_code == 0 and "COMPLETED" in followed.stdout
    resumed = invoke(served, "resume", run_id)
    assert resumed.exit_code == 1 and "only failed or cancelled runs" in resumed.stderr
    cancelled = invoke(served, "cancel", run_id)
    assert cancelled.exit_code == 1 and "already ended" in cancelled.stderr
    other_tenant = invoke({**served, "GRAPHMESH_TOKEN": "file-token"}, "runs")
    assert other_tenant.exit_code == 0 and run_id not in other_tenant.stdout


def test_cli_reports_invalid_graphs_and_bad_tokens(served: dict[str, str], tmp_path: Path) -> None:
    file = tmp_path / "bad.json"
    file.write_text(json.dumps({"tasks": [{"id": "js", "type": "JavaScriptTask"}]}))
    invalid = invoke(served, "submit", str(file))
    assert invalid.exit_code == 2 and "needs input 'code'" in invalid.stderr
    stranger = invoke({**served, "GRAPHMESH_TOKEN": "wrong"}, "runs")
    assert stranger.exit_code == 1 and "UNAUTHENTICATED" in stranger.stderr
    missing = invoke(served, "watch", "no-such-run")
    assert missing.exit_code == 1 and "no-such-run" in missing.stderr


def test_serve_refuses_stores_that_do_not_exist_yet_and_auth_without_tokens() -> None:
    env: dict[str, str | None] = {"GRAPHMESH_TOKENS": "{}", "GRAPHMESH_TOKENS_FILE": None}
    durable = runner.invoke(app, ["serve", "orchestrator", "--store", "nope", "--no-auth"], env=env)
    assert durable.exit_code == 1 and "unknown store" in durable.stderr
    no_tokens = runner.invoke(app, ["serve", "orchestrator"], env=env)
    assert no_tokens.exit_code == 1 and "no tokens are configured" in no_tokens.stderr
    nats_env = {**env, "GRAPHMESH_NATS_URL": "nats://127.0.0.1:4222"}
    memory_events = runner.invoke(app, ["serve", "orchestrator", "--no-auth"], env=nats_env)
    assert memory_events.exit_code == 1 and "--store sqlite" in memory_events.stderr
    no_database = {**env, "GRAPHMESH_DATABASE_URL": None}
    postgres = runner.invoke(
        app, ["serve", "orchestrator", "--store", "postgres", "--no-auth"], env=no_database
    )
    assert postgres.exit_code == 1 and "GRAPHMESH_DATABASE_URL" in postgres.stderr


class FlakyStoreRuns(MemoryRunService):
    """In-memory runs whose store seems to restart: ``get_run`` fails ``outages`` times,
    and the first watch breaks off after one event, as a Postgres restart makes them."""

    def __init__(self, outages: int) -> None:
        super().__init__()
        self.outages = outages
        self.watch_broken = False

    async def get_run(self, run_id: str, *, tenant: str) -> RunRecord:
        if self.outages > 0:
            self.outages -= 1
            raise StoreUnavailableError("connection to the runs database lost")
        return await super().get_run(run_id, tenant=tenant)

    async def watch_run(
        self, run_id: str, *, tenant: str, from_seq: int = 0
    ) -> AsyncIterator[RunEventRecord]:
        async for event in super().watch_run(run_id, tenant=tenant, from_seq=from_seq):
            yield event
            if not self.watch_broken:
                self.watch_broken = True
                raise StoreUnavailableError("connection to the runs database lost")


async def test_reads_are_retried_and_wait_resumes_its_watch_while_the_store_restarts() -> None:
    runs = FlakyStoreRuns(outages=0)
    async with (
        MemoryGraphRepository.open() as graphs,
        runs,
        OrchestratorServer(runs, graphs, tokens=None, grace_period=0) as server,
        Client(server.target) as client,
    ):
        run = await client.submit({"tasks": [sleep_task("a", 2.0)], "dataflows": []})
        runs.outages = 2  # gRPC retries GetRun up to 5 attempts
        done = await client.wait(run.run_id)
        assert done.status == RunState.COMPLETED and runs.watch_broken
        runs.outages = 5
        with pytest.raises(StoreUnavailableError, match="database lost"):
            await client.get(run.run_id)


async def test_an_invalid_request_raises_invalid_request_error_naming_fields(
    client: Client,
) -> None:
    graph = {"tasks": [sleep_task("a")], "dataflows": []}
    with pytest.raises(InvalidRequestError) as caught:
        await client.submit(graph, inputs={"value": float("nan"), "a.seconds": "x\x00"})
    found = {(v.field, v.reason) for v in caught.value.violations}
    assert found == {("inputs.value", "NOT_FINITE"), ("inputs.a.seconds", "NUL")}
