"""Opens repositories of every storage backend on one location, for the contract suites."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pytest

from graphmesh.orchestrator.storage.base import (
    ModelRepository,
    TaskGraphRepository,
    TaskOutputRepository,
)
from graphmesh.orchestrator.storage.filesystem import (
    FilesystemGraphRepository,
    FilesystemModelRepository,
    FilesystemOutputRepository,
)
from graphmesh.orchestrator.storage.memory import (
    MemoryGraphRepository,
    MemoryModelRepository,
    MemoryOutputRepository,
)
from graphmesh.orchestrator.storage.postgres import (
    PostgresGraphRepository,
    PostgresModelRepository,
    PostgresOutputRepository,
)
from graphmesh.orchestrator.storage.sqlite import (
    SqliteGraphRepository,
    SqliteModelRepository,
    SqliteOutputRepository,
)

BACKENDS = ("memory", "filesystem", "sqlite", "postgres")
PERSISTENT_BACKENDS = ("filesystem", "sqlite", "postgres")


@dataclass(frozen=True, kw_only=True)
class StorageBackend:
    """Opens repositories of one backend, every one on the same location."""

    name: str
    outputs: Callable[[], AbstractAsyncContextManager[TaskOutputRepository]]
    graphs: Callable[[], AbstractAsyncContextManager[TaskGraphRepository]]
    models: Callable[[], AbstractAsyncContextManager[ModelRepository]]


def make_backend(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> StorageBackend:
    """The backend called ``name``; its location comes from the shared fixtures."""
    match name:
        case "memory":
            return StorageBackend(
                name=name,
                outputs=MemoryOutputRepository.open,
                graphs=MemoryGraphRepository.open,
                models=MemoryModelRepository.open,
            )
        case "filesystem":
            root = tmp_path / "store"
            return StorageBackend(
                name=name,
                outputs=partial(FilesystemOutputRepository.open, root),
                graphs=partial(FilesystemGraphRepository.open, root),
                models=partial(FilesystemModelRepository.open, root),
            )
        case "sqlite":
            path: Path = request.getfixturevalue("sqlite_path")
            return StorageBackend(
                name=name,
                outputs=partial(SqliteOutputRepository.open, path),
                graphs=partial(SqliteGraphRepository.open, path),
                models=partial(SqliteModelRepository.open, path),
            )
        case "postgres":
            dsn: str = request.getfixturevalue("postgres_dsn")
            return StorageBackend(
                name=name,
                outputs=partial(PostgresOutputRepository.open, dsn),
                graphs=partial(PostgresGraphRepository.open, dsn),
                models=partial(PostgresModelRepository.open, dsn),
            )
    raise ValueError(f"unknown storage backend {name!r}")
