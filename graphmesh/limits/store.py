"""Where limiters keep their state: live permits and a retry-after time per (limiter, key).

Rate, token and concurrency limits are one algorithm over this state. A permit is *live*
until its expiry and has a *cost*; a new one is granted when the live permits' costs leave
room for its own within the limit and the key is not blocked. A rate limiter's permits
cost 1 and expire one window after their grant, never released early, so "room for one
more" means "fewer than N grants in the last window" (a sliding-window log); a token
limiter's permits cost the tokens of their call; a concurrency limiter's permits cost 1 and
expire at the end of their lease, or are deleted on release. Each backend makes ``take``
atomic per key: memory by running without an ``await``, SQLite under the database write
lock, Postgres under the key row's lock. Each reads its clock only once it holds that lock,
so grants on one key are totally ordered by their ``granted_at``.

Times are POSIX seconds by the store's own clock; the Postgres store uses the database
clock, so processes on hosts with skewed clocks still agree.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Protocol


class LimitStoreUnavailable(Exception):
    """The store's database cannot be reached. A limiter grants nothing without its store,
    so callers fail closed on this error, never run unlimited."""


@dataclass(frozen=True, kw_only=True)
class Taken:
    """The store's answer to ``take``, decided at ``at``: when granted, ``until`` is the new
    permit's expiry; when refused, the time the next permit of that cost may be taken."""

    granted: bool
    at: float
    until: float


@dataclass(frozen=True, kw_only=True)
class Take:
    """One permit of a :meth:`LimitStore.take_all`: limiter ``limiter`` grants ``token`` of
    ``cost`` for ``hold`` seconds if its live permits leave room within ``limit``."""

    limiter: str
    limit: int
    hold: float
    token: str
    cost: int = 1


class LimitStore(Protocol):
    """Live permits and retry-after times, per ``(limiter, key)``. ``limiter`` names one
    limiter; limiters sharing a store must have distinct names. Every method raises
    :class:`LimitStoreUnavailable` when the store's database cannot be reached."""

    async def take(
        self, *, limiter: str, key: str, limit: int, hold: float, token: str, cost: int = 1
    ) -> Taken:
        """Atomically: grant permit ``token`` of ``cost`` for ``hold`` seconds if the live
        permits cost at most ``limit - cost`` together and the key is not blocked."""
        ...

    async def take_all(self, *, key: str, takes: Sequence[Take]) -> list[Taken]:
        """Atomically, in one round trip: every permit of ``takes`` on ``key``, or none.
        The answer is one granted :class:`Taken` per take, in order, or else a single
        refusal (the first refusing take's) and no permit kept. Limiters sharing a key
        must be taken in one order everywhere (the Postgres store locks them in turn)."""
        ...

    async def drop(self, *, limiter: str, key: str, token: str) -> None:
        """Delete a permit (a no-op if it is gone)."""
        ...

    async def extend(self, *, limiter: str, key: str, token: str, hold: float) -> float | None:
        """Make a live permit expire ``hold`` seconds from now; its new expiry, or ``None``
        if it had already expired or been dropped."""
        ...

    async def charge(self, *, limiter: str, key: str, token: str, cost: int) -> bool:
        """Make a live permit cost ``cost`` from now on; ``False`` if it had already expired
        or been dropped."""
        ...

    async def next_available(self, *, limiter: str, key: str, limit: int) -> float:
        """When a ``take`` of cost 1 could next grant if nothing changes; now if it could now."""
        ...

    async def block(self, *, limiter: str, key: str, until: float) -> None:
        """Grant nothing before ``until``; an earlier time than one already set is ignored."""
        ...

    async def clear(self, *, limiter: str, key: str) -> None:
        """Delete every permit and the block of the key."""
        ...


def next_slot(
    blocked_until: float | None, live: Iterable[tuple[float, int]], limit: int, cost: int = 1
) -> float:
    """When a permit of ``cost`` may be taken, given the live permits' ``(expiry, cost)``:
    after the block, and once the live permits leave room for ``cost``. Latest expiry
    first, that is the expiry of the first permit whose running cost leaves no room."""
    full_until = -math.inf
    heavier = 0
    for expiry, permit_cost in sorted(live, reverse=True):
        heavier += permit_cost
        if heavier > limit - cost:
            full_until = expiry
            break
    return max(-math.inf if blocked_until is None else blocked_until, full_until)
