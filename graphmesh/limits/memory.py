"""The in-memory limit store: one process, the reference behaviour for the others.

Every method runs without an ``await`` between reading and writing, so each is atomic
under asyncio. Limits hold within this process only.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Self

from graphmesh.limits.store import Take, Taken, next_slot


@dataclass
class _Live:
    expiry: float
    cost: int


@dataclass
class _KeyState:
    blocked_until: float | None = None
    permits: dict[str, _Live] = field(default_factory=dict)  # by token

    def live(self) -> list[tuple[float, int]]:
        return [(permit.expiry, permit.cost) for permit in self.permits.values()]


class MemoryLimitStore:
    """Permits and blocks in a dict, timed by ``clock`` (POSIX seconds)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._keys: dict[tuple[str, str], _KeyState] = {}

    @classmethod
    @asynccontextmanager
    async def open(cls) -> AsyncIterator[Self]:
        """Yield a fresh store; nothing to release, this exists for symmetry."""
        yield cls()

    async def take(
        self, *, limiter: str, key: str, limit: int, hold: float, token: str, cost: int = 1
    ) -> Taken:
        """Grant ``token`` if the live permits leave room for ``cost`` and the key is unblocked."""
        now = self._clock()
        state = self._live(limiter, key, now)
        next_at = next_slot(state.blocked_until, state.live(), limit, cost)
        if next_at > now:
            return Taken(granted=False, at=now, until=next_at)
        state.permits[token] = _Live(expiry=now + hold, cost=cost)
        return Taken(granted=True, at=now, until=now + hold)

    async def take_all(self, *, key: str, takes: Sequence[Take]) -> list[Taken]:
        """Every permit of ``takes``, or the first refusal and none."""
        now = self._clock()
        for take in takes:
            state = self._live(take.limiter, key, now)
            next_at = next_slot(state.blocked_until, state.live(), take.limit, take.cost)
            if next_at > now:
                return [Taken(granted=False, at=now, until=next_at)]
        for take in takes:
            state = self._keys[(take.limiter, key)]
            state.permits[take.token] = _Live(expiry=now + take.hold, cost=take.cost)
        return [Taken(granted=True, at=now, until=now + take.hold) for take in takes]

    async def drop(self, *, limiter: str, key: str, token: str) -> None:
        """Delete a permit, if it exists."""
        state = self._keys.get((limiter, key))
        if state is not None:
            state.permits.pop(token, None)

    async def extend(self, *, limiter: str, key: str, token: str, hold: float) -> float | None:
        """Push a live permit's expiry to ``hold`` seconds from now."""
        now = self._clock()
        permit = self._live(limiter, key, now).permits.get(token)
        if permit is None:
            return None
        permit.expiry = now + hold
        return permit.expiry

    async def charge(self, *, limiter: str, key: str, token: str, cost: int) -> bool:
        """Make a live permit cost ``cost``."""
        permit = self._live(limiter, key, self._clock()).permits.get(token)
        if permit is not None:
            permit.cost = cost
        return permit is not None

    async def next_available(self, *, limiter: str, key: str, limit: int) -> float:
        """When ``take`` could next grant; now if it could now."""
        now = self._clock()
        state = self._live(limiter, key, now)
        return max(now, next_slot(state.blocked_until, state.live(), limit))

    async def block(self, *, limiter: str, key: str, until: float) -> None:
        """Grant nothing before ``until`` (keeping a later block)."""
        state = self._keys.setdefault((limiter, key), _KeyState())
        current = state.blocked_until
        state.blocked_until = until if current is None else max(current, until)

    async def clear(self, *, limiter: str, key: str) -> None:
        """Forget the key."""
        self._keys.pop((limiter, key), None)

    def _live(self, limiter: str, key: str, now: float) -> _KeyState:
        """The key's state with expired permits removed."""
        state = self._keys.setdefault((limiter, key), _KeyState())
        state.permits = {token: p for token, p in state.permits.items() if p.expiry > now}
        return state
