"""Where limiters keep their state: live permits and a retry-after time per (limiter, key).

Rate and concurrency limits are one algorithm over this state. A permit is *live* until its
expiry; a new one is granted when fewer than ``limit`` are live and the key is not blocked.
A rate limiter's permits expire one window after their grant and are never released early,
so "fewer than N live" means "fewer than N grants in the last window" (a sliding-window
log); a concurrency limiter's permits expire at the end of their lease, or are deleted on
release. Each backend makes ``take`` atomic per key: memory by running without an
``await``, SQLite under the database write lock, Postgres under the key row's lock. Each
reads its clock only once it holds that lock, so grants on one key are totally ordered by
their ``granted_at``.

Times are POSIX seconds by the store's own clock; the Postgres store uses the database
clock, so processes on hosts with skewed clocks still agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True, kw_only=True)
class Taken:
    """The store's answer to ``take``, decided at ``at``: when granted, ``until`` is the new
    permit's expiry; when refused, the time the next permit may be taken."""

    granted: bool
    at: float
    until: float


class LimitStore(Protocol):
    """Live permits and retry-after times, per ``(limiter, key)``. ``limiter`` names one
    limiter; limiters sharing a store must have distinct names."""

    async def take(self, *, limiter: str, key: str, limit: int, hold: float, token: str) -> Taken:
        """Atomically: grant permit ``token`` for ``hold`` seconds if fewer than ``limit``
        permits are live and the key is not blocked."""
        ...

    async def drop(self, *, limiter: str, key: str, token: str) -> None:
        """Delete a permit (a no-op if it is gone)."""
        ...

    async def extend(self, *, limiter: str, key: str, token: str, hold: float) -> float | None:
        """Make a live permit expire ``hold`` seconds from now; its new expiry, or ``None``
        if it had already expired or been dropped."""
        ...

    async def next_available(self, *, limiter: str, key: str, limit: int) -> float:
        """When ``take`` could next grant if nothing changes; now if it could now."""
        ...

    async def block(self, *, limiter: str, key: str, until: float) -> None:
        """Grant nothing before ``until``; an earlier time than one already set is ignored."""
        ...

    async def clear(self, *, limiter: str, key: str) -> None:
        """Delete every permit and the block of the key."""
        ...


def next_slot(blocked_until: float | None, live_expiries: Iterable[float], limit: int) -> float:
    """When a new permit may be taken: after the block, and once fewer than ``limit``
    permits are live, which is when the ``limit``-th latest expiry passes."""
    latest_first = sorted(live_expiries, reverse=True)
    full_until = latest_first[limit - 1] if len(latest_first) >= limit else -math.inf
    return max(-math.inf if blocked_until is None else blocked_until, full_until)
