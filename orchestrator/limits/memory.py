"""The in-memory limit store: one process, the reference behaviour for the others.

Every method runs without an ``await`` between reading and writing, so each is atomic
under asyncio. Limits hold within this process only.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Self

from graphmesh.orchestrator.limits.store import Taken, next_slot


@dataclass
class _KeyState:
    blocked_until: float | None = None
    expiries: dict[str, float] = field(default_factory=dict)  # token -> expiry


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

    async def take(self, *, limiter: str, key: str, limit: int, hold: float, token: str) -> Taken:
        """Grant ``token`` if fewer than ``limit`` permits are live and the key is unblocked."""
        now = self._clock()
        state = self._live(limiter, key, now)
        next_at = next_slot(state.blocked_until, state.expiries.values(), limit)
        if next_at > now:
            return Taken(granted=False, at=now, until=next_at)
        state.expiries[token] = now + hold
        return Taken(granted=True, at=now, until=now + hold)

    async def drop(self, *, limiter: str, key: str, token: str) -> None:
        """Delete a permit, if it exists."""
        state = self._keys.get((limiter, key))
        if state is not None:
            state.expiries.pop(token, None)

    async def extend(self, *, limiter: str, key: str, token: str, hold: float) -> float | None:
        """Push a live permit's expiry to ``hold`` seconds from now."""
        now = self._clock()
        state = self._live(limiter, key, now)
        if token not in state.expiries:
            return None
        state.expiries[token] = now + hold
        return now + hold

    async def next_available(self, *, limiter: str, key: str, limit: int) -> float:
        """When ``take`` could next grant; now if it could now."""
        now = self._clock()
        state = self._live(limiter, key, now)
        return max(now, next_slot(state.blocked_until, state.expiries.values(), limit))

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
        state.expiries = {token: at for token, at in state.expiries.items() if at > now}
        return state
