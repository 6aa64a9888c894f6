"""What the environment gives a run worker: lease, grace, job TTL, tracing and the policy."""

from __future__ import annotations

import pytest

from graphmesh.orchestrator.main import DurableSettings
from graphmesh.orchestrator.policy import POLICY_RESOURCE, PolicyMiddleware, TaskPolicy


def test_worker_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GRAPHMESH_JOB_TTL_S", "3600")
    monkeypatch.setenv("GRAPHMESH_WORKER_LEASE_S", "12")
    monkeypatch.delenv("GRAPHMESH_POLICY_FILE", raising=False)
    worker = DurableSettings().worker()
    assert worker.queue.finished_ttl_s == 3600 and worker.queue.lease_s == 12
    assert isinstance(worker.resources[POLICY_RESOURCE], TaskPolicy)
    assert any(isinstance(layer, PolicyMiddleware) for layer in worker.middleware)


def test_finished_jobs_are_kept_unless_a_ttl_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GRAPHMESH_JOB_TTL_S", raising=False)
    assert DurableSettings().worker().queue.finished_ttl_s is None
