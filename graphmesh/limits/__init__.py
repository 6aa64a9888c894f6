"""Limiters: rate (sliding-window log), token rate (the same, weighted by cost), concurrency
(leased slots) and composite, shared by the engine and the gateways.

This package imports neither the engine nor a deployable (an import-linter contract says
so), so every part of graphmesh may build on it. The interface is
:class:`~graphmesh.limits.base.Limiter`. Stored limiters keep their state in a
:class:`~graphmesh.limits.store.LimitStore`, imported from its own module so a caller only
pulls in the driver it uses: ``memory`` (one process), ``sqlite`` (embedded mode, every
process on one file) and ``postgres`` (the service mesh: global across processes; its
tables have a migration history of their own). All pass ``tests/contract/test_limiters.py``::

    async with PostgresLimitStore.open(dsn) as store:
        openai = CompositeLimiter(
            ConcurrencyLimiter(store, name="openai-concurrency", limit=8, lease=60),
            RateLimiter(store, name="openai-rpm", limit=500, window=60),
            TokenRateLimiter(store, name="openai-tpm", limit=200_000, window=60),
        )
        async with openai.slot("openai", cost=estimated_tokens) as permit:
            ...
            await openai.charge(permit, used_tokens)
"""

from graphmesh.limits.base import (
    Decision,
    Limiter,
    LimiterBase,
    Permit,
    keep_alive,
    seconds_from_now,
)
from graphmesh.limits.composite import CompositeLimiter
from graphmesh.limits.memory import MemoryLimitStore
from graphmesh.limits.store import LimitStore, LimitStoreUnavailable, Taken
from graphmesh.limits.stored import ConcurrencyLimiter, RateLimiter, TokenRateLimiter

__all__ = [
    "CompositeLimiter",
    "ConcurrencyLimiter",
    "Decision",
    "LimitStore",
    "LimitStoreUnavailable",
    "Limiter",
    "LimiterBase",
    "MemoryLimitStore",
    "Permit",
    "RateLimiter",
    "Taken",
    "TokenRateLimiter",
    "keep_alive",
    "seconds_from_now",
]
