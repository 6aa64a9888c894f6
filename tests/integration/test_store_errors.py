"""The durable stores translate their driver's errors once: what reaches an API caller or
a run's error names a reference to the log, never the driver's text."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from support.edge import leaked

from graphmesh.orchestrator.runs.durable.postgres import PostgresRunStore
from graphmesh.orchestrator.runs.durable.sqlite import SqliteRunStore
from graphmesh.orchestrator.runs.storable import RunStoreError, UnstorableValueError


@pytest.fixture(params=["postgres", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Any]:
    if request.param == "postgres":
        opened = PostgresRunStore.open(request.getfixturevalue("postgres_dsn"))
    else:
        opened = SqliteRunStore.open(tmp_path / "runs.sqlite")
    async with opened as started:
        yield started


def clean(error: Exception) -> None:
    text = str(error)
    assert "reference" in text and leaked(text) is None, text
    for driver in ("DETAIL", "CONTEXT", "0x00", "surrogate", "syntax"):
        assert driver not in text, text


async def test_a_value_the_database_refuses_is_unstorable_and_permanent(store: Any) -> None:
    bad = "a\x00b" if isinstance(store, PostgresRunStore) else "a\ud800b"
    with pytest.raises(UnstorableValueError) as caught:
        await store.fetch("get_run", {"run_id": bad, "tenant": "t"})
    clean(caught.value)
    with pytest.raises(UnstorableValueError):
        async with store.transaction() as tx:
            await tx.fetch("get_run", {"run_id": bad, "tenant": "t"})


async def test_any_other_database_error_is_a_run_store_error(store: Any) -> None:
    with pytest.raises(RunStoreError) as caught:
        await store.fetch("get_run", {"run_id": "r"})  # a parameter missing
    clean(caught.value)
