"""FairSlots: the total and per-tenant caps, round-robin between tenants, cancellation."""

from __future__ import annotations

import asyncio
import threading

import pytest

from graphmesh.orchestrator.sandbox import FairSlots


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def holding(
    slots: FairSlots, tenant: str | None, order: list[str], gate: asyncio.Event
) -> None:
    async with slots.hold(tenant):
        order.append(str(tenant))
        await gate.wait()


async def test_a_tenant_holds_at_most_its_share_and_another_gets_the_rest() -> None:
    slots = FairSlots(total=3, per_tenant=2)
    gate, order = asyncio.Event(), []
    hogs = [asyncio.create_task(holding(slots, "a", order, gate)) for _ in range(5)]
    await settle()
    assert (slots.holders("a"), slots.waiting("a")) == (2, 3)
    other = asyncio.create_task(holding(slots, "b", order, gate))
    await settle()
    assert slots.holders("b") == 1, "b starts at once although a has work queued"
    gate.set()
    await asyncio.gather(*hogs, other)
    assert order.count("a") == 5


async def test_waiting_tenants_take_turns() -> None:
    slots = FairSlots(total=1, per_tenant=1)
    order: list[str] = []
    release = asyncio.Event()
    first = asyncio.create_task(holding(slots, "a", order, release))
    await settle()
    gates = {name: asyncio.Event() for name in "ab"}
    for gate in gates.values():
        gate.set()
    queued = [asyncio.create_task(holding(slots, "a", order, gates["a"])) for _ in range(3)]
    await settle()
    queued += [asyncio.create_task(holding(slots, "b", order, gates["b"])) for _ in range(3)]
    await settle()
    release.set()
    await asyncio.gather(first, *queued)
    assert order == ["a", "a", "b", "a", "b", "a", "b"]


async def test_the_local_user_is_bounded_by_the_total_only() -> None:
    slots = FairSlots(total=3, per_tenant=1)
    gate, order = asyncio.Event(), []
    local = [asyncio.create_task(holding(slots, None, order, gate)) for _ in range(4)]
    await settle()
    assert (slots.holders(None), slots.waiting(None)) == (3, 1)
    gate.set()
    await asyncio.gather(*local)


async def test_a_cancelled_waiter_leaves_the_queue() -> None:
    slots = FairSlots(total=1, per_tenant=1)
    gate, order = asyncio.Event(), []
    holder = asyncio.create_task(holding(slots, "a", order, gate))
    await settle()
    waiter = asyncio.create_task(holding(slots, "b", order, gate))
    await settle()
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert slots.waiting("b") == 0
    gate.set()
    await holder
    assert slots.holders("a") == slots.holders("b") == 0


async def test_a_slot_granted_to_a_cancelled_waiter_passes_on() -> None:
    slots = FairSlots(total=1, per_tenant=1)
    await slots.acquire("a")
    waiter = asyncio.create_task(slots.acquire("b"))
    other = asyncio.create_task(slots.acquire("c"))
    await settle()
    slots.release("a")  # granted to b, whose wake-up is still on its way
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    await asyncio.wait_for(other, 5)
    assert slots.holders("c") == 1 and slots.holders("b") == 0


def test_waiters_on_other_event_loops_are_woken_on_their_own() -> None:
    slots = FairSlots(total=1, per_tenant=1)
    taken, done = threading.Event(), []

    def elsewhere() -> None:
        async def wait_for_slot() -> None:
            taken.wait()
            async with slots.hold("b"):
                done.append("b")

        asyncio.run(wait_for_slot())

    async def hold_then_release() -> None:
        await slots.acquire("a")
        taken.set()
        await asyncio.sleep(0.05)
        slots.release("a")

    thread = threading.Thread(target=elsewhere)
    thread.start()
    asyncio.run(hold_then_release())
    thread.join(timeout=10)
    assert done == ["b"]


def test_a_slot_count_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        FairSlots(total=0, per_tenant=1)
