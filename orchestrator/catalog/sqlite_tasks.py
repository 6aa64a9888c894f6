"""SQLite source and sink tasks. Values always travel as bound parameters; table and
column names are checked identifiers, double-quoted."""

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
from graphmesh.orchestrator.catalog.files import resolve_path
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
    inputs = (
        _DATABASE,
        Port(id="sql", value_type=ValueType.SQL),
        Port(id="params", value_type=ValueType.JSON, default=None),
    )
    outputs = (Port(id="rows", value_type=ValueType.JSON, is_array=True),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        path = resolve_path(inputs["database"], ctx.resources)
        params = check_params(inputs.get("params"))
        rows = await asyncio.to_thread(query_sqlite, path, str(inputs["sql"]), params)
        return {"rows": rows}


def query_sqlite(
    path: Path, sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Rows of ``sql`` on the database at ``path``, opened read-only (blocking)."""
    if not path.exists():
        raise TaskInputError(f"SQLite database {str(path)!r} does not exist")
    uri = f"{path.resolve().as_uri()}?mode=ro"
    with closing(sqlite3.connect(uri, uri=True)) as connection:
        cursor = connection.execute(sql, params)
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
    inputs = (
        _DATABASE,
        Port(id="table", value_type=ValueType.TEXT),
        Port(id="rows", value_type=ValueType.JSON, is_array=True),
    )
    outputs = (Port(id="count", value_type=ValueType.INTEGER),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        path = resolve_path(inputs["database"], ctx.resources)
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
