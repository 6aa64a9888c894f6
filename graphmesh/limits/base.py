"""The limiter interface: who may start work on a key now, and when the next one may.

A limiter hands out :class:`Permit` s per key, a key being a queue or provider name such as
``openai`` or ``hf``; keys never affect each other. Waiting is built on one non-blocking
call, :meth:`Limiter.try_acquire`, whose refusal says how long until the next slot::

    permit = await limiter.acquire("openai")       # sleeps until a slot is free
    try:
        ...
    finally:
        await limiter.release(permit)

    async with limiter.slot("openai"):             # the same, and renews a held lease
        ...

A permit may have a *cost* (the tokens a call is estimated to use): a token limiter charges
it, rate and concurrency limiters count the permit once whatever it costs, and
:meth:`Limiter.charge` corrects the estimate once the real figure is known.

A provider's ``retry-after`` reaches every limiter the same way, and no permit is granted on
that key before it: ``await limiter.set_next_available("openai", seconds_from_now(30))``.
"""

from __future__ import annotations

import asyncio
import logging
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

logger = logging.getLogger(__name__)

# A refusal promising a slot "now" (clock rounding) must still not spin.
MIN_WAIT_S = 0.001


@dataclass(frozen=True, kw_only=True)
class Permit:
    """The right to start one piece of work on ``key``, granted at ``granted_at``.

    ``expires_at`` is when a held slot lapses unless renewed (a concurrency lease), ``None``
    when nothing is held (a rate limit counts the grant for its window, whatever happens).
    ``cost`` is what was asked for (a token limiter charges it, other limiters count one
    permit). ``parts`` are a composite's member permits, in member order.
    """

    key: str
    token: str
    granted_at: datetime
    expires_at: datetime | None = None
    cost: int = 1
    parts: tuple[Permit, ...] = ()


@dataclass(frozen=True, kw_only=True)
class Decision:
    """The answer of :meth:`Limiter.try_acquire`: a permit, or else ``retry_after``, the
    seconds until the next slot if nothing else changes (a release may free one sooner)."""

    permit: Permit | None
    retry_after: float = 0.0

    @property
    def granted(self) -> bool:
        """Whether a permit was granted."""
        return self.permit is not None


class Limiter(Protocol):
    """Grants permits per key. Every backend of every kind passes ``tests/contract/``."""

    @property
    def recheck_interval(self) -> float:
        """The longest a waiter sleeps before asking again, however late its next slot is:
        a slot freed by another process is noticed within this time."""
        ...

    async def try_acquire(self, key: str, cost: int = 1) -> Decision:
        """A permit of ``cost`` now, or a refusal saying how long to wait; never blocks. A
        cost that no window could ever grant raises ``ValueError``."""
        ...

    async def acquire(self, key: str, cost: int = 1) -> Permit:
        """Wait for a permit, sleeping until the next slot is due (no busy loop). Bound the
        wait with ``asyncio.timeout``."""
        ...

    def slot(self, key: str, cost: int = 1) -> AbstractAsyncContextManager[Permit]:
        """``acquire``, then :meth:`holding` the permit for the block."""
        ...

    def holding(self, permit: Permit) -> AbstractAsyncContextManager[Permit]:
        """Renew the permit's lease while the block runs, ``release`` it on exit."""
        ...

    async def release(self, permit: Permit) -> None:
        """The work is done: a held slot is freed (a rate grant still counts). Idempotent."""
        ...

    async def cancel(self, permit: Permit) -> None:
        """The permit was never used: forget it entirely, as if never granted. Idempotent."""
        ...

    async def renew(self, permit: Permit) -> Permit | None:
        """Extend a held lease; the renewed permit, or ``None`` if it already lapsed."""
        ...

    async def charge(self, permit: Permit, cost: int) -> Permit | None:
        """Make the permit cost ``cost`` (>= 0) instead of its estimate; the changed permit,
        or ``None`` if it no longer counts (lapsed, released or cleared). Limiters that
        count permits rather than costs have nothing to correct and return the permit."""
        ...

    async def next_available(self, key: str) -> datetime:
        """The earliest time (UTC) a permit could be granted if nothing else changes;
        now or earlier when one is free."""
        ...

    async def set_next_available(self, key: str, at: datetime) -> None:
        """Grant nothing on ``key`` before ``at`` (timezone-aware). A later call can only
        push the time further out; :meth:`clear` resets it."""
        ...

    async def clear(self, key: str) -> None:
        """Forget everything about ``key``: grants, holders and the retry-after time."""
        ...


def seconds_from_now(seconds: float) -> datetime:
    """The UTC time ``seconds`` from now: what a ``retry-after: <seconds>`` header means."""
    return datetime.now(UTC) + timedelta(seconds=seconds)


def from_timestamp(timestamp: float) -> datetime:
    """A UTC datetime from POSIX seconds."""
    return datetime.fromtimestamp(timestamp, tz=UTC)


def require_key(argument: str, value: object) -> str:
    """Return ``value`` if it is a non-empty string without NUL, else raise ``ValueError``."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"{argument} must be a non-empty string, got {value!r}")
    if "\x00" in value:
        raise ValueError(f"{argument} may not contain NUL characters")
    return value


def require_cost(cost: int, *, minimum: int = 1) -> int:
    """Return ``cost`` if it is an integer of at least ``minimum``, else raise ``ValueError``."""
    if isinstance(cost, bool) or not isinstance(cost, int) or cost < minimum:
        raise ValueError(f"cost must be an integer >= {minimum}, got {cost!r}")
    return cost


def to_timestamp(argument: str, at: datetime) -> float:
    """POSIX seconds of a timezone-aware ``at``; naive times are refused as ambiguous."""
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{argument} must be timezone-aware, got {at!r}")
    return at.timestamp()


class _Signal:
    """Wakes every waiter of this process at once, e.g. when a release frees a slot."""

    def __init__(self) -> None:
        self._event: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def wait(self, delay: float) -> None:
        """Return when fired or after ``delay`` seconds, whichever comes first."""
        loop = asyncio.get_running_loop()
        if self._event is None or self._loop is not loop:
            # An Event belongs to the loop that first waits on it, so make one per loop.
            self._event, self._loop = asyncio.Event(), loop
        with suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), delay)

    def fire(self) -> None:
        """Wake the current waiters; later waiters wait for the next fire."""
        if self._event is not None:
            self._event.set()
            self._event = None


class LimiterBase(ABC):
    """``acquire`` and ``slot`` built on ``try_acquire``; subclasses call :meth:`_wake`
    whenever they free a slot, so that local waiters retry at once."""

    def __init__(self, *, recheck_interval: float) -> None:
        if not recheck_interval > 0:
            raise ValueError(f"recheck_interval must be positive, got {recheck_interval!r}")
        self._recheck_interval = recheck_interval
        self._signal = _Signal()

    @property
    def recheck_interval(self) -> float:
        """The longest a waiter sleeps before asking again."""
        return self._recheck_interval

    async def acquire(self, key: str, cost: int = 1) -> Permit:
        """Wait for a permit, sleeping until the next slot (bound it with ``asyncio.timeout``)."""
        while True:
            decision = await self.try_acquire(key, cost)
            if decision.permit is not None:
                return decision.permit
            wait = min(decision.retry_after, self._recheck_interval)
            await self._signal.wait(max(wait, MIN_WAIT_S))

    @asynccontextmanager
    async def slot(self, key: str, cost: int = 1) -> AsyncIterator[Permit]:
        """Hold a permit for the ``async with`` block, renewing its lease meanwhile."""
        async with self.holding(await self.acquire(key, cost)) as permit:
            yield permit

    @asynccontextmanager
    async def holding(self, permit: Permit) -> AsyncIterator[Permit]:
        """Keep a granted permit's lease alive for the block; release it on exit."""
        try:
            async with keep_alive(self, permit):
                yield permit
        finally:
            await self.release(permit)

    def _wake(self) -> None:
        self._signal.fire()

    @abstractmethod
    async def try_acquire(self, key: str, cost: int = 1) -> Decision:
        """A permit now, or a refusal saying how long to wait."""

    @abstractmethod
    async def release(self, permit: Permit) -> None:
        """The work is done."""

    @abstractmethod
    async def cancel(self, permit: Permit) -> None:
        """The permit was never used."""

    @abstractmethod
    async def renew(self, permit: Permit) -> Permit | None:
        """Extend a held lease."""

    @abstractmethod
    async def charge(self, permit: Permit, cost: int) -> Permit | None:
        """Correct the permit's cost."""

    @abstractmethod
    async def next_available(self, key: str) -> datetime:
        """The earliest time a permit could be granted."""

    @abstractmethod
    async def set_next_available(self, key: str, at: datetime) -> None:
        """Grant nothing on ``key`` before ``at``."""

    @abstractmethod
    async def clear(self, key: str) -> None:
        """Forget everything about ``key``."""


@asynccontextmanager
async def keep_alive(limiter: Limiter, permit: Permit) -> AsyncIterator[None]:
    """Renew ``permit`` every third of its lease while the block runs, so a long task keeps
    its slot while a crashed one loses it within one lease."""
    if permit.expires_at is None:
        yield
        return
    lease = (permit.expires_at - permit.granted_at).total_seconds()
    renewer = asyncio.create_task(_renew_periodically(limiter, permit, max(lease / 3, MIN_WAIT_S)))
    try:
        yield
    finally:
        renewer.cancel()
        await asyncio.wait([renewer])


async def _renew_periodically(limiter: Limiter, permit: Permit, interval: float) -> None:
    current: Permit | None = permit
    while current is not None:
        await asyncio.sleep(interval)
        try:
            current = await limiter.renew(current)
        except Exception:
            # A storage hiccup must not kill the task holding the slot; try again next time.
            logger.exception("renewing the lease of a %r permit failed", permit.key)
    logger.warning("the lease of a %r permit lapsed before its work ended", permit.key)
