"""Network and server faults under the Postgres run store, on a real Postgres.

A run transaction whose commit is cut off on the way: the network breaks while COMMIT is
in flight, so the committer cannot know whether it went through. It asks the database
(``pg_xact_status`` of the transaction's id) and writes the transaction again only when it
did not commit: a start written twice would log a second TASK_STARTED and count a second
attempt. The break is made by a proxy between the service and the server
(``support.tcp_proxy``): after the server answered the COMMIT (it committed), or before the
COMMIT reached it (it rolled back).

Every pooled connection dropped by the server (as by a restart): the next read works, on a
fresh connection, instead of failing once per dead connection.
"""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from support.durable_tasks import CollectTask, create_executions_table, flow, record
from support.runs import events_upto
from support.tcp_proxy import CuttingProxy

from graphmesh.orchestrator.queue.postgres import PostgresJobQueue
from graphmesh.orchestrator.runs.durable.batch import Committer, Complete, Start
from graphmesh.orchestrator.runs.durable.plan import TASK_QUEUE
from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService, PostgresRunStore
from graphmesh.orchestrator.runs.records import RunEventKind, RunFilter

TENANT = "acme"


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param({"to_client": b"COMMIT\x00"}, id="committed-answer-lost"),
        pytest.param({"to_server": b"COMMIT"}, id="commit-never-arrived"),
    ],
)
async def test_a_cut_off_commit_is_written_exactly_once(
    postgres_dsn: str, cut: dict[str, bytes]
) -> None:
    await create_executions_table(postgres_dsn)
    graph = {
        "tasks": [record("a", postgres_dsn, value=1), record("b", postgres_dsn)],
        "dataflows": [flow("a", "b")],
    }
    async with (
        CuttingProxy(postgres_dsn) as proxy,
        PostgresRunService.open(proxy.dsn, run_tasks=False) as runs,
    ):
        store = runs.store
        assert isinstance(store, PostgresRunStore)  # its every connection goes through the proxy
        run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
        # Claimed past the proxy: the claim's background maintenance commits too.
        async with PostgresJobQueue.open(postgres_dsn) as direct:
            (job,) = await direct.claim([TASK_QUEUE])
        committer = Committer(store)
        was_cut = proxy.cut_when(**cut)
        started = await asyncio.wait_for(committer.submit(Start(job=job)), 20)
        assert was_cut.is_set()
        completed = await committer.submit(Complete(job=job, output={"value": 1}, provenance={}))
        await committer.close()
        after = await runs.get_run(run.run_id, tenant=TENANT)
        events = await events_upto(runs, after.run_id, after.last_seq, tenant=TENANT)
    assert started is True and completed is True
    assert [task.attempts for task in after.tasks if task.task_id == "a"] == [1]
    assert [(event.kind, event.task_id) for event in events] == [
        (RunEventKind.RUN_CREATED, ""),
        (RunEventKind.RUN_STARTED, ""),
        (RunEventKind.TASK_STARTED, "a"),
        (RunEventKind.TASK_COMPLETED, "a"),
    ]
    assert [event.seq for event in events] == list(range(1, after.last_seq + 1))


async def test_reads_work_at_once_after_the_server_dropped_every_connection(
    postgres_dsn: str,
) -> None:
    graph = {"tasks": [{"id": "a", "type": CollectTask.type}], "dataflows": []}
    async with PostgresRunService.open(postgres_dsn, run_tasks=False, max_pool_size=4) as runs:
        run = await runs.create_run(graph=graph, inputs={}, tenant=TENANT)
        # Reads at once leave idle connections in the pool (up to four: how many depends
        # on how the reads overlap); every one of them is then killed.
        await asyncio.gather(*(runs.get_run(run.run_id, tenant=TENANT) for _ in range(4)))
        assert await drop_connections(postgres_dsn) >= 1
        again = await runs.get_run(run.run_id, tenant=TENANT)
        listed = await runs.list_runs(RunFilter(tenant=TENANT))
    assert again.run_id == run.run_id
    assert [found.run_id for found in listed.items] == [run.run_id]


async def drop_connections(dsn: str) -> int:
    """Terminate every other connection to ``dsn``'s database, as a restart would."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as connection:
        cursor = await connection.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        row = await cursor.fetchone()
    assert row is not None
    return int(row[0])
