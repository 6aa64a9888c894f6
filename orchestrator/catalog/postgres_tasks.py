"""Postgres source and sink tasks (psycopg 3, async).

**A remote tenant** reaches Postgres only through a connection the operator names in the
task policy (input ``connection``, e.g. ``"warehouse"`` -> the operator's DSN and role):
never a DSN of its own, never libpq's defaults (so never the orchestrator's own database
unless the operator names it). What its queries may do is bounded by that role's
privileges, not by a transaction mode the SQL could change; a connection marked
``read_only`` takes no inserts, and its statement timeout is set at connect time.

**The local user** may also give a ``dsn``; else the runner's ``resources["postgres_dsn"]``,
else libpq's ``PG*`` environment variables (prefer those two for credentials: inputs are
stored with the run).

A query is one statement (it is sent as a prepared statement, which the server refuses to
hold two). Values are always bound parameters; table and column names go through
``psycopg.sql.Identifier``. psycopg is imported on first use, so the catalog loads without
the ``orchestrator`` extra.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from graphmesh.orchestrator.catalog._values import (
    check_identifier,
    check_params,
    check_rows,
    row_batches,
    to_json_value,
)
from graphmesh.orchestrator.catalog.errors import TaskInputError
from graphmesh.orchestrator.policy import (
    POLICY_RESOURCE,
    TaskPolicy,
    TaskPolicyError,
    tenant_access,
)
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
_CONNECTION = Port(
    id="connection",
    value_type=ValueType.TEXT,
    default=None,
    description="a connection the operator named in the task policy (remote tenants: required)",
)
_IDEMPOTENCY_TABLE: Final = "graphmesh_idempotency"


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where a task connects: a DSN, and the operator's limits when it is theirs."""

    dsn: str
    read_only: bool = False
    statement_timeout_s: float | None = None


def resolve_target(inputs: TaskInput, ctx: TaskContext) -> Target:
    """The connection to use (see the module docstring)."""
    policy = tenant_access(ctx)
    name = inputs.get("connection")
    if policy is None:
        if name:
            local = ctx.resources.get(POLICY_RESOURCE)
            if isinstance(local, TaskPolicy):
                policy = local.for_tenant("")
        if not name or policy is None:
            return Target(dsn=_local_dsn(inputs.get("dsn"), ctx.resources))
    elif inputs.get("dsn"):
        raise TaskPolicyError(
            "a dsn is not accepted from remote tenants: name a connection of the "
            "operator's task policy in the 'connection' input"
        )
    if not name:
        raise TaskPolicyError("name the Postgres connection to use in the 'connection' input")
    connection = policy.connection(str(name))
    if connection is None:
        raise TaskPolicyError(f"no Postgres connection {str(name)!r} is granted to this tenant")
    return Target(
        dsn=connection.dsn.get_secret_value(),
        read_only=connection.read_only,
        statement_timeout_s=connection.statement_timeout_s,
    )


def _local_dsn(dsn: Any, resources: Mapping[str, Any]) -> str:
    """The local user's connection string; "" lets libpq read the ``PG*`` environment."""
    if dsn:
        return str(dsn)
    return str(resources.get("postgres_dsn") or "")


async def _connect(target: Target) -> psycopg.AsyncConnection[Any]:
    import psycopg
    from psycopg.rows import dict_row

    dsn = target.dsn
    if target.statement_timeout_s is not None:
        # Set at connect time: the one statement a query may hold cannot undo it for itself.
        timeout_ms = int(target.statement_timeout_s * 1000)
        dsn = psycopg.conninfo.make_conninfo(dsn, options=f"-c statement_timeout={timeout_ms}")
    try:
        return await psycopg.AsyncConnection.connect(
            dsn, row_factory=dict_row, connect_timeout=CONNECT_TIMEOUT_SEC
        )
    except psycopg.OperationalError:
        # The driver's text names hosts and users: the operator's, not the tenant's to see.
        raise TaskInputError("cannot connect to the Postgres database") from None


class PostgresQueryTask(Task):
    """Run one query in a read-only transaction; ``rows`` is a list of objects.

    ``params`` binds ``%s`` (array) or ``%(name)s`` (object) placeholders. Values are made
    JSON: numerics as numbers, dates and times as ISO text, bytea as base64, UUIDs as text.
    """

    type = "PostgresQueryTask"
    category = "Input"
    cacheable = False
    external_access = True
    inputs = (
        _DSN,
        _CONNECTION,
        Port(id="sql", value_type=ValueType.SQL),
        Port(id="params", value_type=ValueType.JSON, default=None),
    )
    outputs = (Port(id="rows", value_type=ValueType.JSON, is_array=True),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        params = check_params(inputs.get("params"))
        target = resolve_target(inputs, ctx)
        return {"rows": await query_postgres(target, str(inputs["sql"]), params)}


async def query_postgres(
    target: Target, sql: str, params: Sequence[Any] | Mapping[str, Any]
) -> list[dict[str, Any]]:
    """Rows of ``sql``, one statement, in a read-only transaction."""
    import psycopg

    async with await _connect(target) as connection:
        await connection.set_read_only(True)
        # User SQL is not a LiteralString; bytes is psycopg's spelling of "run as given".
        # Empty params become None so a literal % needs no escaping. Prepared: the server
        # refuses a second statement ("COMMIT; ...") in it.
        try:
            cursor = await connection.execute(sql.encode(), params or None, prepare=True)
            rows = await cursor.fetchall() if cursor.description else []
        except psycopg.Error as error:
            # The server's primary message only: DETAIL and CONTEXT may show more.
            raise TaskInputError(f"the query failed: {error.diag.message_primary}") from None
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
    external_access = True
    inputs = (
        _DSN,
        _CONNECTION,
        Port(id="table", value_type=ValueType.TEXT),
        Port(id="rows", value_type=ValueType.JSON, is_array=True),
    )
    outputs = (Port(id="count", value_type=ValueType.INTEGER),)

    async def run(self, inputs: TaskInput, ctx: TaskContext) -> TaskOutput:
        table = _table_parts(inputs["table"])
        rows = check_rows(inputs["rows"])
        key = ctx.idempotency_key if self.config.get("idempotent") else None
        target = resolve_target(inputs, ctx)
        if target.read_only:
            raise TaskPolicyError(f"connection {inputs['connection']!r} is read-only")
        return {"count": await insert_postgres(target, table, rows, key)}


def _table_parts(table: Any) -> tuple[str, ...]:
    parts = tuple(str(table).split(".")) if isinstance(table, str) else (table,)
    if len(parts) > 2:
        raise TaskInputError(f"table {table!r} must be 'name' or 'schema.name'")
    return tuple(check_identifier(part, "table") for part in parts)


async def insert_postgres(
    target: Target, table: tuple[str, ...], rows: list[dict[str, Any]], key: str | None
) -> int:
    """Insert ``rows`` in one transaction; returns the number inserted."""
    async with await _connect(target) as connection, connection.transaction():
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
