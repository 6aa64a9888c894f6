"""Dynamic batching: many concurrent single-item calls become one call of a batch function.

A model's forward pass over 32 inputs costs little more than over one, so the server gathers
what callers submit until it has ``max_batch_size`` items or ``max_delay`` seconds have passed
since the oldest arrived (or since the last batch ended, if later), runs the synchronous batch
function once in a worker thread, and hands each caller its own result. Batches run one after
another: while one runs, the next fills up, which is exactly when batching pays. With
``concurrency`` above one, that many batches run at once (on a GPU, or a CPU with cores to
spare).

``max_queue_size`` bounds the items waiting for a batch: beyond it ``submit`` raises
:class:`QueueFullError` at once, with an estimate of when to retry, instead of letting a
queue (and every caller's latency) grow without limit. ``on_batch`` sees every batch's size,
queue times and compute time (for metrics).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from types import TracebackType
from typing import Generic, Self, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class BatcherClosedError(RuntimeError):
    """The batcher was closed before this item could run."""


class QueueFullError(RuntimeError):
    """The queue holds ``max_queue_size`` items already; retry after ``retry_after`` s."""

    def __init__(self, queued: int, retry_after: float) -> None:
        self.queued = queued
        self.retry_after = retry_after
        super().__init__(f"{queued} requests are queued already; retry in {retry_after:.3f} s")


@dataclass(frozen=True, kw_only=True)
class BatchReport:
    """One batch as it ran: its items' time in the queue and the batch function's time."""

    size: int
    queue_seconds: tuple[float, ...]
    compute_seconds: float
    failed: bool


@dataclass(frozen=True, kw_only=True)
class BatchStats:
    """How the batcher has grouped its work so far."""

    batches: int = 0
    items: int = 0
    largest: int = 0


@dataclass(frozen=True, kw_only=True)
class _Pending(Generic[T, R]):
    item: T
    future: asyncio.Future[R]
    enqueued_at: float


class DynamicBatcher(Generic[T, R]):
    """Gathers submitted items into batches for a synchronous ``batch_fn``.

    ``batch_fn`` takes a list of items and returns one result per item, in order. If it
    raises, every caller in that batch gets the exception; a caller that gave up (was
    cancelled) is left out of later batches and never breaks the one it was in.
    Use it as an async context manager; ``aclose`` finishes queued work, then stops.
    """

    def __init__(
        self,
        batch_fn: Callable[[list[T]], Sequence[R]],
        *,
        max_batch_size: int = 32,
        max_delay: float = 0.005,
        executor: Executor | None = None,
        name: str = "batcher",
        max_queue_size: int | None = None,
        concurrency: int = 1,
        on_batch: Callable[[BatchReport], None] | None = None,
    ) -> None:
        if max_batch_size < 1 or max_delay < 0:
            raise ValueError("max_batch_size must be >= 1 and max_delay >= 0")
        if concurrency < 1 or (max_queue_size is not None and max_queue_size < 1):
            raise ValueError("concurrency and max_queue_size must be >= 1")
        self._batch_fn = batch_fn
        self._max_batch_size = max_batch_size
        self._max_delay = max_delay
        self._max_queue_size = max_queue_size
        self._concurrency = concurrency
        self._on_batch = on_batch
        self._owns_executor = executor is None
        self._executor = executor or ThreadPoolExecutor(concurrency, thread_name_prefix=name)
        self._queue: asyncio.Queue[_Pending[T, R] | None] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []
        self._closed = False
        self._stats = BatchStats()
        self._batch_seconds = 0.0  # moving average of the batch function's time

    @property
    def stats(self) -> BatchStats:
        """Batches run and items served so far."""
        return self._stats

    async def __aenter__(self) -> Self:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @property
    def queued(self) -> int:
        """Items waiting for a batch."""
        return self._queue.qsize()

    def start(self) -> None:
        """Start the gathering loops on the running event loop (idempotent)."""
        if self._closed:
            raise BatcherClosedError("the batcher is closed")
        if not self._workers:
            loop = asyncio.get_running_loop()
            self._workers = [loop.create_task(self._run()) for _ in range(self._concurrency)]
        elif any(worker.done() for worker in self._workers):
            raise BatcherClosedError("the batcher's loop has stopped")

    def retry_after(self) -> float:
        """Seconds until the queue has likely room again: the batches ahead, each taking
        what batches have taken lately, spread over the concurrent loops."""
        ahead = self._queue.qsize() / self._max_batch_size / self._concurrency
        return self._max_delay + max(self._batch_seconds, 0.001) * max(ahead, 1.0)

    async def submit(self, item: T) -> R:
        """Queue ``item`` for the next batch and wait for its result.

        Raises :class:`QueueFullError` when ``max_queue_size`` items wait already."""
        self.start()
        queued = self._queue.qsize()
        if self._max_queue_size is not None and queued >= self._max_queue_size:
            raise QueueFullError(queued, self.retry_after())
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._queue.put_nowait(_Pending(item=item, future=future, enqueued_at=loop.time()))
        return await future

    async def submit_many(self, items: Sequence[T]) -> list[R]:
        """Queue every item (all, or none when the queue lacks room for all) and wait for
        their results, in order. Cancelling the call drops the items not yet run."""
        if len(items) == 1:  # the common call, one text: no gather and its bookkeeping
            return [await self.submit(items[0])]
        self.start()
        queued = self._queue.qsize()
        if self._max_queue_size is not None and queued + len(items) > self._max_queue_size:
            raise QueueFullError(queued, self.retry_after())
        loop = asyncio.get_running_loop()
        now = loop.time()
        futures: list[asyncio.Future[R]] = []
        for item in items:
            future: asyncio.Future[R] = loop.create_future()
            self._queue.put_nowait(_Pending(item=item, future=future, enqueued_at=now))
            futures.append(future)
        try:
            return list(await asyncio.gather(*futures))
        finally:
            for future in futures:  # on cancellation or a failure, leave none behind
                future.cancel()

    async def aclose(self) -> None:
        """Run what is already queued, then stop the loops and the worker threads."""
        if self._closed:
            return
        self._closed = True
        if self._workers:
            for _ in self._workers:
                self._queue.put_nowait(None)
            await asyncio.gather(*self._workers)
        if self._owns_executor:
            self._executor.shutdown(wait=True)

    async def _run(self) -> None:
        stopping = False
        batch: list[_Pending[T, R]] = []
        loop = asyncio.get_running_loop()
        free_at = 0.0  # when this loop's last batch ended
        try:
            while not stopping:
                batch = []
                stopping = await self._collect(batch, free_at)
                await self._execute(batch)
                free_at = loop.time()
        except asyncio.CancelledError:
            # Event loop teardown: nobody will run the work left, so its callers must not
            # wait forever. (A normal stop leaves the other loops' close markers queued.)
            closed = BatcherClosedError("the batcher was stopped")
            for pending in batch:
                _reject(pending.future, closed)
            self._fail_queued(closed)
            raise

    async def _collect(self, batch: list[_Pending[T, R]], free_at: float) -> bool:
        """Wait for one item, then gather more until full or the delay is up: counted from
        the first item's arrival, or from when the last batch ended if that is later.

        Items that queued while a batch ran wait ``max_delay`` more for the callers that
        batch just answered: a closed loop of callers (each sends again once answered)
        otherwise splits into groups that never share a batch again. Fills ``batch`` in
        place and returns whether the close sentinel was reached.
        """
        first = await self._queue.get()
        if first is None:
            return True
        batch.append(first)
        deadline = max(first.enqueued_at, free_at) + self._max_delay
        while len(batch) < self._max_batch_size:
            try:
                async with asyncio.timeout_at(deadline):
                    pending = await self._queue.get()
            except TimeoutError:
                if self._queue.empty():
                    break
                pending = self._queue.get_nowait()  # already waiting: no reason to leave it
            if pending is None:
                return True
            batch.append(pending)
        return False

    async def _execute(self, batch: list[_Pending[T, R]]) -> None:
        live = [pending for pending in batch if not pending.future.done()]
        if not live:
            return
        items = [pending.item for pending in live]
        self._record(len(items))
        loop = asyncio.get_running_loop()
        started = loop.time()
        failed = True
        try:
            results = await loop.run_in_executor(self._executor, self._batch_fn, items)
            if len(results) != len(items):
                raise RuntimeError(f"batch function gave {len(results)} results for {len(items)}")
            failed = False
        except Exception as exc:
            for pending in live:
                _reject(pending.future, exc)
            return
        finally:
            self._report(live, started, loop.time(), failed)
        for pending, result in zip(live, results, strict=True):
            _resolve(pending.future, result)

    def _report(
        self, live: list[_Pending[T, R]], started: float, ended: float, failed: bool
    ) -> None:
        compute = ended - started
        self._batch_seconds = (
            compute if not self._batch_seconds else (0.8 * self._batch_seconds + 0.2 * compute)
        )
        if self._on_batch is not None:
            self._on_batch(
                BatchReport(
                    size=len(live),
                    queue_seconds=tuple(started - p.enqueued_at for p in live),
                    compute_seconds=compute,
                    failed=failed,
                )
            )

    def _record(self, size: int) -> None:
        old = self._stats
        self._stats = BatchStats(
            batches=old.batches + 1, items=old.items + size, largest=max(old.largest, size)
        )

    def _fail_queued(self, error: BatcherClosedError) -> None:
        while not self._queue.empty():
            pending = self._queue.get_nowait()
            if pending is not None:
                _reject(pending.future, error)


def _resolve(future: asyncio.Future[R], result: R) -> None:
    if not future.done():  # a cancelled caller has given up on its result
        future.set_result(result)


def _reject(future: asyncio.Future[R], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
