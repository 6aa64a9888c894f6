"""Turns concurrent single calls into batch calls.

A service that enqueues one job per request makes many small inserts at once; each costs
a round trip and a commit. :class:`Coalescer` hands every call made while a batch is being
written to the next batch, so under load the batches grow and the commits stay few, and
when idle a call is written at once, alone.
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

    def __init__(self, run_batch: Callable[[list[In]], Awaitable[list[Out]]]) -> None:
        self._run_batch = run_batch
        self._waiting: list[tuple[In, asyncio.Future[Out]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def submit(self, item: In) -> Out:
        """The result of ``item``, written with whatever else is waiting."""
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write(), name="graphmesh-coalescer")
        return await future

    async def close(self) -> None:
        """Wait for the batches already submitted."""
        if self._writer is not None:
            await self._writer

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
