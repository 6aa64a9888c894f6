"""The task policy, tried as remote tenants through the real gRPC server.

Two tenants (``acme`` and ``beta``) call an orchestrator whose runs live in Postgres (the
orchestrator's own database). The operator's policy gives every tenant a data root of its
own and one named Postgres connection, ``warehouse``: another database, reached as a role
that may only read. ``beta`` may use fewer task types. Each test is one hole a tenant tried.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from psycopg import sql
from support.postgres import PostgresServer, fresh_database

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the task catalog)
from graphmesh.client import Client
from graphmesh.orchestrator.api.server import OrchestratorServer
from graphmesh.orchestrator.errors import GraphValidationError
from graphmesh.orchestrator.policy import POLICY_RESOURCE, PolicyMiddleware, load_policy
from graphmesh.orchestrator.policy.settings import PolicyFileError
from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService
from graphmesh.orchestrator.runs.durable.worker import WorkerSettings
from graphmesh.orchestrator.runs.memory import MemoryRunService
from graphmesh.orchestrator.runs.records import RunRecord, RunState
from graphmesh.orchestrator.storage.memory import MemoryGraphRepository
from graphmesh.v1 import orchestrator_pb2 as pb
from graphmesh.v1 import orchestrator_pb2_grpc

TOKENS = {"token-acme": "acme", "token-beta": "beta"}


@dataclass(frozen=True, kw_only=True)
class Mesh:
    target: str
    root: Path
    outside: Path
    orchestrator_dsn: str


@pytest.fixture
def warehouse(postgres_server: PostgresServer) -> Iterator[tuple[str, str]]:
    """A database with one table, and a DSN of a role that may only read it."""
    with fresh_database(postgres_server) as dsn:
        role = f"gm_reader_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as admin:
            admin.execute("CREATE TABLE facts (name text, value int)")
            admin.execute("INSERT INTO facts VALUES ('answer', 42)")
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
            admin.execute(sql.SQL("GRANT SELECT ON facts TO {}").format(sql.Identifier(role)))
        try:
            yield dsn, psycopg.conninfo.make_conninfo(dsn, user=role)
        finally:
            with psycopg.connect(dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            with psycopg.connect(postgres_server.dsn, autocommit=True) as admin:
                admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def write_policy(tmp_path: Path, root: Path, reader_dsn: str) -> Path:
    (tmp_path / "warehouse.dsn").write_text(reader_dsn)
    policy = tmp_path / "policy.toml"
    policy.write_text(
        f"""
[default]
task_types = ["*"]
data_root = {json.dumps(str(root))}

[default.connections.warehouse]
dsn_file = {json.dumps(str(tmp_path / "warehouse.dsn"))}
read_only = true
statement_timeout_s = 5

[tenants.beta]
task_types = ["FileReadTask", "FileWriteTask", "DocumentSplitterTask"]
"""
    )
    return policy


@pytest.fixture
async def mesh(
    tmp_path: Path, postgres_dsn: str, warehouse: tuple[str, str]
) -> AsyncIterator[Mesh]:
    root, outside = tmp_path / "data", tmp_path / "outside"
    (root / "acme").mkdir(parents=True)
    outside.mkdir()
    (outside / "secret.txt").write_text("server secret")
    policy = load_policy(write_policy(tmp_path, root, warehouse[1]))
    worker = WorkerSettings(
        middleware=[PolicyMiddleware(policy)], resources={POLICY_RESOURCE: policy}
    )
    async with AsyncExitStack() as stack:
        runs = await stack.enter_async_context(PostgresRunService.open(postgres_dsn, worker=worker))
        graphs = await stack.enter_async_context(MemoryGraphRepository.open())
        server = await stack.enter_async_context(
            OrchestratorServer(runs, graphs, tokens=TOKENS, policy=policy, grace_period=0)
        )
        yield Mesh(target=server.target, root=root, outside=outside, orchestrator_dsn=postgres_dsn)


async def run_task(mesh: Mesh, tenant: str, task: dict[str, Any]) -> tuple[RunRecord, Any]:
    """Run a one-task graph as ``tenant``; the finished run and the task's output (or None)."""
    async with Client(mesh.target, token=f"token-{tenant}") as client:
        run = await client.wait((await client.submit({"tasks": [task], "dataflows": []})).run_id)
        output = None
        if run.status == RunState.COMPLETED:
            output = await client.output(run.run_id, task["id"])
        return run, output


def read(path: str) -> dict[str, Any]:
    return {"id": "read", "type": "FileReadTask", "defaults": {"path": path}}


def refused(run: RunRecord, *words: str) -> bool:
    error = run.error or ""
    return run.status == RunState.FAILED and all(word in error for word in words)


# -- files ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "path", ["/etc/passwd", "/proc/self/environ", "../../outside/secret.txt", "a/../../x"]
)
async def test_file_reads_never_leave_the_tenants_data_root(mesh: Mesh, path: str) -> None:
    run, output = await run_task(mesh, "acme", read(path))
    assert output is None and refused(run, "data root")
    assert "root:" not in (run.error or "") and "TOKENS" not in (run.error or "")


async def test_a_symlink_out_of_the_root_is_not_followed(mesh: Mesh) -> None:
    (mesh.root / "acme" / "leak.txt").symlink_to(mesh.outside / "secret.txt")
    (mesh.root / "acme" / "door").symlink_to(mesh.outside)
    for path in ("leak.txt", "door/secret.txt"):
        run, output = await run_task(mesh, "acme", read(path))
        assert output is None and refused(run, "link"), path
        assert str(mesh.root) not in (run.error or "")


async def test_writes_stay_inside_and_tenants_do_not_see_each_other(mesh: Mesh) -> None:
    write = {"id": "w", "type": "FileWriteTask", "defaults": {"path": "notes/b.txt", "text": "b"}}
    run, output = await run_task(mesh, "beta", write)
    assert run.status == RunState.COMPLETED and output == {"path": "notes/b.txt"}
    assert (mesh.root / "beta" / "notes" / "b.txt").read_text() == "b"
    run, _ = await run_task(mesh, "acme", read("notes/b.txt"))
    assert refused(run, "no file 'notes/b.txt'")
    run, _ = await run_task(mesh, "acme", read("../beta/notes/b.txt"))
    assert refused(run, "data root")
    escape = {"id": "w", "type": "FileWriteTask", "defaults": {"path": "/tmp/x", "text": "x"}}
    assert refused((await run_task(mesh, "acme", escape))[0], "relative")


async def test_sqlite_stays_inside_and_can_attach_nothing(mesh: Mesh) -> None:
    outside = mesh.outside / "made.sqlite"
    insert = {
        "id": "ins",
        "type": "SqliteInsertTask",
        "defaults": {"database": "/tmp/elsewhere.sqlite", "table": "t", "rows": [{"a": 1}]},
    }
    assert refused((await run_task(mesh, "acme", insert))[0], "relative")
    insert["defaults"]["database"] = "mine.sqlite"
    assert (await run_task(mesh, "acme", insert))[0].status == RunState.COMPLETED
    for statement in (
        f"ATTACH DATABASE 'file:{outside}?mode=rwc' AS x",
        f"VACUUM INTO '{outside}'",
        "PRAGMA writable_schema = 1",
        "SELECT load_extension('x')",
        "INSERT INTO t VALUES (2)",
    ):
        query = {
            "id": "q",
            "type": "SqliteQueryTask",
            "defaults": {"database": "mine.sqlite", "sql": statement},
        }
        run, _ = await run_task(mesh, "acme", query)
        assert run.status == RunState.FAILED, statement
    assert not outside.exists()
    query = {"id": "q", "type": "SqliteQueryTask", "defaults": {"database": "mine.sqlite"}}
    query["defaults"]["sql"] = "SELECT a FROM t"
    assert (await run_task(mesh, "acme", query))[1] == {"rows": [{"a": 1}]}


# -- Postgres -----------------------------------------------------------------------------
def pg_query(sql_text: str, **extra: Any) -> dict[str, Any]:
    defaults = {"connection": "warehouse", "sql": sql_text, **extra}
    return {"id": "q", "type": "PostgresQueryTask", "defaults": defaults}


async def test_a_named_connection_reads_what_its_role_may(mesh: Mesh) -> None:
    run, output = await run_task(mesh, "acme", pg_query("SELECT name, value FROM facts"))
    assert run.status == RunState.COMPLETED
    assert output == {"rows": [{"name": "answer", "value": 42}]}


@pytest.mark.parametrize(
    ("statement", "why"),
    [
        ("COMMIT; CREATE TABLE stolen (a int)", "multiple commands"),
        ("SET TRANSACTION READ WRITE; CREATE TABLE stolen (a int)", "multiple commands"),
        ("SELECT 1; SELECT 2", "multiple commands"),
        ("CREATE TABLE stolen (a int)", "read-only transaction"),
        ("SELECT * FROM graphmesh_runs", "does not exist"),
        ("SELECT * FROM pg_read_file('/etc/passwd')", "permission denied"),
    ],
)
async def test_the_connection_role_bounds_what_sql_can_do(
    mesh: Mesh, statement: str, why: str
) -> None:
    run, output = await run_task(mesh, "acme", pg_query(statement))
    assert output is None and refused(run, "the query failed", why), run.error
    assert "DETAIL" not in (run.error or "")


async def test_no_caller_dsn_and_no_libpq_defaults(mesh: Mesh) -> None:
    with_dsn = pg_query("SELECT 1", dsn=mesh.orchestrator_dsn)
    assert refused((await run_task(mesh, "acme", with_dsn))[0], "dsn is not accepted")
    unnamed = {"id": "q", "type": "PostgresQueryTask", "defaults": {"sql": "SELECT 1"}}
    assert refused((await run_task(mesh, "acme", unnamed))[0], "connection")
    other = pg_query("SELECT 1", connection="orchestrator")
    assert refused((await run_task(mesh, "acme", other))[0], "no Postgres connection")
    insert = {
        "id": "i",
        "type": "PostgresInsertTask",
        "defaults": {"connection": "warehouse", "table": "facts", "rows": [{"name": "x"}]},
    }
    assert refused((await run_task(mesh, "acme", insert))[0], "read-only")


async def test_the_orchestrators_own_rows_stay_out_of_reach(mesh: Mesh) -> None:
    await run_task(mesh, "beta", read("nothing.txt"))  # beta has runs in the database
    run, _ = await run_task(mesh, "acme", pg_query("SELECT tenant FROM graphmesh_runs"))
    assert refused(run, "graphmesh_runs")


# -- task types -------------------------------------------------------------------------
async def test_a_task_type_the_tenant_may_not_use_is_refused_by_name(mesh: Mesh) -> None:
    graph = {"tasks": [pg_query("SELECT 1")], "dataflows": []}
    async with Client(mesh.target, token="token-beta") as client:
        with pytest.raises(GraphValidationError) as raised:
            await client.submit(graph)
    assert [(i.task_id, i.code) for i in raised.value.issues] == [("q", "task_not_allowed")]
    async with grpc.aio.insecure_channel(mesh.target) as channel:
        stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
        metadata = (("authorization", "Bearer token-beta"),)
        check = pb.ValidateGraphRequest(graph_json=json.dumps(graph))
        validated = await stub.ValidateGraph(check, metadata=metadata, timeout=5)
        assert not validated.valid and "may not use" in validated.violations[0].description
        types = await stub.ListTaskTypes(pb.ListTaskTypesRequest(), metadata=metadata, timeout=5)
        assert {t.type for t in types.task_types} == {
            "FileReadTask",
            "FileWriteTask",
            "DocumentSplitterTask",
        }


async def test_without_a_policy_file_remote_tenants_get_no_files_or_databases() -> None:
    async with (
        MemoryRunService() as runs,
        MemoryGraphRepository.open() as graphs,
        OrchestratorServer(
            runs, graphs, tokens=TOKENS, policy=load_policy(), grace_period=0
        ) as server,
        Client(server.target, token="token-acme") as client,
    ):
        for task in (read("a.txt"), pg_query("SELECT 1")):
            with pytest.raises(GraphValidationError, match="may not use task type"):
                await client.submit({"tasks": [task], "dataflows": []})
        async with grpc.aio.insecure_channel(server.target) as channel:
            stub = orchestrator_pb2_grpc.OrchestratorServiceStub(channel)
            metadata = (("authorization", "Bearer token-acme"),)
            types = await stub.ListTaskTypes(pb.ListTaskTypesRequest(), metadata=metadata)
        names = {t.type for t in types.task_types}
        assert "DocumentSplitterTask" in names and "FileReadTask" not in names


def test_a_broken_policy_file_names_the_problem(tmp_path: Path) -> None:
    bad = tmp_path / "policy.toml"
    bad.write_text('[default]\ndata_root = "relative/path"\n')
    with pytest.raises(PolicyFileError, match="must be an absolute path"):
        load_policy(bad)
    bad.write_text("[default.connections.w]\ndsn_env = 'GRAPHMESH_TEST_NO_SUCH_VARIABLE'\n")
    with pytest.raises(PolicyFileError, match="GRAPHMESH_TEST_NO_SUCH_VARIABLE is not set"):
        load_policy(bad)
    bad.write_text("[default]\ntask_type = ['x']\n")
    with pytest.raises(PolicyFileError, match="task_type"):
        load_policy(bad)
