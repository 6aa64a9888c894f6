"""The RunService contract: every implementation runs this same suite.

To add a backend, add one entry to ``SERVICES``: a function ``(request, tmp_path)`` that
returns an async context manager yielding the open service, e.g. ::

    "postgres": lambda request, tmp_path: DurableRunService.open(
        request.getfixturevalue("postgres_dsn")
    ),

Tasks come from ``support.run_tasks`` (driven by graph JSON only, so they also run in
workers).
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import pytest
from support.run_tasks import FlakyTask, flow, journal, sleep_task

from graphmesh.orchestrator.ai.testing import FakeModelClient
from graphmesh.orchestrator.ai.usage import TaskUsage
from graphmesh.orchestrator.errors import GraphValidationError
from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService
from graphmesh.orchestrator.runs.durable.sqlite import SqliteRunService
from graphmesh.orchestrator.runs.durable.worker import WorkerSettings
from graphmesh.orchestrator.runs.memory import MemoryRunService
from graphmesh.orchestrator.runs.records import (
    InvalidPageTokenError,
    RunEventKind,
    RunEventRecord,
    RunFilter,
    RunNotFoundError,
    RunRecord,
    RunService,
    RunState,
    RunStateError,
)
from graphmesh.orchestrator.task.base import TaskStatus

ServiceFactory = Callable[[pytest.FixtureRequest, Path], AbstractAsyncContextManager[RunService]]
SERVICES: dict[str, ServiceFactory] = {
    "memory": lambda request, tmp_path: MemoryRunService(FakeModelClient()),
    "postgres": lambda request, tmp_path: PostgresRunService.open(
        request.getfixturevalue("postgres_dsn"), worker=WorkerSettings(models=FakeModelClient())
    ),
    "sqlite": lambda request, tmp_path: SqliteRunService.open(
        tmp_path / "runs.sqlite", worker=WorkerSettings(models=FakeModelClient())
    ),
}
TENANT = "acme"
assert FlakyTask.type == "RunTestFlaky"  # importing support.run_tasks registers the types


@pytest.fixture(params=sorted(SERVICES))
async def runs(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[RunService]:
    async with SERVICES[request.param](request, tmp_path) as service:
        yield service


def chain(*tasks: dict[str, Any]) -> dict[str, Any]:
    """Graph JSON of tasks wired one after the other through their ``value`` ports."""
    flows = [flow(a["id"], b["id"]) for a, b in itertools.pairwise(tasks)]
    return {"tasks": list(tasks), "dataflows": flows}


def flaky(task_id: str, flag: Path, log: Path) -> dict[str, Any]:
    return {
        "id": task_id,
        "type": "RunTestFlaky",
        "config": {"unless_exists": str(flag), "journal": str(log)},
    }


async def events_of(runs: RunService, run_id: str, from_seq: int = 0) -> list[RunEventRecord]:
    return [event async for event in runs.watch_run(run_id, tenant=TENANT, from_seq=from_seq)]


async def finished(runs: RunService, run_id: str) -> RunRecord:
    await events_of(runs, run_id)
    return await runs.get_run(run_id, tenant=TENANT)


async def until(runs: RunService, run_id: str, kind: RunEventKind, task_id: str = "") -> None:
    async for event in runs.watch_run(run_id, tenant=TENANT):
        if event.kind == kind and event.task_id == task_id:
            return
    raise AssertionError(f"the run ended without {kind} {task_id}")


async def test_a_run_completes_with_an_ordered_event_log(runs: RunService) -> None:
    graph = chain(sleep_task("a", value="hi"), sleep_task("b"))
    created = await runs.create_run(graph=graph, inputs={}, tenant=TENANT, labels={"k": "v"})
    assert created.status in (RunState.PENDING, RunState.RUNNING)
    assert created.labels == {"k": "v"} and created.graph["tasks"][0]["id"] == "a"
    run = await finished(runs, created.run_id)
    assert run.status == RunState.COMPLETED and run.error is None
    assert [(t.task_id, t.status, t.attempts) for t in run.tasks] == [
        ("a", TaskStatus.COMPLETED, 1),
        ("b", TaskStatus.COMPLETED, 1),
    ]
    events = await events_of(runs, run.run_id)
    assert [e.seq for e in events] == list(range(1, len(events) + 1)) and run.last_seq == len(
        events
    )
    kinds = [(e.kind, e.task_id) for e in events if e.kind != RunEventKind.TASK_PROGRESS]
    assert kinds == [
        (RunEventKind.RUN_CREATED, ""),
        (RunEventKind.RUN_STARTED, ""),
        (RunEventKind.TASK_STARTED, "a"),
        (RunEventKind.TASK_COMPLETED, "a"),
        (RunEventKind.TASK_STARTED, "b"),
        (RunEventKind.TASK_COMPLETED, "b"),
        (RunEventKind.RUN_COMPLETED, ""),
    ]
    assert events[-1].run_status == RunState.COMPLETED
    assert await runs.get_task_output(run.run_id, "b", tenant=TENANT) == {"value": "hi"}


async def test_usage_is_stored_per_task_and_summed_per_run(runs: RunService) -> None:
    # FakeModelClient counts words as tokens; gpt-4o-mini has a list price, hf: models none.
    summary = {"model": "openai:gpt-4o-mini", "text": "one two three"}
    embedding = {"model": "hf:minilm", "text": "four five"}
    graph = {
        "tasks": [
            {"id": "sum", "type": "TextSummaryTask", "defaults": summary},
            {"id": "emb", "type": "TextEmbeddingTask", "defaults": embedding},
            sleep_task("plain"),
        ],
        "dataflows": [],
    }
    created = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
    run = await finished(runs, created.run_id)
    assert run.status == RunState.COMPLETED, run.error
    usage = {task.task_id: task.usage for task in run.tasks}
    cost = (3 * 0.15 + 4 * 0.6) / 1e6
    assert usage["sum"].input_tokens == 3 and usage["sum"].output_tokens == 4
    assert usage["sum"].cost_usd == pytest.approx(cost)
    assert usage["emb"] == TaskUsage(input_tokens=2)
    assert usage["plain"] == TaskUsage()
    assert (run.usage.input_tokens, run.usage.output_tokens) == (5, 4)
    assert run.usage.cost_usd == pytest.approx(cost)
    events = await events_of(runs, run.run_id)
    completed = {e.task_id: e.details for e in events if e.kind == RunEventKind.TASK_COMPLETED}
    assert completed["sum"] is not None and completed["sum"]["usage"]["input_tokens"] == 3
    assert not (completed["plain"] or {}).get("usage")


async def test_tasks_run_as_the_tenant_of_their_run(runs: RunService) -> None:
    graph = {"tasks": [{"id": "who", "type": "RunTestTenant"}], "dataflows": []}
    created = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
    run = await finished(runs, created.run_id)
    assert run.status == RunState.COMPLETED
    assert await runs.get_task_output(run.run_id, "who", tenant=TENANT) == {"tenant": TENANT}


async def test_outputs_of_unknown_tasks_and_runs_are_not_found(runs: RunService) -> None:
    run = await finished(
        runs, (await runs.create_run(graph=chain(sleep_task("a")), inputs={}, tenant=TENANT)).run_id
    )
    with pytest.raises(RunNotFoundError):
        await runs.get_task_output(run.run_id, "nope", tenant=TENANT)
    with pytest.raises(RunNotFoundError):
        await runs.get_run("no-such-run", tenant=TENANT)
    with pytest.raises(RunNotFoundError):
        await events_of(runs, "no-such-run")


async def test_a_task_without_output_yet_is_a_state_error(runs: RunService) -> None:
    run = await runs.create_run(graph=chain(sleep_task("a", 30)), inputs={}, tenant=TENANT)
    with pytest.raises(RunStateError):
        await runs.get_task_output(run.run_id, "a", tenant=TENANT)
    await runs.cancel_run(run.run_id, tenant=TENANT)


async def test_an_invalid_graph_is_rejected_naming_task_and_port(runs: RunService) -> None:
    graph = chain(sleep_task("a"), sleep_task("b"))
    graph["dataflows"][0]["target_port"] = "nope"
    with pytest.raises(GraphValidationError) as caught:
        await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
    assert [(i.task_id, i.port) for i in caught.value.issues] == [("b", "nope")]
    with pytest.raises(GraphValidationError) as unknown:
        await runs.create_run(
            graph={"tasks": [{"id": "x", "type": "Nope"}]}, inputs={}, tenant=TENANT
        )
    assert unknown.value.issues[0].task_id == "x"
    page = await runs.list_runs(RunFilter(tenant=TENANT))
    assert page.items == []


async def test_inputs_reach_root_ports_or_one_task(runs: RunService) -> None:
    graph = {"tasks": [sleep_task("a"), sleep_task("b")], "dataflows": []}
    run = await runs.create_run(graph=graph, inputs={"value": 1, "b.value": 2}, tenant=TENANT)
    await finished(runs, run.run_id)
    assert await runs.get_task_output(run.run_id, "a", tenant=TENANT) == {"value": 1}
    assert await runs.get_task_output(run.run_id, "b", tenant=TENANT) == {"value": 2}
    with pytest.raises(GraphValidationError) as caught:
        await runs.create_run(graph=graph, inputs={"typo": 1}, tenant=TENANT)
    assert caught.value.issues[0].port == "typo"


async def test_an_idempotency_key_returns_the_first_run_of_that_tenant(runs: RunService) -> None:
    graph = chain(sleep_task("a"))
    first = await runs.create_run(graph=graph, inputs={}, tenant=TENANT, idempotency_key="k1")
    again = await runs.create_run(graph=graph, inputs={}, tenant=TENANT, idempotency_key="k1")
    other = await runs.create_run(graph=graph, inputs={}, tenant="other", idempotency_key="k1")
    assert again.run_id == first.run_id and again.deduplicated and not first.deduplicated
    assert other.run_id != first.run_id and not other.deduplicated
    assert first.idempotency_key == "k1"


async def test_tenants_never_see_each_others_runs(runs: RunService) -> None:
    run = await runs.create_run(graph=chain(sleep_task("a")), inputs={}, tenant=TENANT)
    await finished(runs, run.run_id)
    calls = [
        runs.get_run(run.run_id, tenant="other"),
        runs.cancel_run(run.run_id, tenant="other"),
        runs.resume_run(run.run_id, tenant="other"),
        runs.get_task_output(run.run_id, "a", tenant="other"),
    ]
    for call in calls:
        with pytest.raises(RunNotFoundError):
            await call
    with pytest.raises(RunNotFoundError):
        [event async for event in runs.watch_run(run.run_id, tenant="other")]
    assert (await runs.list_runs(RunFilter(tenant="other"))).items == []


async def test_watch_replays_after_a_seq_then_streams_live_and_ends(runs: RunService) -> None:
    graph = chain(sleep_task("a"), sleep_task("gate", 0.3), sleep_task("c"))
    run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
    await until(runs, run.run_id, RunEventKind.TASK_STARTED, "gate")
    replay = await events_of(runs, run.run_id, from_seq=2)  # live from here to the end
    assert replay[0].seq == 3 and replay[-1].kind == RunEventKind.RUN_COMPLETED
    assert [e.seq for e in replay] == list(range(3, replay[-1].seq + 1))
    assert any(e.kind == RunEventKind.TASK_COMPLETED and e.task_id == "c" for e in replay)
    assert await events_of(runs, run.run_id, from_seq=replay[-1].seq) == []


async def test_cancel_aborts_running_tasks_and_skips_pending_ones(
    runs: RunService, tmp_path: Path
) -> None:
    log = tmp_path / "journal"
    graph = chain(sleep_task("slow", 30, journal=str(log)), sleep_task("after"))
    run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
    await until(runs, run.run_id, RunEventKind.TASK_STARTED, "slow")
    cancelling = await runs.cancel_run(run.run_id, tenant=TENANT, reason="operator said so")
    assert cancelling.status in (RunState.CANCELLING, RunState.CANCELLED)
    done = await finished(runs, run.run_id)
    assert done.status == RunState.CANCELLED and done.error == "operator said so"
    states = {t.task_id: t.status for t in done.tasks}
    assert states == {"slow": TaskStatus.FAILED, "after": TaskStatus.SKIPPED}
    assert journal(log) == ["ran:slow", "cancelled:slow"]
    kinds = [e.kind for e in await events_of(runs, run.run_id)]
    assert RunEventKind.RUN_CANCELLING in kinds and kinds[-1] == RunEventKind.RUN_CANCELLED
    with pytest.raises(RunStateError):
        await runs.cancel_run(run.run_id, tenant=TENANT)


async def test_resume_reruns_only_what_did_not_complete(runs: RunService, tmp_path: Path) -> None:
    log, flag = tmp_path / "journal", tmp_path / "flag"
    graph = chain(sleep_task("first", value=7, journal=str(log)), flaky("flaky", flag, log))
    run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
    failed = await finished(runs, run.run_id)
    assert failed.status == RunState.FAILED and "flag file is missing" in (failed.error or "")
    with pytest.raises(RunStateError):
        await runs.get_task_output(run.run_id, "flaky", tenant=TENANT)
    flag.touch()
    resumed = await runs.resume_run(run.run_id, tenant=TENANT)
    assert resumed.status in (RunState.PENDING, RunState.RUNNING)
    done = await finished(runs, run.run_id)
    assert done.status == RunState.COMPLETED and done.error is None
    assert journal(log) == ["ran:first", "ran:flaky", "ran:flaky"]
    assert {t.task_id: t.attempts for t in done.tasks} == {"first": 1, "flaky": 2}
    assert await runs.get_task_output(run.run_id, "flaky", tenant=TENANT) == {"value": 7}
    kinds = [e.kind for e in await events_of(runs, run.run_id)]
    assert kinds.count(RunEventKind.RUN_RESUMED) == 1 and kinds[-1] == RunEventKind.RUN_COMPLETED


async def test_only_failed_or_cancelled_runs_resume(runs: RunService) -> None:
    running = await runs.create_run(graph=chain(sleep_task("a", 30)), inputs={}, tenant=TENANT)
    with pytest.raises(RunStateError):
        await runs.resume_run(running.run_id, tenant=TENANT)
    await runs.cancel_run(running.run_id, tenant=TENANT)
    done = await runs.create_run(graph=chain(sleep_task("a")), inputs={}, tenant=TENANT)
    await finished(runs, done.run_id)
    with pytest.raises(RunStateError):
        await runs.resume_run(done.run_id, tenant=TENANT)


async def test_a_resumed_cancelled_run_completes(runs: RunService, tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    graph = chain(sleep_task("a", value=1), sleep_task("b", until_exists=str(flag)))
    run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
    await until(runs, run.run_id, RunEventKind.TASK_STARTED, "b")
    await runs.cancel_run(run.run_id, tenant=TENANT)
    assert (await finished(runs, run.run_id)).status == RunState.CANCELLED
    flag.touch()
    await runs.resume_run(run.run_id, tenant=TENANT)
    done = await finished(runs, run.run_id)
    assert done.status == RunState.COMPLETED
    assert await runs.get_task_output(run.run_id, "b", tenant=TENANT) == {"value": 1}


async def test_a_run_past_its_timeout_fails(runs: RunService) -> None:
    run = await runs.create_run(
        graph=chain(sleep_task("a", 30)), inputs={}, tenant=TENANT, timeout=0.2
    )
    done = await finished(runs, run.run_id)
    assert done.status == RunState.FAILED and "timed out" in (done.error or "")


async def test_list_filters_and_pages_newest_first(runs: RunService) -> None:
    created = []
    for index in range(5):
        labels = {"team": "a" if index % 2 == 0 else "b"}
        run = await runs.create_run(
            graph=chain(sleep_task("a")), inputs={}, tenant=TENANT, labels=labels
        )
        created.append(run.run_id)
        await finished(runs, run.run_id)
    await runs.create_run(graph=chain(sleep_task("a")), inputs={}, tenant="other")
    seen, token = [], ""
    while True:
        page = await runs.list_runs(RunFilter(tenant=TENANT), page_size=2, page_token=token)
        assert len(page.items) <= 2
        seen += [run.run_id for run in page.items]
        token = page.next_page_token
        if not token:
            break
    assert seen == created[::-1]
    team_a = await runs.list_runs(RunFilter(tenant=TENANT, labels={"team": "a"}))
    assert [run.run_id for run in team_a.items] == created[::-2]
    completed = RunFilter(tenant=TENANT, statuses=frozenset({RunState.COMPLETED}))
    assert len((await runs.list_runs(completed)).items) == 5
    failed = RunFilter(tenant=TENANT, statuses=frozenset({RunState.FAILED}))
    assert (await runs.list_runs(failed)).items == []
    with pytest.raises(InvalidPageTokenError):
        await runs.list_runs(RunFilter(tenant=TENANT), page_token="not-a-token")


async def test_pages_are_stable_under_inserts(runs: RunService) -> None:
    before = [
        (await runs.create_run(graph=chain(sleep_task("a")), inputs={}, tenant=TENANT)).run_id
        for _ in range(5)
    ]
    first = await runs.list_runs(RunFilter(tenant=TENANT), page_size=2)
    seen = [run.run_id for run in first.items]
    token = first.next_page_token
    # Created while paging: newer than every page, so no later page shifts or repeats.
    await runs.create_run(graph=chain(sleep_task("a")), inputs={}, tenant=TENANT)
    while token:
        page = await runs.list_runs(RunFilter(tenant=TENANT), page_size=2, page_token=token)
        seen += [run.run_id for run in page.items]
        token = page.next_page_token
    assert seen == before[::-1]


async def test_page_tokens_are_bound_to_tenant_and_filter(runs: RunService) -> None:
    for tenant in (TENANT, "other"):
        for _ in range(3):
            await runs.create_run(graph=chain(sleep_task("a")), inputs={}, tenant=tenant)
    token = (await runs.list_runs(RunFilter(tenant=TENANT), page_size=1)).next_page_token
    assert token
    with pytest.raises(InvalidPageTokenError):
        await runs.list_runs(RunFilter(tenant="other"), page_size=1, page_token=token)
    labelled = RunFilter(tenant=TENANT, labels={"team": "a"})
    with pytest.raises(InvalidPageTokenError):
        await runs.list_runs(labelled, page_size=1, page_token=token)
    body, _, mac = token.partition(".")
    edited = body[:-1] + ("A" if body[-1] != "A" else "B") + "." + mac
    for forged in (edited, body, token + "x", "x" * 5000):
        with pytest.raises(InvalidPageTokenError):
            await runs.list_runs(RunFilter(tenant=TENANT), page_size=1, page_token=forged)


async def test_tenant_usage_counts_unfinished_runs_and_their_open_tasks(
    runs: RunService, tmp_path: Path
) -> None:
    flag = tmp_path / "go"
    waiting = sleep_task("wait", until_exists=str(flag))
    graph = {"tasks": [waiting, sleep_task("b")], "dataflows": [flow("wait", "b")]}
    run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT, idempotency_key="k1")
    done = await runs.create_run(graph=chain(sleep_task("a")), inputs={}, tenant=TENANT)
    await finished(runs, done.run_id)
    usage = await runs.tenant_usage(TENANT, idempotency_key="k1")
    assert (usage.active_runs, usage.open_tasks, usage.existing_run) == (1, 2, run.run_id)
    assert (await runs.tenant_usage(TENANT, idempotency_key="k2")).existing_run is None
    assert (await runs.tenant_usage("other")).active_runs == 0
    flag.touch()
    await finished(runs, run.run_id)
    assert (await runs.tenant_usage(TENANT)).active_runs == 0


@pytest.mark.parametrize(
    ("kind", "where"),
    [
        ("nul", "outputs.value"),
        ("nul_key", 'outputs.value["k\\u0000"]'),
        ("surrogate", "outputs.value"),
        ("nan", "outputs.value"),
        ("infinity_in_list", "outputs.value[0]"),
        ("deep", "outputs.value"),
    ],
)
async def test_an_output_no_store_can_keep_fails_its_task_once(
    runs: RunService, tmp_path: Path, kind: str, where: str
) -> None:
    log = tmp_path / "journal"
    graph = {
        "tasks": [
            {
                "id": "out",
                "type": "RunTestUnstorable",
                "config": {"kind": kind, "journal": str(log)},
            },
            sleep_task("after"),
        ],
        "dataflows": [flow("out", "after")],
    }
    run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
    done = await finished(runs, run.run_id)
    assert done.status == RunState.FAILED
    assert journal(log) == ["ran:out"]  # once: no retry could store it
    error = done.error or ""
    assert f"its output cannot be stored: {where}" in error
    for leaked in ("DETAIL", "CONTEXT", "psycopg", "Traceback", "\x00"):
        assert leaked not in error
    states = {task.task_id: task.status for task in done.tasks}
    assert states == {"out": TaskStatus.FAILED, "after": TaskStatus.SKIPPED}
