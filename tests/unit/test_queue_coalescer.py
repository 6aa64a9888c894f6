"""Concurrent single calls become batches; a bad item fails only its own call."""

from __future__ import annotations

import asyncio

import pytest

from graphmesh.orchestrator.queue.coalesce import Coalescer


class Doubler:
    """A batch function that records its batches and refuses negative numbers."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(items)
        await asyncio.sleep(0.01)
        if any(item < 0 for item in items):
            raise ValueError("negative")
        return [item * 2 for item in items]


async def test_calls_made_while_a_batch_is_written_share_the_next_batch() -> None:
    doubler = Doubler()
    coalescer = Coalescer(doubler)
    results = await asyncio.gather(*(coalescer.submit(n) for n in range(5)))
    assert results == [0, 2, 4, 6, 8]
    assert doubler.batches == [[0, 1, 2, 3, 4]]
    assert await coalescer.submit(7) == 14
    assert doubler.batches[-1] == [7]


async def test_a_failing_item_fails_only_its_own_call() -> None:
    coalescer = Coalescer(Doubler())
    results = await asyncio.gather(
        coalescer.submit(1), coalescer.submit(-1), coalescer.submit(3), return_exceptions=True
    )
    assert results[0] == 2 and results[2] == 6
    assert isinstance(results[1], ValueError)


async def test_a_cancelled_caller_does_not_break_the_batch() -> None:
    coalescer = Coalescer(Doubler())
    doomed = asyncio.create_task(coalescer.submit(1))
    survivor = asyncio.create_task(coalescer.submit(2))
    await asyncio.sleep(0)
    doomed.cancel()
    assert await survivor == 4
    with pytest.raises(asyncio.CancelledError):
        await doomed
    await coalescer.close()
