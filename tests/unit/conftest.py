"""Fixtures for the engine-core unit tests (task types live in ``tasks.py``)."""

from __future__ import annotations

import pytest
from tasks import Recorder, Signals

from graphmesh.orchestrator.storage.memory import MemoryOutputRepository


@pytest.fixture
def signals() -> Signals:
    return Signals()


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def repository() -> MemoryOutputRepository:
    return MemoryOutputRepository()
