"""FairSlots: a semaphore shared fairly between tenants.

At most ``total`` holders at once, and at most ``per_tenant`` of them for one remote
tenant; the local user (tenant ``None``, embedded mode) is bounded by ``total`` only.
Waiters are served round-robin across tenants and in arrival order within one, so a
tenant with a hundred queued scripts gets every other free slot, not all of them, while
another tenant waits.

It is safe to use from several threads and event loops at once (one process-wide pool
serves whichever loop runs a task): the state is under a lock, and a waiter is woken on
its own loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter, OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field


@dataclass(eq=False, kw_only=True)
class _Waiter:
    tenant: str | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[None] = field(repr=False)
    granted: bool = False


class FairSlots:
    """``async with slots.hold(tenant): ...`` runs the block while holding one slot."""

    def __init__(self, *, total: int, per_tenant: int) -> None:
        if total < 1 or per_tenant < 1:
            raise ValueError("FairSlots needs at least one slot in all and per tenant")
        self.total = total
        self.per_tenant = per_tenant
        self._lock = threading.Lock()
        self._in_use = 0
        self._held: Counter[str | None] = Counter()
        self._waiting: OrderedDict[str | None, deque[_Waiter]] = OrderedDict()

    @asynccontextmanager
    async def hold(self, tenant: str | None) -> AsyncIterator[None]:
        await self.acquire(tenant)
        try:
            yield
        finally:
            self.release(tenant)

    async def acquire(self, tenant: str | None) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            if tenant not in self._waiting and self._admits(tenant):
                self._take(tenant)
                return
            waiter = _Waiter(tenant=tenant, loop=loop, future=loop.create_future())
            self._waiting.setdefault(tenant, deque()).append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            self._abandon(waiter)
            raise

    def release(self, tenant: str | None) -> None:
        with self._lock:
            self._give_back(tenant)
            self._grant_waiters()

    def holders(self, tenant: str | None) -> int:
        """How many slots ``tenant`` holds now."""
        with self._lock:
            return self._held[tenant]

    def waiting(self, tenant: str | None) -> int:
        """How many of ``tenant``'s acquisitions wait now."""
        with self._lock:
            return len(self._waiting.get(tenant, ()))

    # -- under the lock ----------------------------------------------------------------
    def _admits(self, tenant: str | None) -> bool:
        if self._in_use >= self.total:
            return False
        return tenant is None or self._held[tenant] < self.per_tenant

    def _take(self, tenant: str | None) -> None:
        self._in_use += 1
        self._held[tenant] += 1

    def _grant_waiters(self) -> None:
        while self._in_use < self.total and (waiter := self._next_waiter()) is not None:
            self._take(waiter.tenant)
            waiter.granted = True
            try:
                waiter.loop.call_soon_threadsafe(_wake, waiter.future)
            except RuntimeError:  # its loop is closed: nobody waits there any more
                self._give_back(waiter.tenant)

    def _next_waiter(self) -> _Waiter | None:
        """The first waiter of the first tenant, in round-robin order, that may take a
        slot; that tenant then goes to the back of the order."""
        for tenant, queue in self._waiting.items():
            if not self._admits(tenant):
                continue
            waiter = queue.popleft()
            if queue:
                self._waiting.move_to_end(tenant)
            else:
                del self._waiting[tenant]
            return waiter
        return None

    def _give_back(self, tenant: str | None) -> None:
        self._in_use -= 1
        self._held[tenant] -= 1
        if not self._held[tenant]:
            del self._held[tenant]

    def _abandon(self, waiter: _Waiter) -> None:
        """A waiter was cancelled: drop it from its queue, or hand on the slot it was
        granted in the meantime."""
        with self._lock:
            if waiter.granted:
                self._give_back(waiter.tenant)
                self._grant_waiters()
                return
            queue = self._waiting.get(waiter.tenant)
            if queue is not None and waiter in queue:
                queue.remove(waiter)
                if not queue:
                    del self._waiting[waiter.tenant]


def _wake(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
