"""Rate grants taken from the shared store in blocks and handed out in this process, so most
calls are admitted without a database round trip.

A block is one store permit of ``n`` requests (and of the tokens those requests are
estimated to need) in the same ``gateway-requests`` / ``gateway-tokens`` windows every
replica shares. This process hands its grants out for at most ``hold`` seconds after the
store granted the block; what is left then is dropped. The shared guarantee holds as long as
``hold`` fits in the window margin: a grant used within ``hold`` of being counted still falls
inside the store's ``60 + window_margin`` second window, so no provider minute sees more than
the limit. The price is grants left unused when a block lapses (the limit is reached a little
less exactly); blocks grow while they run out before they lapse and shrink when they lapse
with grants left, and a block the store refuses is asked for again at the size of one call,
so the last grants of a window are never lost to the block size.

Only request and token rates are leased: a concurrency slot must be held and given back by
each call, so a model with ``max_concurrent`` keeps its round trip per call (see
``limiting.py``).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass

from graphmesh.limits import LimitStore
from graphmesh.limits.store import Take

REQUESTS = "gateway-requests"
TOKENS = "gateway-tokens"
BLOCKS_PER_WINDOW = 100  # the largest block: this share of a window's limit
RECENT_BLOCKS = 64  # blocks whose token totals are kept for late corrections


@dataclass(kw_only=True)
class _Block:
    token: str
    expires: float  # monotonic
    requests_left: int
    tokens_left: int


@dataclass(frozen=True, kw_only=True)
class Grant:
    """One call's share of a block: ``tokens`` estimated, out of block ``block``."""

    block: str
    tokens: int


class RateLease:
    """Request and token grants of ``key`` in ``store``, leased in blocks (module docs)."""

    def __init__(
        self,
        store: LimitStore,
        *,
        key: str,
        window: float,
        hold: float,
        requests_per_minute: int | None,
        tokens_per_minute: int | None,
    ) -> None:
        self._store = store
        self.key = key
        self._window = window
        self._hold = hold
        self._rpm = requests_per_minute
        self._tpm = tokens_per_minute
        self._block: _Block | None = None
        self._size = 1
        self._refill = asyncio.Lock()
        self._charged: OrderedDict[str, int] = OrderedDict()  # block token → tokens charged

    def _largest(self) -> int:
        limit = self._rpm or self._tpm or 1
        return max(1, limit // BLOCKS_PER_WINDOW)

    def _local(self, cost: int) -> Grant | None:
        block = self._block
        if block is None or time.monotonic() >= block.expires:
            if block is not None and block.requests_left > 0:
                self._size = max(1, self._size // 2)  # it lapsed unused: smaller next time
            self._block = None
            return None
        if block.requests_left < 1 or (self._tpm is not None and block.tokens_left < cost):
            if block.expires - time.monotonic() > self._hold / 2:
                self._size = min(self._largest(), self._size * 2)  # ran out early: grow
            self._block = None
            return None
        block.requests_left -= 1
        block.tokens_left -= cost
        return Grant(block=block.token, tokens=cost)

    async def acquire(self, cost: int) -> Grant | float:
        """A grant for a call estimated at ``cost`` tokens, or the seconds until the store
        could grant one. Raises :class:`~graphmesh.limits.LimitStoreUnavailable`."""
        grant = self._local(cost)
        if grant is not None:
            return grant
        async with self._refill:
            grant = self._local(cost)  # another call refilled meanwhile
            if grant is not None:
                return grant
            answer = await self._take(self._size, cost)
            if isinstance(answer, float) and self._size > 1:
                self._size = 1
                answer = await self._take(1, cost)
            if isinstance(answer, float):
                return answer
            grant = self._local(cost)
            assert grant is not None
            return grant

    async def _take(self, requests: int, cost: int) -> float | None:
        """Take a block of ``requests`` calls of ``cost`` tokens each; ``None`` when the
        store granted it (it is then the current block), else the wait."""
        token = uuid.uuid4().hex
        tokens = cost * requests
        if self._tpm is not None:
            tokens = max(cost, min(tokens, self._tpm // BLOCKS_PER_WINDOW))
            requests = max(1, min(requests, tokens // max(cost, 1)))
        takes = []
        if self._rpm is not None:
            takes.append(
                Take(
                    limiter=REQUESTS,
                    limit=self._rpm,
                    hold=self._window,
                    token=uuid.uuid4().hex,  # permit tokens are unique across limiters
                    cost=requests,
                )
            )
        if self._tpm is not None:
            takes.append(
                Take(limiter=TOKENS, limit=self._tpm, hold=self._window, token=token, cost=tokens)
            )
        started = time.monotonic()
        answers = await self._store.take_all(key=self.key, takes=takes)
        if not answers[0].granted:
            return max(answers[0].until - answers[0].at, 0.0)
        self._block = _Block(
            token=token, expires=started + self._hold, requests_left=requests, tokens_left=tokens
        )
        self._charged[token] = tokens
        while len(self._charged) > RECENT_BLOCKS:
            self._charged.popitem(last=False)
        return None

    async def settle(self, grant: Grant, used: int) -> None:
        """Correct ``grant``'s estimate with the ``used`` tokens: what was left over goes
        back to its block while it lasts; an overrun is charged to the store."""
        if self._tpm is None or used == grant.tokens:
            return
        block = self._block
        if used < grant.tokens:
            if block is not None and block.token == grant.block:
                block.tokens_left += grant.tokens - used
            return
        charged = self._charged.get(grant.block)
        if charged is None:
            return  # the block left the window long ago: nothing counts it any more
        self._charged[grant.block] = charged + used - grant.tokens
        await self._store.charge(
            limiter=TOKENS, key=self.key, token=grant.block, cost=self._charged[grant.block]
        )

    def drop(self) -> None:
        """Hand out nothing more from the current block (the provider asked for a pause)."""
        self._block = None
