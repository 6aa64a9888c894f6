"""SQLite source and sink tasks. Values always travel as bound parameters; table and
column names are checked identifiers, double-quoted.

Where a database lives is :mod:`.paths`' rule (a remote tenant's stays inside its data root;
the local user's relative paths go under the engine's state directory). A remote tenant's
query runs under an authorizer that allows reading and nothing else: no ATTACH (so no other
file and no ``file:`` URI), no PRAGMA, no ``load_extension``, no writes.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Mapping, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

from graphmesh.orchestrator.catalog._values import (
    check_identifier,
    check_params,
    check_rows,
    row_batches,
    to_json_value,
)
from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.catalog.paths import confined_database, local_path
from graphmesh.orchestrator.policy import TaskPolicyError, tenant_access
from graphmesh.orchestrator.task import (
    OutputTask,
    Port,
    Task,
    TaskContext,
    TaskInput,
    TaskOutput,
    ValueType,
)

_DATABASE = Port(id="database", value_type=ValueType.PATH, description="SQLite database file")
_IDEMPOTENCY_TABLE = "graphmesh_idempotency"


class SqliteQueryTask(Task):
    """Run one read-only SQL query; ``rows`` is a list of objects (column -> value).

    The database is opened read-only, so a query can never change it; write with
    :class:`SqliteInsertTask`. ``params`` binds ``?`` (array) or ``:name`` (object)
    placeholders. Blobs come back base64-encoded.
    """

    type = "SqliteQueryTask"
    category = "Input"
    cacheable = False
    external_access = True
    inputs = (
        _DATABASE,
        Port(id="sql", value_type=ValueType.SQL),
        Port(id="params", value_type=ValueType.JSON, default=None),
    )
    outputs = (Port(id="rows", value_type=ValueType.JSON, is_array=True),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        path = database(inputs["database"], ctx, create=False)
        params = check_params(inputs.get("params"))
        confined = ctx.tenant is not None
        rows = await asyncio.to_thread(
            query_sqlite, path, str(inputs["sql"]), params, confined=confined
        )
        return {"rows": rows}


def database(path: Any, ctx: TaskContext, *, create: bool) -> Path:
    """Where the task's database is (see the module docstring)."""
    policy = tenant_access(ctx)
    if policy is None:
        return local_path(path, ctx.resources, written=True)
    return confined_database(policy, path, create=create)


def query_sqlite(
    path: Path, sql: str, params: Sequence[Any] | Mapping[str, Any], *, confined: bool = False
) -> list[dict[str, Any]]:
    """Rows of ``sql`` on the database at ``path``, opened read-only (blocking); with
    ``confined``, the statement may only read (see the module docstring)."""
    if not path.exists():
        raise TaskInputError(f"SQLite database {path.name!r} does not exist")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as connection:
        if confined:
            connection.set_authorizer(_read_only)
        try:
            cursor = connection.execute(sql, params)
        except sqlite3.DatabaseError as error:
            if "not authorized" in str(error):
                raise TaskPolicyError(
                    "the query may only read: ATTACH, PRAGMA, load_extension and writes "
                    "are not allowed"
                ) from None
            raise TaskInputError(f"the query failed: {error}") from None
        columns = [column[0] for column in cursor.description or ()]
        return [
            {name: to_json_value(value) for name, value in zip(columns, row, strict=True)}
            for row in cursor.fetchall()
        ]


class SqliteInsertTask(OutputTask):
    """Insert ``rows`` (objects: column -> value) into ``table``; ``count`` is how many.

    A missing table is created with the columns of the rows (SQLite columns are dynamically
    typed, so no types need guessing). All rows go in one transaction. With config
    ``idempotent: true`` the run's idempotency key is recorded in the same transaction, so
    a task re-run after a crash does not insert twice.
    """

    type = "SqliteInsertTask"
    category = "Output"
    external_access = True
    inputs = (
        _DATABASE,
        Port(id="table", value_type=ValueType.TEXT),
        Port(id="rows", value_type=ValueType.JSON, is_array=True),
    )
    outputs = (Port(id="count", value_type=ValueType.INTEGER),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        path = database(inputs["database"], ctx, create=True)
        table = check_identifier(inputs["table"], "table")
        rows = check_rows(inputs["rows"])
        key = ctx.idempotency_key if self.config.get("idempotent") else None
        count = await asyncio.to_thread(insert_sqlite, path, table, rows, key)
        return {"count": count}


def insert_sqlite(path: Path, table: str, rows: list[dict[str, Any]], key: str | None) -> int:
    """Insert ``rows`` in one transaction (blocking); returns the number inserted."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        try:
            count = _insert_once(connection, table, rows, key)
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")
    return count


def _insert_once(
    connection: sqlite3.Connection, table: str, rows: list[dict[str, Any]], key: str | None
) -> int:
    if key is not None:
        done = _recorded_count(connection, key)
        if done is not None:
            return done
    if rows:
        _create_table(connection, table, rows)
    for columns, batch in row_batches(rows):
        names = ", ".join(_quote(c) for c in columns)
        marks = ", ".join(f":{c}" for c in columns)
        statement = f"INSERT INTO {_quote(table)} ({names}) VALUES ({marks})"
        connection.executemany(statement, [_bindable(row) for row in batch])
    if key is not None:
        connection.execute(
            f"INSERT INTO {_IDEMPOTENCY_TABLE} (key, count) VALUES (?, ?)", (key, len(rows))
        )
    return len(rows)


def _recorded_count(connection: sqlite3.Connection, key: str) -> int | None:
    connection.execute(
        f"CREATE TABLE IF NOT EXISTS {_IDEMPOTENCY_TABLE} "
        "(key TEXT PRIMARY KEY, count INTEGER NOT NULL, "
        "created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
    )
    row = connection.execute(
        f"SELECT count FROM {_IDEMPOTENCY_TABLE} WHERE key = ?", (key,)
    ).fetchone()
    return None if row is None else int(row[0])


def _create_table(connection: sqlite3.Connection, table: str, rows: list[dict[str, Any]]) -> None:
    columns = dict.fromkeys(column for row in rows for column in row)
    names = ", ".join(_quote(column) for column in columns)
    connection.execute(f"CREATE TABLE IF NOT EXISTS {_quote(table)} ({names})")


def _bindable(row: dict[str, Any]) -> dict[str, Any]:
    """Nested objects and arrays are stored as JSON text (SQLite's JSON functions read it)."""
    return {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in row.items()}


def _quote(identifier: str) -> str:
    """Quote a checked identifier (letters, digits, ``_`` only, so no quote to escape)."""
    return f'"{identifier}"'


_READING = frozenset({sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_RECURSIVE})


def _read_only(action: int, arg1: str | None, arg2: str | None, *_: str | None) -> int:
    """SQLite authorizer of a remote tenant's query: reads and plain functions only."""
    if action in _READING:
        return sqlite3.SQLITE_OK
    if action == sqlite3.SQLITE_FUNCTION and (arg2 or "").lower() != "load_extension":
        return sqlite3.SQLITE_OK
    return sqlite3.SQLITE_DENY
