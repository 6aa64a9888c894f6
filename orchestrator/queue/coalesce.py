"""Turns concurrent single calls into batch calls.

A service that enqueues one job per request makes many small inserts at once; each costs
a round trip and a commit. :class:`Coalescer` hands every call made while its batches are
being written to the next batch, so under load the batches grow and the commits stay few,
and when idle a call is written at once, alone. With ``max_in_flight`` above one, a call
that finds a writer free starts its own batch instead of waiting for the one in flight:
lower latency at a steady trickle of calls, for more (smaller) statements.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Coalescer(Generic[In, Out]):
    """Runs ``run_batch`` over the items of concurrent :meth:`submit` calls. A failing
    batch is retried item by item, so one bad item fails only its own call."""

    def __init__(
        self,
        run_batch: Callable[[list[In]], Awaitable[list[Out]]],
        *,
        max_in_flight: int = 1,
    ) -> None:
        if max_in_flight < 1:
            raise ValueError(f"max_in_flight must be at least 1, got {max_in_flight}")
        self._run_batch = run_batch
        self._max_in_flight = max_in_flight
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._writers: set[asyncio.Task[None]] = set()

    async def submit(self, item: In) -> Out:
        """The result of ``item``, written with whatever else is waiting."""
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if len(self._writers) < self._max_in_flight:
            writer = asyncio.create_task(self._write(), name="graphmesh-coalescer")
            self._writers.add(writer)
            writer.add_done_callback(self._writers.discard)
        return await future

    async def close(self) -> None:
        """Wait for the batches already submitted."""
        while self._writers:
            await asyncio.gather(*self._writers)

    async def _write(self) -> None:
        while self._waiting:
            batch, self._waiting = self._waiting, []
            try:
                results = await self._run_batch([item for item, _ in batch])
            except Exception as error:
                if len(batch) == 1:
                    _reject(batch[0][1], error)
                else:
                    await self._one_by_one(batch)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _resolve(future, result)

    async def _one_by_one(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        for item, future in batch:
            try:
                (result,) = await self._run_batch([item])
            except Exception as error:
                _reject(future, error)
            else:
                _resolve(future, result)


def _resolve(future: asyncio.Future[Out], result: Out) -> None:
    if not future.done():  # a cancelled caller no longer waits for its result
        future.set_result(result)


def _reject(future: asyncio.Future[Out], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)
