"""The orchestrator service, assembled: settings, store, queue and workers, outbox relay,
model client and gRPC server, in one place.

``graphmesh serve orchestrator`` parses its options and calls :func:`serve`; tests and
embedders open the parts with :func:`open_store`. A process that only runs tasks (scale
workers apart from the API)::

    GRAPHMESH_DATABASE_URL=postgresql://... python -m graphmesh.orchestrator.main

Settings (environment, prefix ``GRAPHMESH_``): ``DATABASE_URL`` (a libpq URL or
conninfo for Postgres; ``sqlite:///PATH`` or a path for SQLite), ``WORKER_CONCURRENCY``,
``WORKER_LEASE_S`` (how long the tasks of a worker cut off from the database wait before
they run elsewhere; a worker that died has its tasks rescued within seconds through its
session), ``GRACE_PERIOD`` (seconds from SIGTERM to exit: most of it for running tasks to
finish, the rest to hand back those still running; see ``queue.worker.finish_share``),
``RUN_TASKS`` (``false``: this process serves the API only), ``JOB_TTL_S`` (delete
finished job rows older than this; default: keep them), ``TASK_MODULES``
(comma-separated modules to import, which register task types beyond the catalog) and
``NATS_URL`` (publish run events to this NATS JetStream server, or comma-separated
servers of one cluster; see :mod:`graphmesh.orchestrator.events.publisher`).
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import signal
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager, AsyncExitStack
from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

import graphmesh.orchestrator.catalog  # noqa: F401  (registers the task catalog)
from graphmesh.orchestrator.ai.client import ModelClient
from graphmesh.orchestrator.ai.usage import default_prices
from graphmesh.orchestrator.api.server import OrchestratorServer
from graphmesh.orchestrator.api.web.settings import ViewerSettings
from graphmesh.orchestrator.events.outbox import Outbox
from graphmesh.orchestrator.events.postgres import PostgresOutbox
from graphmesh.orchestrator.events.publisher import nats_servers, publish_run_events
from graphmesh.orchestrator.events.sqlite import SqliteOutbox
from graphmesh.orchestrator.models import ModelSettings
from graphmesh.orchestrator.policy import (
    POLICY_RESOURCE,
    PolicyMiddleware,
    TaskPolicy,
    load_policy,
)
from graphmesh.orchestrator.queue.worker import WorkerOptions, finish_share
from graphmesh.orchestrator.runner.tracing import tracing_middleware
from graphmesh.orchestrator.runs.durable.postgres import PostgresRunService, PostgresRunStore
from graphmesh.orchestrator.runs.durable.service import DurableRunService
from graphmesh.orchestrator.runs.durable.sqlite import SqliteRunService
from graphmesh.orchestrator.runs.durable.worker import RunWorker, WorkerSettings
from graphmesh.orchestrator.runs.memory import MemoryRunService
from graphmesh.orchestrator.runs.records import RunService
from graphmesh.orchestrator.runtime import tune_gc
from graphmesh.orchestrator.sandbox import serving_pool
from graphmesh.orchestrator.storage.base import TaskGraphRepository
from graphmesh.orchestrator.storage.memory import MemoryGraphRepository
from graphmesh.orchestrator.storage.postgres import PostgresGraphRepository
from graphmesh.orchestrator.storage.sqlite import SqliteGraphRepository
from graphmesh.services.kit.draining import Drainable
from graphmesh.services.kit.metrics import metrics_endpoint
from graphmesh.services.kit.settings import ServiceSettings
from graphmesh.services.kit.telemetry import client_interceptors, tracing

SQLITE_PREFIX = "sqlite:///"
DEFAULT_SQLITE = "graphmesh.sqlite"
STORES = ("memory", "sqlite", "postgres")
# Opens in-process models (``--local-models``): given by the caller, since the engine may
# not import the model server.
ModelsOpener = Callable[[], AbstractAsyncContextManager[ModelClient]]


class DurableSettings(BaseSettings):
    """Where durable runs live and how this process runs their tasks."""

    model_config = SettingsConfigDict(env_prefix="GRAPHMESH_", extra="ignore")

    database_url: SecretStr | None = None
    run_tasks: bool = True
    worker_concurrency: int = Field(default=64, ge=1)
    worker_lease_s: float = Field(default=30.0, gt=0)
    grace_period: float = Field(default=10.0, ge=0)
    job_ttl_s: float | None = Field(default=None, gt=0)
    task_modules: str = ""
    nats_url: str | None = None

    def worker(
        self, models: ModelClient | None = None, policy: TaskPolicy | None = None
    ) -> WorkerSettings:
        """The run worker's settings (heartbeats at a third of the lease); ``policy``: the
        operator's task policy (default: ``GRAPHMESH_POLICY_FILE``, else deny-by-default),
        checked again as each task runs."""
        policy = load_policy() if policy is None else policy
        options = WorkerOptions(
            lease_s=self.worker_lease_s,
            shutdown_grace_s=finish_share(self.grace_period),
            finished_ttl_s=self.job_ttl_s,
        )
        return WorkerSettings(
            concurrency=self.worker_concurrency,
            models=models,
            middleware=[*tracing_middleware(), PolicyMiddleware(policy)],
            resources={POLICY_RESOURCE: policy},
            queue=options,
        )

    def import_task_modules(self) -> None:
        for name in filter(None, (part.strip() for part in self.task_modules.split(","))):
            importlib.import_module(name)

    def url(self) -> str | None:
        return None if self.database_url is None else self.database_url.get_secret_value()


def sqlite_path(url: str | None) -> Path:
    """The database file of a ``sqlite:///PATH`` URL or a plain path (default
    ``graphmesh.sqlite`` in the working directory)."""
    if not url:
        return Path(DEFAULT_SQLITE)
    return Path(url.removeprefix(SQLITE_PREFIX))


def check_store(store: str, settings: DurableSettings) -> None:
    """ValueError naming what is wrong with ``store`` under ``settings``."""
    if store not in STORES:
        raise ValueError(f"unknown store {store!r}; choose one of {', '.join(STORES)}")
    if store == "memory" and settings.nats_url:
        raise ValueError(
            "GRAPHMESH_NATS_URL is set, but run events are published from a durable store: "
            "pass --store sqlite or --store postgres"
        )
    if store == "postgres" and not settings.url():
        raise ValueError("--store postgres needs GRAPHMESH_DATABASE_URL")
    if settings.nats_url:
        nats_servers(settings.nats_url)  # a malformed URL fails before anything opens


async def open_store(
    stack: AsyncExitStack,
    store: str,
    settings: DurableSettings,
    models: ModelClient | None = None,
    policy: TaskPolicy | None = None,
) -> tuple[RunService, TaskGraphRepository]:
    """The RunService for ``store`` (``memory``, ``sqlite`` or ``postgres``) and the graph
    repository beside it, closed with ``stack``. A durable store also starts its run
    worker (unless ``run_tasks`` is off) and, with ``nats_url``, the outbox relay."""
    if store != "memory":
        return await open_durable(stack, store, settings, models, policy)
    check_store(store, settings)
    settings.import_task_modules()
    policy = load_policy() if policy is None else policy
    runs: RunService = await stack.enter_async_context(
        MemoryRunService(
            models,
            middleware=[*tracing_middleware(), PolicyMiddleware(policy)],
            resources={POLICY_RESOURCE: policy},
        )
    )
    return runs, await stack.enter_async_context(MemoryGraphRepository.open())


async def open_durable(
    stack: AsyncExitStack,
    store: str,
    settings: DurableSettings,
    models: ModelClient | None = None,
    policy: TaskPolicy | None = None,
) -> tuple[DurableRunService, TaskGraphRepository]:
    """The durable RunService (``store`` ``postgres`` or ``sqlite``) and the graph
    repository of the same database, closed with ``stack``."""
    check_store(store, settings)
    settings.import_task_modules()
    worker = settings.worker(models, policy)
    url = settings.url()
    if store == "postgres":
        assert url is not None  # check_store
        runs: DurableRunService = await stack.enter_async_context(
            PostgresRunService.open(url, run_tasks=settings.run_tasks, worker=worker)
        )
        graphs: TaskGraphRepository = await stack.enter_async_context(
            PostgresGraphRepository.open(url)
        )
    else:
        path = sqlite_path(url)
        runs = await stack.enter_async_context(
            SqliteRunService.open(path, run_tasks=settings.run_tasks, worker=worker)
        )
        graphs = await stack.enter_async_context(SqliteGraphRepository.open(path))
    if settings.nats_url:
        outbox = await stack.enter_async_context(open_outbox(store, url))
        await stack.enter_async_context(
            publish_run_events(outbox, runs.store.signals, settings.nats_url)
        )
    return runs, graphs


async def open_models(
    stack: AsyncExitStack, local_models: ModelsOpener | None = None
) -> ModelClient:
    """``local_models()`` when given (``--local-models``), else model servers and gateways
    over gRPC by ``GRAPHMESH_MODEL_ROUTES`` (with no routes, AI tasks fail naming the
    variable). A bad ``GRAPHMESH_MODEL_PRICES_FILE`` stops the start, not a task."""
    default_prices()
    if local_models is not None:
        return await stack.enter_async_context(local_models())
    return await stack.enter_async_context(ModelSettings().client(client_interceptors()))


async def serve(
    service: ServiceSettings,
    *,
    store: str = "memory",
    tokens: Mapping[str, str] | None,
    viewer: ViewerSettings | None = None,
    local_models: ModelsOpener | None = None,
    durable: DurableSettings | None = None,
) -> None:
    """Serve the OrchestratorService until SIGTERM/SIGINT: tracing, metrics, JavaScript
    sandboxes, models, the run store (with its worker and event relay) and the gRPC server
    (with the viewer), stopped in reverse order within the grace period. ``tokens``:
    bearer token → tenant, ``None`` for no auth. Prints the addresses once listening."""
    durable = DurableSettings() if durable is None else durable
    check_store(store, durable)
    async with contextlib.AsyncExitStack() as stack:
        stack.enter_context(tracing("graphmesh-orchestrator"))  # OTEL_* decide; off by default
        metrics = await stack.enter_async_context(metrics_endpoint(service.metrics_listen))
        await stack.enter_async_context(serving_pool())  # JavaScript sandboxes, warm
        models = await open_models(stack, local_models)
        policy = load_policy()  # GRAPHMESH_POLICY_FILE; without one, deny-by-default
        runs, graphs = await open_store(stack, store, durable, models, policy)
        server = await stack.enter_async_context(
            OrchestratorServer(
                runs,
                graphs,
                policy=policy,
                tokens=tokens,
                address=service.listen,
                tls=service.tls(),
                grace_period=service.grace_period,
                viewer=viewer if viewer is not None else ViewerSettings(),
            )
        )
        auth = "off" if tokens is None else f"{len(tokens)} token(s)"
        published = "to NATS" if durable.nats_url else "off"
        scraped = f", metrics on {metrics}" if metrics else ""
        print(
            f"graphmesh orchestrator listening on {server.target} "
            f"(store {store}, auth {auth}, events {published}{scraped})"
        )
        if server.viewer is not None:
            print(f"graphmesh viewer on {server.viewer.url}")
        sys.stdout.flush()
        tune_gc()
        await server.serve_until_signal([runs] if isinstance(runs, Drainable) else [])


def open_outbox(store: str, url: str | None) -> AbstractAsyncContextManager[Outbox]:
    """The outbox (the run events table) of the ``store`` database at ``url``."""
    if store == "postgres" and url:
        return PostgresOutbox.open(url)
    return SqliteOutbox.open(sqlite_path(url))


async def run_worker_until_signal(settings: DurableSettings) -> None:
    """Run tasks of the Postgres runs until SIGTERM or SIGINT, then stop claiming at once
    and exit within the grace period (running tasks finish or are handed back)."""
    settings.import_task_modules()
    url = settings.url()
    if not url:
        raise SystemExit("set GRAPHMESH_DATABASE_URL to the Postgres database of the runs")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with AsyncExitStack() as stack:
        stack.enter_context(tracing("graphmesh-worker"))  # OTEL_* decide; off by default
        store = await stack.enter_async_context(PostgresRunStore.open(url))
        models = await stack.enter_async_context(ModelSettings().client(client_interceptors()))
        worker = await stack.enter_async_context(
            RunWorker(store, store.queue, settings.worker(models))
        )
        if settings.nats_url:
            outbox = await stack.enter_async_context(open_outbox("postgres", url))
            await stack.enter_async_context(
                publish_run_events(outbox, store.signals, settings.nats_url)
            )
        print("graphmesh run worker started", flush=True)
        tune_gc()
        await stop.wait()
        await worker.drain(finish_share(settings.grace_period))


def main() -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_worker_until_signal(DurableSettings()))


if __name__ == "__main__":
    main()
