"""Waking an idle loop when work may have arrived: one protocol, one in-process waker.

The queue's workers wait on one for new jobs (of their queues), the outbox relay for new
events. Call :meth:`Wakeup.clear` before looking for work, then :meth:`Wakeup.wait`: a
notification in between still wakes the waiter. A spurious wakeup only costs an empty look.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Protocol


class Wakeup(Protocol):
    def clear(self) -> None: ...

    async def wait(self, timeout_s: float) -> bool:
        """Wait until notified or ``timeout_s`` passes; ``True`` when notified."""
        ...


class LocalWakeup:
    """A :class:`Wakeup` notified from this process; ``queues`` says which queues' jobs it
    waits for (none: it waits for anything, e.g. new events)."""

    def __init__(self, queues: Iterable[str] = ()) -> None:
        self.queues = frozenset(queues)
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake the waiter (or the next one to wait)."""
        self._event.set()

    def clear(self) -> None:
        """Forget earlier notifications; call before looking for work."""
        self._event.clear()

    async def wait(self, timeout_s: float) -> bool:
        try:
            async with asyncio.timeout(timeout_s):
                await self._event.wait()
        except TimeoutError:
            return False
        return True
