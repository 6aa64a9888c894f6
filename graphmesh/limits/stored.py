"""The limiters kept in a :class:`~graphmesh.limits.store.LimitStore`.

:class:`RateLimiter`, :class:`TokenRateLimiter` and :class:`ConcurrencyLimiter` differ only
in how long a permit stays live, what it is charged, and whether releasing it frees its
slot; see :mod:`graphmesh.limits.store` for the shared algorithm. With a Postgres store they
are global across processes.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import replace
from datetime import datetime

from graphmesh.limits.base import (
    Decision,
    LimiterBase,
    Permit,
    from_timestamp,
    require_cost,
    require_key,
    to_timestamp,
)
from graphmesh.limits.store import LimitStore, Take, Taken


def _require_positive(argument: str, value: float) -> float:
    if not (value > 0 and math.isfinite(value)):
        raise ValueError(f"{argument} must be a positive number of seconds, got {value!r}")
    return value


def _require_limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(f"limit must be an integer >= 1, got {limit!r}")
    return limit


class StoredLimiter(LimiterBase):
    """At most ``limit`` worth of live permits per key; each lives ``hold`` seconds unless
    dropped. Each permit is charged 1 unless a subclass charges its cost. A composite of
    stored limiters on one store takes all its permits in one store call (``take_all``)."""

    def __init__(
        self, store: LimitStore, *, name: str, limit: int, hold: float, recheck_interval: float
    ) -> None:
        super().__init__(recheck_interval=recheck_interval)
        self._store = store
        self.name = require_key("name", name)
        self.limit = _require_limit(limit)
        self._hold = hold

    @property
    def store(self) -> LimitStore:
        """Where this limiter keeps its permits."""
        return self._store

    async def try_acquire(self, key: str, cost: int = 1) -> Decision:
        """A permit now, or a refusal with the seconds until the next slot."""
        key = require_key("key", key)
        take = self.take_for(cost)
        taken = await self._store.take(
            limiter=take.limiter,
            key=key,
            limit=take.limit,
            hold=take.hold,
            token=take.token,
            cost=take.cost,
        )
        return self.decision(key, take, taken, cost)

    def take_for(self, cost: int) -> Take:
        """What the store is asked for a permit of ``cost`` (a fresh token)."""
        charged = self._charged(require_cost(cost))
        return Take(
            limiter=self.name,
            limit=self.limit,
            hold=self._hold,
            token=uuid.uuid4().hex,
            cost=charged,
        )

    def decision(self, key: str, take: Take, taken: Taken, cost: int) -> Decision:
        """What the store's answer to ``take`` means, for a permit asked at ``cost``."""
        if not taken.granted:
            return Decision(permit=None, retry_after=max(taken.until - taken.at, 0.0))
        return Decision(permit=self._permit(key, take.token, cost, taken))

    async def cancel(self, permit: Permit) -> None:
        """Forget an unused permit: its slot is free again at once."""
        await self._store.drop(limiter=self.name, key=permit.key, token=permit.token)
        self._wake()

    async def charge(self, permit: Permit, cost: int) -> Permit | None:
        """One permit counts once whatever it costs: nothing to correct."""
        require_cost(cost, minimum=0)
        return replace(permit, cost=cost)

    async def next_available(self, key: str) -> datetime:
        """The earliest time a permit could be granted if nothing else changes."""
        key = require_key("key", key)
        return from_timestamp(
            await self._store.next_available(limiter=self.name, key=key, limit=self.limit)
        )

    async def set_next_available(self, key: str, at: datetime) -> None:
        """Grant nothing on ``key`` before ``at``; never moves an earlier block closer."""
        until = to_timestamp("at", at)
        await self._store.block(limiter=self.name, key=require_key("key", key), until=until)

    async def clear(self, key: str) -> None:
        """Forget every grant, holder and block of ``key``."""
        await self._store.clear(limiter=self.name, key=require_key("key", key))
        self._wake()

    def _charged(self, cost: int) -> int:
        """What the store charges a permit asked for at ``cost``."""
        return 1

    def _permit(self, key: str, token: str, cost: int, taken: Taken) -> Permit:
        return Permit(key=key, token=token, granted_at=from_timestamp(taken.at), cost=cost)


class RateLimiter(StoredLimiter):
    """At most ``limit`` grants per key in any ``window`` seconds: a sliding-window log,
    exact at every instant (a token bucket would allow a burst of up to twice the limit
    across a window boundary). ``release`` does nothing, since the grant was used;
    ``cancel`` takes back an unused one."""

    def __init__(
        self,
        store: LimitStore,
        *,
        name: str,
        limit: int,
        window: float,
        recheck_interval: float = 1.0,
    ) -> None:
        window = _require_positive("window", window)
        super().__init__(
            store, name=name, limit=limit, hold=window, recheck_interval=recheck_interval
        )
        self.window = window

    async def release(self, permit: Permit) -> None:
        """Nothing to free: the grant counts for its whole window."""

    async def renew(self, permit: Permit) -> Permit:
        """Nothing is held, so nothing lapses: the same permit."""
        return permit


class TokenRateLimiter(RateLimiter):
    """At most ``limit`` units (tokens) per key in any ``window`` seconds, each permit
    charged its cost: a sliding-window log weighted by cost. A call's cost is estimated
    before it runs and corrected with :meth:`charge` from what it really used; the
    correction counts for the rest of the permit's window."""

    async def charge(self, permit: Permit, cost: int) -> Permit | None:
        """Charge ``cost`` instead of the estimate; ``None`` if the permit left the window."""
        require_cost(cost, minimum=0)
        charged = await self._store.charge(
            limiter=self.name, key=permit.key, token=permit.token, cost=cost
        )
        if cost < permit.cost:
            self._wake()
        return replace(permit, cost=cost) if charged else None

    def _charged(self, cost: int) -> int:
        if cost > self.limit:
            raise ValueError(
                f"cost {cost} exceeds the limit of {self.limit} per window: it can never fit"
            )
        return cost


class ConcurrencyLimiter(StoredLimiter):
    """At most ``limit`` holders per key at once. Each holds a lease of ``lease`` seconds,
    renewed by ``slot`` (or :meth:`renew`) while its work runs, so a crashed holder's slot
    frees itself within one lease. A waiter notices a release in its own process at once,
    one in another process within ``recheck_interval``."""

    def __init__(
        self,
        store: LimitStore,
        *,
        name: str,
        limit: int,
        lease: float = 60.0,
        recheck_interval: float = 0.25,
    ) -> None:
        lease = _require_positive("lease", lease)
        super().__init__(
            store, name=name, limit=limit, hold=lease, recheck_interval=recheck_interval
        )
        self.lease = lease

    async def release(self, permit: Permit) -> None:
        """Free the slot; a waiter in this process takes it at once."""
        await self.cancel(permit)

    async def renew(self, permit: Permit) -> Permit | None:
        """Extend the lease by a full ``lease`` from now; ``None`` if it already lapsed."""
        expiry = await self._store.extend(
            limiter=self.name, key=permit.key, token=permit.token, hold=self.lease
        )
        return None if expiry is None else replace(permit, expires_at=from_timestamp(expiry))

    def _permit(self, key: str, token: str, cost: int, taken: Taken) -> Permit:
        permit = super()._permit(key, token, cost, taken)
        return replace(permit, expires_at=from_timestamp(taken.until))
