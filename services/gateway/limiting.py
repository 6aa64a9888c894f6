"""Central rate limiting of one provider account and model, shared by every gateway replica
through the limiter store (Postgres in a mesh): requests per minute, tokens per minute
(estimated before the call, corrected from its usage) and concurrent requests.

A call is *admitted* when every configured limit has room. If the next slot is close (within
``max_wait`` and the caller's deadline) the call waits for it; otherwise it is refused at
once with :class:`RateLimited` and the wait, so the caller's queue reschedules the work for
then instead of holding a worker. A provider's signals (``retry-after``, an exhausted
rate-limit bucket) block the key in the store: every replica stops until then.

The store is the limit: when it cannot be reached, nothing is admitted
(:class:`LimiterUnavailable`). Once a call has been made, bookkeeping that fails (release,
correction) is logged and left to the leases and windows, never turned into an error of a
call that succeeded.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Awaitable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from graphmesh.limits import (
    CompositeLimiter,
    ConcurrencyLimiter,
    Limiter,
    LimitStore,
    LimitStoreUnavailable,
    Permit,
    RateLimiter,
    TokenRateLimiter,
    keep_alive,
    seconds_from_now,
)
from graphmesh.services.gateway.errors import LimiterUnavailable, RateLimited
from graphmesh.services.gateway.lease import Grant, RateLease
from graphmesh.services.gateway.retry import Deadline
from graphmesh.services.gateway.types import RateSignals

logger = logging.getLogger(__name__)

MINUTE_S = 60.0
CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4
# A refusal never asks for less than this: a caller rescheduling "now" would spin.
MIN_RETRY_AFTER_S = 0.05
LEASED = "lease:"  # the token prefix of a permit handed out of a leased block
UNREACHABLE = "the shared rate limiter's database cannot be reached, so no provider call is made"


@dataclass(frozen=True, kw_only=True)
class ModelLimits:
    """The limits of one provider account and model; ``None``: not limited."""

    requests_per_minute: int | None = None
    tokens_per_minute: int | None = None
    max_concurrent: int | None = None


@dataclass(frozen=True, kw_only=True)
class LimiterOptions:
    """How limits are applied: the longest wait for a slot before refusing (``max_wait``),
    seconds added to every minute window so that network jitter between the grant and the
    provider's clock never shows it more than the limit (``window_margin``), and the lease of
    a concurrency slot, renewed while its call runs (``lease``). ``local_grant`` > 0 leases
    request and token grants in blocks handed out here for that long (:mod:`.lease`; at most
    the window margin), for models without a concurrency limit."""

    max_wait: float = 1.0
    window_margin: float = 1.0
    lease: float = 60.0
    local_grant: float = 0.0


DEFAULT_OPTIONS = LimiterOptions()


def estimate_tokens(texts: Iterable[str], max_output: int = 0) -> int:
    """Tokens a call may use, before it is made: about four characters per token and a few
    per message, plus everything the output may use."""
    prompt = sum(math.ceil(len(text) / CHARS_PER_TOKEN) + MESSAGE_OVERHEAD_TOKENS for text in texts)
    return max(prompt + max_output, 1)


class RouteLimiter:
    """The shared limits of ``key`` (an account and model) in ``store``."""

    def __init__(
        self,
        store: LimitStore,
        *,
        key: str,
        limits: ModelLimits,
        options: LimiterOptions = DEFAULT_OPTIONS,
    ) -> None:
        self.key = key
        self.limits = limits
        self.options = options
        members = _members(store, limits, options)
        self._limiter: Limiter | None = CompositeLimiter(*members) if members else None
        self._lease: RateLease | None = None
        rates = limits.requests_per_minute or limits.tokens_per_minute
        if options.local_grant > 0 and rates and not limits.max_concurrent:
            self._lease = RateLease(
                store,
                key=key,
                window=MINUTE_S + options.window_margin,
                hold=min(options.local_grant, options.window_margin),
                requests_per_minute=limits.requests_per_minute,
                tokens_per_minute=limits.tokens_per_minute,
            )

    async def admit(self, cost: int, deadline: Deadline) -> Permit | None:
        """A permit for a call estimated at ``cost`` tokens, waiting briefly if a slot is
        near; ``None`` when nothing is limited. Raises :class:`RateLimited` with the wait
        when the next slot is further, :class:`LimiterUnavailable` without a store."""
        if self._limiter is None:
            return None
        cost = min(cost, self.limits.tokens_per_minute or cost)
        if self._lease is not None:
            return await self._admit_leased(self._lease, cost, deadline)
        async with self._fail_closed():
            decision = await self._limiter.try_acquire(self.key, cost)
            if decision.permit is not None:
                return decision.permit
            budget = min(self.options.max_wait, deadline.remaining())
            if decision.retry_after > budget:
                raise self._refusal(decision.retry_after)
            try:
                async with asyncio.timeout(budget):
                    return await self._limiter.acquire(self.key, cost)
            except TimeoutError:
                next_slot = await self._limiter.next_available(self.key)
                raise self._refusal((next_slot - datetime.now(UTC)).total_seconds()) from None

    async def _admit_leased(self, lease: RateLease, cost: int, deadline: Deadline) -> Permit:
        give_up = time.monotonic() + min(self.options.max_wait, deadline.remaining())
        async with self._fail_closed():
            while True:
                answer = await lease.acquire(cost)
                if isinstance(answer, Grant):
                    token = f"{LEASED}{answer.block}"
                    return Permit(
                        key=self.key, token=token, granted_at=datetime.now(UTC), cost=cost
                    )
                if answer > give_up - time.monotonic():
                    raise self._refusal(answer)
                await asyncio.sleep(max(answer, MIN_RETRY_AFTER_S))

    @asynccontextmanager
    async def held(self, permit: Permit | None) -> AsyncIterator[None]:
        """Keep ``permit``'s concurrency lease alive while the call runs."""
        if permit is None or self._limiter is None or self._lease is not None:
            yield
            return
        async with keep_alive(self._limiter, permit):
            yield

    async def finish(
        self, permit: Permit | None, *, signals: RateSignals, tokens: int | None = None
    ) -> None:
        """After a call, at once: release its slot, heed the provider's signals, and charge
        the ``tokens`` it used (``None``: keep the estimate)."""
        if self._limiter is None:
            return
        work = [self._heed(self._limiter, signals)]
        if self._lease is not None and permit is not None:
            if tokens is not None:
                grant = Grant(block=permit.token.removeprefix(LEASED), tokens=permit.cost)
                work.append(
                    self._quietly("correct the token count", self._lease.settle(grant, tokens))
                )
        elif permit is not None:
            work.append(self._quietly("release the permit", self._limiter.release(permit)))
            if tokens is not None and tokens != permit.cost:
                charge = self._limiter.charge(permit, tokens)
                work.append(self._quietly("correct the token count", charge))
        await asyncio.gather(*work)

    async def _heed(self, limiter: Limiter, signals: RateSignals) -> None:
        """Block the key for every replica for as long as the provider asked."""
        wait = signals.wait
        if wait:
            if self._lease is not None:
                self._lease.drop()
            logger.info("%s: the provider asks for a pause of %.2fs", self.key, wait)
            pause = limiter.set_next_available(self.key, seconds_from_now(wait))
            await self._quietly("pause the shared limit", pause)

    def _refusal(self, wait: float) -> RateLimited:
        wait = max(wait, MIN_RETRY_AFTER_S)
        return RateLimited(f"the rate limit of {self.key} is reached", retry_after=wait)

    @asynccontextmanager
    async def _fail_closed(self) -> AsyncIterator[None]:
        try:
            yield
        except LimitStoreUnavailable as error:
            logger.warning("%s: %s (%s)", self.key, UNREACHABLE, error.__cause__ or error)
            raise LimiterUnavailable(UNREACHABLE) from error

    async def _quietly(self, what: str, work: Awaitable[object]) -> None:
        try:
            await work
        except LimitStoreUnavailable as error:
            logger.warning("%s: could not %s: %s", self.key, what, error)


def _members(store: LimitStore, limits: ModelLimits, options: LimiterOptions) -> list[Limiter]:
    """Scarcest first: a concurrency slot, then the request and token windows."""
    window = MINUTE_S + options.window_margin
    members: list[Limiter] = []
    if limits.max_concurrent:
        members.append(
            ConcurrencyLimiter(
                store, name="gateway-concurrent", limit=limits.max_concurrent, lease=options.lease
            )
        )
    if limits.requests_per_minute:
        members.append(
            RateLimiter(
                store, name="gateway-requests", limit=limits.requests_per_minute, window=window
            )
        )
    if limits.tokens_per_minute:
        members.append(
            TokenRateLimiter(
                store, name="gateway-tokens", limit=limits.tokens_per_minute, window=window
            )
        )
    return members
