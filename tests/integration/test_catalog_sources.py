"""File, SQLite and Postgres source/sink tasks against real files and databases."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg
import pytest

from graphmesh.orchestrator.catalog.files import FileReadTask, FileWriteTask
from graphmesh.orchestrator.catalog.postgres_tasks import PostgresInsertTask, PostgresQueryTask
from graphmesh.orchestrator.catalog.sqlite_tasks import SqliteInsertTask, SqliteQueryTask
from graphmesh.orchestrator.graph import DataFlow, TaskGraph
from graphmesh.orchestrator.policy import TaskPolicy
from graphmesh.orchestrator.policy.model import TenantRules
from graphmesh.orchestrator.runner import RunResult, RunStatus, TaskGraphRunner
from graphmesh.orchestrator.task import Task


async def run(*tasks: Task, flows: tuple[DataFlow, ...] = (), **kwargs: Any) -> RunResult:
    return await TaskGraphRunner(TaskGraph(tasks, flows), **kwargs).run()


async def output_of(task: Task, **kwargs: Any) -> dict[str, Any]:
    return (await run(task, **kwargs)).raise_for_status().outputs[task.id]


def flow(source: str, source_port: str, target: str, target_port: str) -> DataFlow:
    return DataFlow(
        source_task=source, source_port=source_port, target_task=target, target_port=target_port
    )


# -- files ------------------------------------------------------------------------------
async def test_write_then_read_a_file_creating_folders(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "note.txt"
    writer = FileWriteTask(id="w", defaults={"path": str(target), "text": "héllo\n"})
    reader = FileReadTask(id="r")
    result = await run(writer, reader, flows=(flow("w", "path", "r", "path"),))
    assert result.raise_for_status().output == {"text": "héllo\n"}
    assert target.read_bytes() == "héllo\n".encode()
    assert [p.name for p in target.parent.iterdir()] == ["note.txt"], "no temporary file left"


async def test_write_replaces_the_whole_file_with_the_usual_mode(tmp_path: Path) -> None:
    target = tmp_path / "note.txt"
    target.write_text("old content that is longer")
    await output_of(FileWriteTask(id="w", defaults={"path": str(target), "text": "new"}))
    assert target.read_text() == "new"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask


async def test_read_honours_the_encoding(tmp_path: Path) -> None:
    path = tmp_path / "latin.txt"
    path.write_bytes("café".encode("latin-1"))
    task = FileReadTask(id="r", defaults={"path": str(path), "encoding": "latin-1"})
    assert await output_of(task) == {"text": "café"}


async def test_a_missing_file_fails_clearly(tmp_path: Path) -> None:
    result = await run(FileReadTask(id="r", defaults={"path": str(tmp_path / "nope.txt")}))
    assert result.status == RunStatus.FAILED
    assert "FileNotFoundError" in (result.error or "")


async def test_a_tenants_paths_stay_in_its_data_root(tmp_path: Path) -> None:
    root = tmp_path / "data"
    (root / "acme" / "docs").mkdir(parents=True)
    (root / "acme" / "docs" / "a.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "acme" / "link.txt").symlink_to(tmp_path / "secret.txt")
    (root / "acme" / "hop").symlink_to(tmp_path)
    policy = TaskPolicy(default=TenantRules(task_types=frozenset({"*"}), data_root=root))
    options = {"resources": {"policy": policy}, "tenant": "acme"}
    inside = FileReadTask(id="r", defaults={"path": "docs/a.txt"})
    assert await output_of(inside, **options) == {"text": "inside"}
    for escape in ["../secret.txt", str(tmp_path / "secret.txt"), "link.txt", "hop/secret.txt"]:
        result = await run(FileReadTask(id="r", defaults={"path": escape}), **options)
        assert result.error and "outside" not in str(result.outputs), escape
        assert str(root) not in result.error, "a tenant never sees the server's data root"
    writer = FileWriteTask(id="w", defaults={"path": "out/x.txt", "text": "x"})
    assert await output_of(writer, **options) == {"path": "out/x.txt"}
    assert (root / "acme" / "out" / "x.txt").read_text() == "x"
    for escape in ["../escape.txt", "hop/escape.txt", str(tmp_path / "escape.txt")]:
        writer = FileWriteTask(id="w", defaults={"path": escape, "text": "x"})
        assert not (await run(writer, **options)).ok, escape
    assert not (tmp_path / "escape.txt").exists()
    # Writing over a link replaces the link itself, never what it points to.
    over = FileWriteTask(id="w", defaults={"path": "link.txt", "text": "mine"})
    assert await output_of(over, **options) == {"path": "link.txt"}
    assert not (root / "acme" / "link.txt").is_symlink()
    assert (tmp_path / "secret.txt").read_text() == "outside"


async def test_a_tenant_without_a_data_root_gets_no_files(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("x")
    result = await run(FileReadTask(id="r", defaults={"path": "a.txt"}), tenant="acme")
    assert "has no data root" in (result.error or "")


def count_rows(path: Path, table: str) -> int:
    with closing(sqlite3.connect(path)) as connection:
        (count,) = connection.execute(f"SELECT count(*) FROM {table}").fetchone()
    return int(count)


# -- SQLite -----------------------------------------------------------------------------
ROWS = [
    {"name": "ada", "age": 36, "tags": ["math"]},
    {"name": "alan", "age": 41, "tags": []},
    {"name": "grace"},
]


async def test_sqlite_insert_creates_the_table_and_query_reads_it_back(sqlite_path: Path) -> None:
    insert = SqliteInsertTask(
        id="ins", defaults={"database": str(sqlite_path), "table": "people", "rows": ROWS}
    )
    assert await output_of(insert) == {"count": 3}
    query = SqliteQueryTask(
        id="q",
        defaults={
            "database": str(sqlite_path),
            "sql": "SELECT name, age, tags FROM people WHERE name LIKE ? ORDER BY name",
            "params": ["a%"],
        },
    )
    assert await output_of(query) == {
        "rows": [
            {"name": "ada", "age": 36, "tags": '["math"]'},
            {"name": "alan", "age": 41, "tags": "[]"},
        ]
    }


async def test_sqlite_named_params_and_blobs(sqlite_path: Path) -> None:
    with sqlite3.connect(sqlite_path) as connection:
        connection.execute("CREATE TABLE t (k TEXT, v BLOB)")
        connection.execute("INSERT INTO t VALUES ('x', x'00ff')")
    connection.close()
    query = SqliteQueryTask(
        id="q",
        defaults={
            "database": str(sqlite_path),
            "sql": "SELECT * FROM t WHERE k = :k",
            "params": {"k": "x"},
        },
    )
    assert await output_of(query) == {"rows": [{"k": "x", "v": "AP8="}]}


async def test_sqlite_query_is_read_only(sqlite_path: Path) -> None:
    await output_of(
        SqliteInsertTask(
            id="i", defaults={"database": str(sqlite_path), "table": "t", "rows": [{"a": 1}]}
        )
    )
    query = SqliteQueryTask(id="q", defaults={"database": str(sqlite_path), "sql": "DELETE FROM t"})
    result = await run(query)
    assert "readonly database" in (result.error or "")
    assert count_rows(sqlite_path, "t") == 1


async def test_sqlite_query_of_a_missing_database_fails_without_creating_it(
    sqlite_path: Path,
) -> None:
    result = await run(
        SqliteQueryTask(id="q", defaults={"database": str(sqlite_path), "sql": "SELECT 1"})
    )
    assert "does not exist" in (result.error or "")
    assert not await asyncio.to_thread(sqlite_path.exists)


@pytest.mark.parametrize(
    ("table", "rows", "message"),
    [
        ('people"; DROP TABLE x; --', [{"a": 1}], "is not a valid identifier"),
        ("people", [{"bad column": 1}], "column 'bad column' is not a valid identifier"),
        ("people", "not rows", "rows must be an array of objects"),
    ],
)
async def test_sqlite_insert_refuses_bad_names(
    sqlite_path: Path, table: str, rows: Any, message: str
) -> None:
    task = SqliteInsertTask(
        id="i", defaults={"database": str(sqlite_path), "table": table, "rows": rows}
    )
    result = await run(task)
    assert message in (result.error or "")


async def test_sqlite_values_are_bound_never_spliced(sqlite_path: Path) -> None:
    evil = "x'); DROP TABLE people; --"
    rows = [{"name": evil}]
    await output_of(
        SqliteInsertTask(
            id="i", defaults={"database": str(sqlite_path), "table": "people", "rows": rows}
        )
    )
    query = SqliteQueryTask(
        id="q", defaults={"database": str(sqlite_path), "sql": "SELECT name FROM people"}
    )
    assert await output_of(query) == {"rows": [{"name": evil}]}


async def test_sqlite_insert_is_all_or_nothing(sqlite_path: Path) -> None:
    with sqlite3.connect(sqlite_path) as connection:
        connection.execute("CREATE TABLE t (a INTEGER NOT NULL)")
    connection.close()
    rows = [{"a": 1}, {"a": None}]
    result = await run(
        SqliteInsertTask(
            id="i", defaults={"database": str(sqlite_path), "table": "t", "rows": rows}
        )
    )
    assert "NOT NULL" in (result.error or "")
    assert count_rows(sqlite_path, "t") == 0


async def test_sqlite_idempotent_insert_runs_once_per_key(sqlite_path: Path) -> None:
    task = SqliteInsertTask(
        id="i",
        defaults={"database": str(sqlite_path), "table": "t", "rows": [{"a": 1}, {"a": 2}]},
        config={"idempotent": True},
    )
    runner = TaskGraphRunner(TaskGraph([task]))
    for _ in range(2):  # the same run re-executed, as after a crash
        result = await runner.run(run_id="run-1")
        assert result.raise_for_status().outputs["i"] == {"count": 2}
    assert count_rows(sqlite_path, "t") == 2
    await runner.run(run_id="run-2")
    assert count_rows(sqlite_path, "t") == 4


async def test_sqlite_query_feeds_an_insert(sqlite_path: Path, tmp_path: Path) -> None:
    copy_path = tmp_path / "copy.sqlite"
    seed = {"database": str(sqlite_path), "table": "people", "rows": ROWS[:2]}
    await output_of(SqliteInsertTask(id="seed", defaults=seed))
    query = SqliteQueryTask(
        id="q", defaults={"database": str(sqlite_path), "sql": "SELECT name, age FROM people"}
    )
    insert = SqliteInsertTask(id="i", defaults={"database": str(copy_path), "table": "copy"})
    result = await run(query, insert, flows=(flow("q", "rows", "i", "rows"),))
    assert result.raise_for_status().output == {"count": 2}


# -- Postgres ---------------------------------------------------------------------------
async def create_people(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn) as connection:
        await connection.execute(
            "CREATE TABLE people (id serial PRIMARY KEY, name text NOT NULL, "
            "age numeric, born date, meta jsonb, active boolean NOT NULL DEFAULT true)"
        )


async def test_postgres_insert_and_query_round_trip(postgres_dsn: str) -> None:
    await create_people(postgres_dsn)
    rows = [
        {"name": "ada", "age": 36, "born": "1815-12-10", "meta": {"field": "math"}},
        {"name": "alan", "age": 41.5},
        {"name": "grace", "active": False},
    ]
    insert = PostgresInsertTask(
        id="i", defaults={"dsn": postgres_dsn, "table": "people", "rows": rows}
    )
    assert await output_of(insert) == {"count": 3}
    query = PostgresQueryTask(
        id="q",
        defaults={
            "dsn": postgres_dsn,
            "sql": "SELECT id, name, age, born, meta, active FROM people "
            "WHERE name <> %(skip)s ORDER BY id",
            "params": {"skip": "nobody"},
        },
    )
    assert await output_of(query) == {
        "rows": [
            {
                "id": 1,
                "name": "ada",
                "age": 36,
                "born": "1815-12-10",
                "meta": {"field": "math"},
                "active": True,
            },
            {"id": 2, "name": "alan", "age": 41.5, "born": None, "meta": None, "active": True},
            {"id": 3, "name": "grace", "age": None, "born": None, "meta": None, "active": False},
        ]
    }


async def test_postgres_dsn_comes_from_resources(postgres_dsn: str) -> None:
    query = PostgresQueryTask(
        id="q", defaults={"sql": "SELECT %s::int AS n, '100%%' AS p", "params": [7]}
    )
    output = await output_of(query, resources={"postgres_dsn": postgres_dsn})
    assert output == {"rows": [{"n": 7, "p": "100%"}]}


async def test_postgres_query_without_params_keeps_percent_signs(postgres_dsn: str) -> None:
    query = PostgresQueryTask(id="q", defaults={"dsn": postgres_dsn, "sql": "SELECT '5%' AS p"})
    assert await output_of(query) == {"rows": [{"p": "5%"}]}


async def test_postgres_query_is_read_only(postgres_dsn: str) -> None:
    await create_people(postgres_dsn)
    query = PostgresQueryTask(
        id="q", defaults={"dsn": postgres_dsn, "sql": "INSERT INTO people (name) VALUES ('x')"}
    )
    result = await run(query)
    assert "read-only transaction" in (result.error or "")


async def test_postgres_schema_qualified_table_and_quoted_identifiers(postgres_dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(postgres_dsn) as connection:
        await connection.execute('CREATE SCHEMA app; CREATE TABLE app."Order" ("select" text)')
    insert = PostgresInsertTask(
        id="i", defaults={"dsn": postgres_dsn, "table": "app.Order", "rows": [{"select": "x"}]}
    )
    result = await run(insert)
    # Identifiers are quoted exactly as given: "Order" (not folded to order) exists.
    assert result.raise_for_status().outputs["i"] == {"count": 1}


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ("people; DROP TABLE people", "is not a valid identifier"),
        ("a.b.c", "must be 'name' or 'schema.name'"),
        ("missing_table", 'relation "missing_table" does not exist'),
    ],
)
async def test_postgres_insert_refuses_bad_tables(
    postgres_dsn: str, table: str, message: str
) -> None:
    await create_people(postgres_dsn)
    insert = PostgresInsertTask(
        id="i", defaults={"dsn": postgres_dsn, "table": table, "rows": [{"name": "x"}]}
    )
    result = await run(insert)
    assert message in (result.error or "")


async def test_postgres_insert_is_all_or_nothing(postgres_dsn: str) -> None:
    await create_people(postgres_dsn)
    rows = [{"name": "ok"}, {"name": None}]
    result = await run(
        PostgresInsertTask(id="i", defaults={"dsn": postgres_dsn, "table": "people", "rows": rows})
    )
    assert "NotNullViolation" in (result.error or "")
    query = PostgresQueryTask(
        id="q", defaults={"dsn": postgres_dsn, "sql": "SELECT count(*) AS n FROM people"}
    )
    assert await output_of(query) == {"rows": [{"n": 0}]}


async def test_postgres_idempotent_insert_survives_concurrent_re_runs(postgres_dsn: str) -> None:
    await create_people(postgres_dsn)

    def insert() -> TaskGraphRunner:
        task = PostgresInsertTask(
            id="i",
            defaults={
                "dsn": postgres_dsn,
                "table": "people",
                "rows": [{"name": "a"}, {"name": "b"}],
            },
            config={"idempotent": True},
        )
        return TaskGraphRunner(TaskGraph([task]))

    results = await asyncio.gather(*(insert().run(run_id="run-1") for _ in range(3)))
    assert [r.raise_for_status().outputs["i"] for r in results] == [{"count": 2}] * 3
    query = PostgresQueryTask(
        id="q", defaults={"dsn": postgres_dsn, "sql": "SELECT count(*) AS n FROM people"}
    )
    assert await output_of(query) == {"rows": [{"n": 2}]}


async def test_embedded_writes_go_under_the_state_dir_reads_under_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from graphmesh.embedded import EmbeddedEngine
    from graphmesh.settings import EmbeddedSettings

    workdir, state = tmp_path / "work", tmp_path / "state"
    (workdir / "docs").mkdir(parents=True)
    (workdir / "docs" / "in.txt").write_text("hello")
    monkeypatch.chdir(workdir)
    reader = FileReadTask(id="read", defaults={"path": "docs/in.txt"})
    writer = FileWriteTask(id="write", defaults={"path": "out/copy.txt"})
    saver = SqliteInsertTask(
        id="save", defaults={"database": "db.sqlite", "table": "t", "rows": [{"a": 1}]}
    )
    graph = TaskGraph([reader, writer, saver], [flow("read", "text", "write", "text")])
    async with EmbeddedEngine(EmbeddedSettings(state_dir=state, cache=False)) as engine:
        result = (await engine.run(graph)).raise_for_status()
    assert sorted(p.name for p in workdir.iterdir()) == ["docs"]  # nothing written here
    assert (state / "out" / "copy.txt").read_text() == "hello"
    assert result.outputs["write"] == {"path": str(state / "out" / "copy.txt")}
    assert count_rows(state / "db.sqlite", "t") == 1
