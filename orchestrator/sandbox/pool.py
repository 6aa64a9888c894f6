"""SandboxPool: user JavaScript in sandbox processes, shared fairly between tenants.

::

    async with SandboxPool(SandboxSettings()) as pool:
        value = await pool.run(script, tenant="acme")

A script waits for a slot (:class:`~.fair.FairSlots`: the operator's worker count, a cap
per tenant, round-robin between tenants), then runs in a warm worker process, or a new
one. A worker serves one script at a time, each in a fresh V8 isolate, and goes back to
the idle list afterwards. A worker that dies (V8 out of memory, a crash, a CPU limit)
fails that one script with a permanent error and is replaced; a cancelled call, or one
past its timeout plus ``kill_grace_s``, kills its worker at once and frees the slot.

The pool needs no event loop of its own: the blocking work runs in its threads, so one
process-wide pool (:func:`shared_pool`) serves every loop in the process.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

from graphmesh.orchestrator.catalog.errors import JavaScriptSandboxError
from graphmesh.orchestrator.sandbox.errors import death_error, reply_error
from graphmesh.orchestrator.sandbox.fair import FairSlots
from graphmesh.orchestrator.sandbox.process import SandboxGone, SandboxProcess
from graphmesh.orchestrator.sandbox.result import decode_result
from graphmesh.orchestrator.sandbox.settings import SandboxLimits, SandboxSettings

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True, kw_only=True)
class Script:
    """One script to run: the code, its input as JSON text, and its limits."""

    code: str
    input_json: str
    limits: SandboxLimits


class SandboxPool:
    """Sandbox worker processes behind a fair queue; see the module docstring."""

    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings()
        workers = self.settings.workers
        self.slots = FairSlots(total=workers, per_tenant=self.settings.per_tenant)
        self._threads = ThreadPoolExecutor(2 * workers + 2, thread_name_prefix="js-sandbox")
        self._lock = threading.Lock()
        self._idle: list[SandboxProcess] = []
        self._busy: set[SandboxProcess] = set()
        self._starting = 0
        self._closed = False

    async def __aenter__(self) -> Self:
        await asyncio.get_running_loop().run_in_executor(self._threads, self.warm_up)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- running scripts ---------------------------------------------------------------
    async def run(self, script: Script, *, tenant: str | None) -> Any:
        """Run ``script`` for ``tenant`` (``None``: the local user) and return its
        result, decoded from JSON; raise a :class:`JavaScriptError` for what the script
        did, which is permanent (running it again would do the same)."""
        async with self.slots.hold(tenant):
            process = await self._checkout()
            reply = await self._call(process, script)
        return _result(reply, script, self.settings)

    async def _call(self, process: SandboxProcess, script: Script) -> dict[str, Any]:
        request = {
            "code": script.code,
            "input": script.input_json,
            "timeout_s": script.limits.timeout_s,
            "max_memory": script.limits.max_memory,
        }
        deadline = time.monotonic() + script.limits.timeout_s + self.settings.kill_grace_s
        try:
            reply = await asyncio.wrap_future(self._submit(process.call, request, deadline))
        except asyncio.CancelledError:
            process.kill()  # its thread sees the pipe close, reaps it and returns
            self._lost(process)
            raise
        except SandboxGone as gone:
            self._lost(process)
            raise death_error(gone, script.limits, process.pid) from None
        self._checkin(process, reply)
        return reply

    # -- processes ---------------------------------------------------------------------
    def warm_up(self) -> None:
        """Start workers until ``warm_workers`` are idle or starting (blocking)."""
        while self._claim_start():
            self._adopt(self._threads.submit(self._start))

    async def _checkout(self) -> SandboxProcess:
        with self._lock:
            if self._closed:
                raise JavaScriptSandboxError("the JavaScript sandbox pool is closed")
            if self._idle:
                process = self._idle.pop()
                self._busy.add(process)
                return process
            self._starting += 1
        started = self._submit(self._start)
        try:
            process = await asyncio.wrap_future(started)
        except asyncio.CancelledError:
            started.add_done_callback(self._adopt)
            raise
        with self._lock:
            self._busy.add(process)
        return process

    def _submit(self, work: Callable[..., T], *args: Any) -> Future[T]:
        try:
            return self._threads.submit(work, *args)
        except RuntimeError:  # its threads are gone: close() came first
            raise JavaScriptSandboxError("the JavaScript sandbox pool is closed") from None

    def _start(self) -> SandboxProcess:
        try:
            if self._closed:
                raise OSError("the pool is closed")
            return SandboxProcess.start(self.settings)
        except (OSError, SandboxGone) as error:
            log.warning("could not start a JavaScript sandbox: %s", error)
            raise JavaScriptSandboxError(
                "could not start a JavaScript sandbox; try again later", retryable=True
            ) from None
        finally:
            with self._lock:
                self._starting -= 1

    def _claim_start(self) -> bool:
        with self._lock:
            if self._closed or len(self._idle) + self._starting >= self.settings.warm_workers:
                return False
            self._starting += 1
            return True

    def _adopt(self, started: Future[SandboxProcess]) -> None:
        """A worker started for nobody (warm-up, or its caller was cancelled): idle."""
        if started.cancelled() or started.exception() is not None:
            return
        self._keep(started.result())

    def _checkin(self, process: SandboxProcess, reply: dict[str, Any]) -> None:
        process.tasks += 1
        with self._lock:
            self._busy.discard(process)
        if reply.get("retire") or process.tasks >= self.settings.tasks_per_worker:
            self._dispose(process)
            self._replace()
            return
        self._keep(process)

    def _keep(self, process: SandboxProcess) -> None:
        with self._lock:
            if not self._closed and len(self._idle) < self.settings.workers:
                self._idle.append(process)
                return
        self._dispose(process)

    def _dispose(self, process: SandboxProcess) -> None:
        """Let a worker no longer needed exit (in the background while the pool is open)."""
        try:
            self._threads.submit(process.retire)
        except RuntimeError:  # the pool closed: no threads any more
            process.close()

    def _lost(self, process: SandboxProcess) -> None:
        with self._lock:
            self._busy.discard(process)
        self._replace()

    def _replace(self) -> None:
        """Keep ``warm_workers`` ready after one left, started in the background."""
        if self._claim_start():
            try:
                self._threads.submit(self._start).add_done_callback(self._adopt)
            except RuntimeError:  # the pool closed meanwhile
                with self._lock:
                    self._starting -= 1

    def close(self) -> None:
        """Kill every worker, idle or busy (their calls fail), and start no more."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
            busy = list(self._busy)
        for process in busy:
            process.kill()
        for process in idle:
            process.close()
        # Queued work still runs, so every process handed to a thread is closed by it.
        self._threads.shutdown(wait=False)

    def counts(self) -> dict[str, int]:
        """Workers idle, busy and starting now (for tests and metrics)."""
        with self._lock:
            return {"idle": len(self._idle), "busy": len(self._busy), "starting": self._starting}

    def pids(self, *, busy: bool = False) -> set[int]:
        """The process ids of the busy workers (``busy``), or of all started ones."""
        with self._lock:
            found = {process.pid for process in self._busy}
            return found if busy else found | {process.pid for process in self._idle}


def _result(reply: dict[str, Any], script: Script, settings: SandboxSettings) -> Any:
    if "ok" not in reply:
        raise reply_error(reply, script.limits, settings)
    return decode_result(str(reply["ok"]))


_shared: SandboxPool | None = None
_shared_lock = threading.Lock()


def shared_pool() -> SandboxPool:
    """The process's pool, from ``GRAPHMESH_JS_*`` settings, made on first use and
    closed at exit: what a JavaScriptTask uses unless its runner's resources name one."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = SandboxPool(SandboxSettings())
            atexit.register(_shared.close)
        return _shared


@asynccontextmanager
async def serving_pool(settings: SandboxSettings | None = None) -> AsyncIterator[SandboxPool]:
    """Open a pool (workers warm) and make it the process's pool while the block runs:
    a server's composition root opens it at start-up, so bad ``GRAPHMESH_JS_*`` settings
    fail then, and its workers end with the server."""
    async with SandboxPool(settings) as pool:
        previous = set_shared_pool(pool)
        try:
            yield pool
        finally:
            set_shared_pool(previous)


def set_shared_pool(pool: SandboxPool | None) -> SandboxPool | None:
    """Make ``pool`` the process's pool (``None``: make one on next use); return the
    previous one, which the caller closes if it is done with it."""
    global _shared
    with _shared_lock:
        previous, _shared = _shared, pool
        return previous
