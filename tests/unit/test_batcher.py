"""DynamicBatcher with a plain Python batch function: grouping, ordering, errors, lifecycle."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from graphmesh.model_server.batcher import BatcherClosedError, BatchStats, DynamicBatcher


class Doubler:
    """A batch function that records every batch it is given; runs in the worker thread."""

    def __init__(self, *, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.threads: set[str] = set()
        self.started = threading.Event()
        self._gate = gate

    def __call__(self, items: list[int]) -> list[int]:
        self.batches.append(list(items))
        self.threads.add(threading.current_thread().name)
        self.started.set()
        if self._gate is not None:
            self._gate.wait(timeout=5)
        return [item * 2 for item in items]


async def test_concurrent_submits_fill_batches_in_submission_order() -> None:
    fn = Doubler()
    async with DynamicBatcher(fn, max_batch_size=4, max_delay=0.05) as batcher:
        results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [i * 2 for i in range(10)]
    assert fn.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert batcher.stats == BatchStats(batches=3, items=10, largest=4)


async def test_batch_function_runs_off_the_event_loop_thread() -> None:
    fn = Doubler()
    async with DynamicBatcher(fn, name="doubler") as batcher:
        assert await batcher.submit(21) == 42
    assert threading.current_thread().name not in fn.threads
    assert all(name.startswith("doubler") for name in fn.threads)


async def test_items_arriving_within_the_delay_share_a_batch() -> None:
    fn = Doubler()
    async with DynamicBatcher(fn, max_batch_size=100, max_delay=0.3) as batcher:
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.02)
        second = asyncio.ensure_future(batcher.submit(2))
        assert list(await asyncio.gather(first, second)) == [2, 4]
    assert fn.batches == [[1, 2]]


async def test_a_full_batch_runs_without_waiting_for_the_delay() -> None:
    fn = Doubler()
    async with DynamicBatcher(fn, max_batch_size=3, max_delay=30) as batcher:
        started = time.monotonic()
        assert await asyncio.gather(*(batcher.submit(i) for i in range(3))) == [0, 2, 4]
        assert time.monotonic() - started < 5
    assert fn.batches == [[0, 1, 2]]


async def test_items_queued_during_a_batch_form_the_next_one() -> None:
    gate = threading.Event()
    fn = Doubler(gate=gate)
    async with DynamicBatcher(fn, max_batch_size=16, max_delay=0) as batcher:
        first = asyncio.ensure_future(batcher.submit(0))
        assert await asyncio.to_thread(fn.started.wait, 5)  # the first batch runs, blocked
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 6)]
        await asyncio.sleep(0.05)
        gate.set()
        assert await first == 0
        assert await asyncio.gather(*rest) == [2, 4, 6, 8, 10]
    assert fn.batches == [[0], [1, 2, 3, 4, 5]]


async def test_an_error_reaches_every_caller_in_the_batch_and_the_next_batch_works() -> None:
    calls: list[list[int]] = []

    def failing_once(items: list[int]) -> list[int]:
        calls.append(items)
        if len(calls) == 1:
            raise ValueError("model exploded")
        return items

    async with DynamicBatcher(failing_once, max_batch_size=8, max_delay=0.05) as batcher:
        outcomes = await asyncio.gather(
            *(batcher.submit(i) for i in range(3)), return_exceptions=True
        )
        assert [type(o) for o in outcomes] == [ValueError] * 3
        assert all(str(o) == "model exploded" for o in outcomes)
        assert await batcher.submit(7) == 7


async def test_a_wrong_number_of_results_fails_the_batch() -> None:
    def first_only(items: list[int]) -> list[int]:
        return items[:1]

    async with DynamicBatcher(first_only, max_delay=0.05) as batcher:
        outcomes = await asyncio.gather(
            batcher.submit(1), batcher.submit(2), return_exceptions=True
        )
    assert all(isinstance(o, RuntimeError) and "2" in str(o) for o in outcomes)


async def test_a_caller_cancelled_before_its_batch_is_left_out() -> None:
    fn = Doubler()
    async with DynamicBatcher(fn, max_batch_size=8, max_delay=0.2) as batcher:
        keep = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 3)]
        dropped = asyncio.ensure_future(batcher.submit(2))
        await asyncio.sleep(0.02)
        dropped.cancel()
        assert await asyncio.gather(*keep) == [2, 6]
    assert dropped.cancelled()
    assert fn.batches == [[1, 3]]


async def test_a_caller_cancelled_mid_batch_does_not_break_the_others() -> None:
    gate = threading.Event()
    fn = Doubler(gate=gate)
    async with DynamicBatcher(fn, max_batch_size=8, max_delay=0.02) as batcher:
        tasks = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
        assert await asyncio.to_thread(fn.started.wait, 5)
        tasks[1].cancel()
        gate.set()
        assert await tasks[0] == 0
        assert await tasks[2] == 4
        assert await batcher.submit(5) == 10
    assert tasks[1].cancelled()


async def test_close_finishes_queued_work_then_refuses_new_items() -> None:
    fn = Doubler()
    batcher = DynamicBatcher(fn, max_batch_size=2, max_delay=0.5)
    pending = [asyncio.ensure_future(batcher.submit(i)) for i in range(3)]
    await asyncio.sleep(0)  # let the submits enqueue
    await batcher.aclose()
    assert [task.result() for task in pending] == [0, 2, 4]
    with pytest.raises(BatcherClosedError):
        await batcher.submit(9)


async def test_invalid_limits_are_rejected() -> None:
    with pytest.raises(ValueError, match="max_batch_size"):
        DynamicBatcher(Doubler(), max_batch_size=0)


# -- queue limits, concurrency, reports ---------------------------------------------------
async def test_beyond_max_queue_size_submit_fails_at_once_with_a_retry_delay() -> None:
    from graphmesh.model_server.batcher import QueueFullError

    gate = threading.Event()
    fn = Doubler(gate=gate)
    async with DynamicBatcher(fn, max_batch_size=2, max_delay=0.0, max_queue_size=3) as batcher:
        running = asyncio.ensure_future(batcher.submit(0))
        await asyncio.to_thread(fn.started.wait, 5)  # the worker is busy with item 0
        queued = [asyncio.ensure_future(batcher.submit(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFullError) as caught:
            await batcher.submit(4)
        assert caught.value.queued == 3 and caught.value.retry_after > 0
        with pytest.raises(QueueFullError):
            await batcher.submit_many([5])
        gate.set()
        assert await asyncio.gather(running, *queued) == [0, 2, 4, 6]


async def test_submit_many_is_all_or_nothing_and_keeps_order() -> None:
    from graphmesh.model_server.batcher import QueueFullError

    fn = Doubler()
    async with DynamicBatcher(fn, max_batch_size=3, max_delay=0.01, max_queue_size=4) as batcher:
        assert await batcher.submit_many([1, 2, 3, 4]) == [2, 4, 6, 8]
        with pytest.raises(QueueFullError):
            await batcher.submit_many([1, 2, 3, 4, 5])
    assert sum(len(b) for b in fn.batches) == 4


async def test_a_cancelled_submit_many_leaves_no_items_to_run() -> None:
    gate = threading.Event()
    fn = Doubler(gate=gate)
    async with DynamicBatcher(fn, max_batch_size=1, max_delay=0.0) as batcher:
        first = asyncio.ensure_future(batcher.submit(100))
        await asyncio.to_thread(fn.started.wait, 5)
        many = asyncio.ensure_future(batcher.submit_many([1, 2, 3]))
        await asyncio.sleep(0.01)
        many.cancel()
        gate.set()
        assert await first == 200
    assert fn.batches == [[100]]


@pytest.mark.parametrize("items", [[7], [7, 8]])
async def test_a_cancelled_submit_many_of_one_or_more_items_is_left_out(items: list[int]) -> None:
    # One item takes a shorter path than several (no gather): both drop a cancelled caller.
    fn = Doubler()
    async with DynamicBatcher(fn, max_batch_size=8, max_delay=0.2) as batcher:
        keep = asyncio.ensure_future(batcher.submit_many([1]))
        dropped = asyncio.ensure_future(batcher.submit_many(items))
        await asyncio.sleep(0.02)
        dropped.cancel()
        assert await keep == [2]
    assert dropped.cancelled()
    assert fn.batches == [[1]]


async def test_callers_that_send_again_once_answered_come_together_in_full_batches() -> None:
    # One caller first, three just after: the first batch holds one while the three queue.
    # The first caller's next item arrives as that batch ends; the queued three wait up to
    # the delay for it (counted from when the model became free), so the batches after it
    # are full instead of alternating 3, 1, 3, 1.
    sizes: list[int] = []

    def slow(items: list[int]) -> list[int]:
        sizes.append(len(items))
        time.sleep(0.1)
        return items

    async with DynamicBatcher(slow, max_batch_size=4, max_delay=0.03) as batcher:

        async def caller(start: float) -> None:
            await asyncio.sleep(start)
            for item in range(5):
                assert await batcher.submit(item) == item
                await asyncio.sleep(0.005)  # the answer's way back, and the next request's

        await asyncio.gather(caller(0.0), *(caller(0.05) for _ in range(3)))
    assert sizes[0] == 1
    assert sizes[1:5] == [4, 4, 4, 4], sizes


async def test_concurrency_runs_batches_at_the_same_time() -> None:
    barrier = threading.Barrier(2, timeout=5)

    def meet(items: list[int]) -> list[int]:
        barrier.wait()  # only returns when two batches run at once
        return items

    async with DynamicBatcher(meet, max_batch_size=1, max_delay=0.0, concurrency=2) as batcher:
        assert await asyncio.gather(batcher.submit(1), batcher.submit(2)) == [1, 2]


async def test_every_batch_is_reported_with_queue_and_compute_times() -> None:
    from graphmesh.model_server.batcher import BatchReport

    reports: list[BatchReport] = []

    def slow(items: list[int]) -> list[int]:
        time.sleep(0.02)
        return items

    async with DynamicBatcher(slow, max_batch_size=4, max_delay=0.01, on_batch=reports.append) as b:
        await asyncio.gather(*(b.submit(i) for i in range(6)))
    assert [r.size for r in reports] == [4, 2]
    assert all(r.compute_seconds >= 0.02 and not r.failed for r in reports)
    assert all(len(r.queue_seconds) == r.size for r in reports)
    assert reports[1].queue_seconds[0] >= 0.02  # waited while the first batch ran
