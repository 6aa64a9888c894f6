"""Backends for the storage contract suites.

``storage`` runs a test once per backend (memory, filesystem, sqlite, postgres);
``persistent_storage`` once per backend that keeps data (all but memory). Either is a
:class:`~support.storage.StorageBackend` that opens any number of repositories on one
location (directory, database file or Postgres database), so a test can reopen and read
back. ``outputs``, ``graphs`` and ``models`` are one open repository of ``storage``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from support.storage import BACKENDS, PERSISTENT_BACKENDS, StorageBackend, make_backend

from graphmesh.orchestrator.storage.base import (
    ModelRepository,
    TaskGraphRepository,
    TaskOutputRepository,
)


@pytest.fixture(params=BACKENDS)
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> StorageBackend:
    """Each backend in turn."""
    return make_backend(request.param, request, tmp_path)


@pytest.fixture(params=PERSISTENT_BACKENDS)
def persistent_storage(request: pytest.FixtureRequest, tmp_path: Path) -> StorageBackend:
    """Each backend that keeps its data after its repositories close."""
    return make_backend(request.param, request, tmp_path)


@pytest.fixture
async def outputs(storage: StorageBackend) -> AsyncIterator[TaskOutputRepository]:
    """An open output repository of the backend under test."""
    async with storage.outputs() as repository:
        yield repository


@pytest.fixture
async def graphs(storage: StorageBackend) -> AsyncIterator[TaskGraphRepository]:
    """An open graph repository of the backend under test."""
    async with storage.graphs() as repository:
        yield repository


@pytest.fixture
async def models(storage: StorageBackend) -> AsyncIterator[ModelRepository]:
    """An open model repository of the backend under test."""
    async with storage.models() as repository:
        yield repository
