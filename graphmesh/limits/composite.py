"""Several limiters acting as one: a permit needs a slot from every member."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from datetime import datetime

from graphmesh.limits.base import Decision, Limiter, LimiterBase, Permit, require_key
from graphmesh.limits.stored import StoredLimiter


class CompositeLimiter(LimiterBase):
    """Grants a permit only when every member grants one, all or nothing: when a member
    refuses, the slots already taken from the others are cancelled, so none leaks (a rate
    grant taken back does not count). Members are asked in order, so put the scarcest
    first. The permit's ``parts`` are the members' permits, in member order. Members that
    are all stored limiters on one store are asked in one store call (``take_all``), which
    is atomic there: one database round trip for the whole composite.
    """

    def __init__(self, *members: Limiter) -> None:
        if not members:
            raise ValueError("a CompositeLimiter needs at least one member")
        super().__init__(recheck_interval=min(member.recheck_interval for member in members))
        self.members: tuple[Limiter, ...] = members
        self._batch = _one_store(members)

    async def try_acquire(self, key: str, cost: int = 1) -> Decision:
        """Every member's permit, or none and the refusing member's wait."""
        if self._batch is not None:
            return await self._take_all(self._batch, require_key("key", key), cost)
        parts: list[Permit] = []
        try:
            for member in self.members:
                decision = await member.try_acquire(key, cost)
                if decision.permit is None:
                    await self._cancel_parts(parts)
                    return decision
                parts.append(decision.permit)
        except BaseException:
            await asyncio.shield(self._cancel_parts(parts))
            raise
        return Decision(permit=self._combine(key, parts, cost=cost))

    async def _take_all(self, members: tuple[StoredLimiter, ...], key: str, cost: int) -> Decision:
        """Stored members on one store: all their permits in one store call."""
        takes = [member.take_for(cost) for member in members]
        answers = await members[0].store.take_all(key=key, takes=takes)
        if not answers[0].granted:
            return members[0].decision(key, takes[0], answers[0], cost)
        parts = [
            member.decision(key, take, taken, cost).permit
            for member, take, taken in zip(members, takes, answers, strict=True)
        ]
        return Decision(permit=self._combine(key, [p for p in parts if p is not None], cost=cost))

    async def release(self, permit: Permit) -> None:
        """Release every member's part."""
        for member, part in self._pairs(permit):
            await member.release(part)
        self._wake()

    async def cancel(self, permit: Permit) -> None:
        """Cancel every member's part."""
        await self._cancel_parts(list(permit.parts))
        self._wake()

    async def renew(self, permit: Permit) -> Permit | None:
        """Renew every part; ``None`` if any part's lease lapsed."""
        parts = []
        for member, part in self._pairs(permit):
            renewed = await member.renew(part)
            if renewed is None:
                return None
            parts.append(renewed)
        return self._combine(permit.key, parts, cost=permit.cost, token=permit.token)

    async def charge(self, permit: Permit, cost: int) -> Permit | None:
        """Charge every part; ``None`` if any part no longer counts."""
        charged = [await member.charge(part, cost) for member, part in self._pairs(permit)]
        if any(part is None for part in charged):
            return None
        parts = [part for part in charged if part is not None]
        self._wake()
        return self._combine(permit.key, parts, cost=cost, token=permit.token)

    async def next_available(self, key: str) -> datetime:
        """The latest of the members' next available times."""
        times = await asyncio.gather(*(member.next_available(key) for member in self.members))
        return max(times)

    async def set_next_available(self, key: str, at: datetime) -> None:
        """Block ``key`` on every member."""
        await asyncio.gather(*(member.set_next_available(key, at) for member in self.members))

    async def clear(self, key: str) -> None:
        """Clear ``key`` on every member."""
        await asyncio.gather(*(member.clear(key) for member in self.members))
        self._wake()

    async def _cancel_parts(self, parts: Sequence[Permit]) -> None:
        # Newest first, mirroring the order they were taken in.
        for member, part in reversed(list(zip(self.members, parts, strict=False))):
            await member.cancel(part)

    def _pairs(self, permit: Permit) -> list[tuple[Limiter, Permit]]:
        if len(permit.parts) != len(self.members):
            raise ValueError("the permit was not granted by this CompositeLimiter")
        return list(zip(self.members, permit.parts, strict=True))

    @staticmethod
    def _combine(
        key: str, parts: Sequence[Permit], *, cost: int, token: str | None = None
    ) -> Permit:
        expiries = [part.expires_at for part in parts if part.expires_at is not None]
        return Permit(
            key=key,
            token=token or uuid.uuid4().hex,
            granted_at=max(part.granted_at for part in parts),
            expires_at=min(expiries) if expiries else None,
            cost=cost,
            parts=tuple(parts),
        )


def _one_store(members: tuple[Limiter, ...]) -> tuple[StoredLimiter, ...] | None:
    """The members, when all are stored limiters on one store (so one call takes all)."""
    stored = tuple(member for member in members if isinstance(member, StoredLimiter))
    if len(stored) < len(members) or len({id(member.store) for member in stored}) != 1:
        return None
    return stored
