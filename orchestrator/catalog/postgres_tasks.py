"""Postgres source and sink tasks (psycopg 3, async).

The connection string comes from the ``dsn`` input, else the runner's
``resources["postgres_dsn"]``, else libpq's ``PG*`` environment variables. Prefer the last
two for credentials: inputs are stored with the run. Values are always bound parameters;
table and column names go through ``psycopg.sql.Identifier``. psycopg is imported on first
use, so the catalog loads without the ``orchestrator`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

from graphmesh.orchestrator.catalog._values import (
    check_identifier,
    check_params,
    check_rows,
    row_batches,
    to_json_value,
)
from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.task import (
    OutputTask,
    Port,
    Task,
    TaskContext,
    TaskInput,
    TaskOutput,
    ValueType,
)

if TYPE_CHECKING:
    import psycopg

CONNECT_TIMEOUT_SEC: Final = 10
_DSN = Port(
    id="dsn",
    name="DSN",
    value_type=ValueType.TEXT,
    default=None,
    description="libpq connection string; default: resources postgres_dsn, then PG* env",
)
_IDEMPOTENCY_TABLE: Final = "graphmesh_idempotency"


def resolve_dsn(dsn: Any, resources: Mapping[str, Any]) -> str:
    """The connection string to use; "" lets libpq read the ``PG*`` environment."""
    if dsn:
        return str(dsn)
    return str(resources.get("postgres_dsn") or "")


async def _connect(dsn: str) -> psycopg.AsyncConnection[Any]:
    import psycopg
    from psycopg.rows import dict_row

    return await psycopg.AsyncConnection.connect(
        dsn, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_SEC
    )


class PostgresQueryTask(Task):
    """Run one query in a read-only transaction; ``rows`` is a list of objects.

    ``params`` binds ``%s`` (array) or ``%(name)s`` (object) placeholders. Values are made
    JSON: numerics as numbers, dates and times as ISO text, bytea as base64, UUIDs as text.
    """

    type = "PostgresQueryTask"
    category = "Input"
    cacheable = False
    inputs = (
        _DSN,
        Port(id="sql", value_type=ValueType.SQL),
        Port(id="params", value_type=ValueType.JSON, default=None),
    )
    outputs = (Port(id="rows", value_type=ValueType.JSON, is_array=True),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        params = check_params(inputs.get("params"))
        dsn = resolve_dsn(inputs.get("dsn"), ctx.resources)
        return {"rows": await query_postgres(dsn, str(inputs["sql"]), params)}


async def query_postgres(
    dsn: str, sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Rows of ``sql``, run read-only."""
    async with await _connect(dsn) as connection:
        await connection.set_read_only(True)
        # User SQL is not a LiteralString; bytes is psycopg's spelling of "run as given".
        # Empty params become None so a literal % needs no escaping.
        cursor = await connection.execute(sql.encode(), params or None)
        rows = await cursor.fetchall() if cursor.description else []
        return [{str(k): to_json_value(v) for k, v in row.items()} for row in rows]


class PostgresInsertTask(OutputTask):
    """Insert ``rows`` (objects: column -> value) into an existing ``table`` in one
    transaction; ``count`` is how many.

    ``table`` may be ``schema.table``. Objects and arrays are sent as ``jsonb``. The table
    must exist (Postgres columns need types; graphmesh does not guess them). With config
    ``idempotent: true`` the run's idempotency key is recorded in the same transaction
    (table ``graphmesh_idempotency``), so a re-run after a crash does not insert twice.
    """

    type = "PostgresInsertTask"
    category = "Output"
    inputs = (
        _DSN,
        Port(id="table", value_type=ValueType.TEXT),
        Port(id="rows", value_type=ValueType.JSON, is_array=True),
    )
    outputs = (Port(id="count", value_type=ValueType.INTEGER),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        table = _table_parts(inputs["table"])
        rows = check_rows(inputs["rows"])
        key = ctx.idempotency_key if self.config.get("idempotent") else None
        dsn = resolve_dsn(inputs.get("dsn"), ctx.resources)
        return {"count": await insert_postgres(dsn, table, rows, key)}


def _table_parts(table: Any) -> tuple[str, ...]:
    parts = tuple(str(table).split(".")) if isinstance(table, str) else (table,)
    if len(parts) > 2:
        raise TaskInputError(f"table {table!r} must be 'name' or 'schema.name'")
    return tuple(check_identifier(part, "table") for part in parts)


async def insert_postgres(
    dsn: str, table: tuple[str, ...], rows: list[dict[str, Any]], key: str | None
) -> int:
    """Insert ``rows`` in one transaction; returns the number inserted."""
    async with await _connect(dsn) as connection, connection.transaction():
        if key is not None:
            done = await _recorded_count(connection, key)
            if done is not None:
                return done
        for columns, batch in row_batches(rows):
            statement = _insert_statement(table, columns)
            async with connection.cursor() as cursor:
                await cursor.executemany(statement, [_adapted(row) for row in batch])
        if key is not None:
            await _record(connection, key, len(rows))
    return len(rows)


def _insert_statement(table: tuple[str, ...], columns: tuple[str, ...]) -> psycopg.sql.Composed:
    from psycopg import sql

    return sql.SQL("INSERT INTO {} ({}) VALUES ({})").format(
        sql.Identifier(*table),
        sql.SQL(", ").join(sql.Identifier(column) for column in columns),
        sql.SQL(", ").join(sql.Placeholder(column) for column in columns),
    )


def _adapted(row: dict[str, Any]) -> dict[str, Any]:
    from psycopg.types.json import Jsonb

    return {k: Jsonb(v) if isinstance(v, dict | list) else v for k, v in row.items()}


async def _recorded_count(connection: psycopg.AsyncConnection[Any], key: str) -> int | None:
    from psycopg import sql

    table = sql.Identifier(_IDEMPOTENCY_TABLE)
    # One lock for every idempotent insert: concurrent CREATE TABLE IF NOT EXISTS can
    # still collide, and two re-runs of one task must not both insert. It ends with the
    # transaction.
    await connection.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (_IDEMPOTENCY_TABLE,))
    await connection.execute(
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, count integer NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now())"
        ).format(table)
    )
    cursor = await connection.execute(
        sql.SQL("SELECT count FROM {} WHERE key = %s").format(table), (key,)
    )
    row = await cursor.fetchone()
    return None if row is None else int(row["count"])


async def _record(connection: psycopg.AsyncConnection[Any], key: str, count: int) -> None:
    from psycopg import sql

    await connection.execute(
        sql.SQL("INSERT INTO {} (key, count) VALUES (%s, %s)").format(
            sql.Identifier(_IDEMPOTENCY_TABLE)
        ),
        (key, count),
    )
