"""Fixtures the whole suite shares: real databases, one fresh one per test.

``postgres_server`` (session) finds a running Postgres or starts an embedded one (see
``tests/support/postgres.py``; ``GRAPHMESH_TEST_PG_DSN=embedded`` forces the embedded one).
``postgres_dsn`` gives each test its own empty database, dropped afterwards.
``sqlite_path`` is a database file path in the test's temporary directory.
``nats_url`` (session) finds a NATS server with JetStream or starts one (see
``tests/support/nats.py``; ``GRAPHMESH_TEST_NATS_URL=embedded`` forces our own).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.nats import nats_server
from support.postgres import PostgresServer, fresh_database, postgres_server

# Orchestrator processes the tests start serve no run viewer unless a test asks for one:
# several at once would all want the default 127.0.0.1:8080.
os.environ.setdefault("GRAPHMESH_VIEWER_LISTEN", "off")


@pytest.fixture(scope="session", name="postgres_server")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """A running Postgres for the whole session."""
    with postgres_server() as server:
        yield server


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    """The DSN of a fresh, empty database of this test's own."""
    with fresh_database(postgres_server) as dsn:
        yield dsn


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """A SQLite database path (not yet created) in this test's temporary directory."""
    return tmp_path / "graphmesh.sqlite"


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """The URL of a NATS server with JetStream, for the whole session."""
    with nats_server() as server:
        yield server.url
