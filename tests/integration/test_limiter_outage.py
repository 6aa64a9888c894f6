"""A limiter whose Postgres cannot be reached fails closed: it raises
``LimitStoreUnavailable`` at once and grants nothing, never lets work through unlimited."""

from __future__ import annotations

import pytest
from support.tcp_proxy import CuttingProxy

from graphmesh.limits import (
    CompositeLimiter,
    ConcurrencyLimiter,
    LimitStoreUnavailable,
    RateLimiter,
    TokenRateLimiter,
)
from graphmesh.limits.postgres import PostgresLimitStore

KEY = "openai"


def limiter(store: PostgresLimitStore) -> CompositeLimiter:
    return CompositeLimiter(
        ConcurrencyLimiter(store, name="concurrency", limit=2, lease=30),
        RateLimiter(store, name="requests", limit=5, window=60),
        TokenRateLimiter(store, name="tokens", limit=100, window=60),
    )


async def test_an_unreachable_database_fails_closed_at_open(postgres_dsn: str) -> None:
    async with CuttingProxy(postgres_dsn) as proxy:
        await proxy.close()
        with pytest.raises(LimitStoreUnavailable, match="cannot be reached"):
            async with PostgresLimitStore.open(proxy.dsn, pool_timeout=0.5):
                pass


async def test_a_database_gone_down_fails_closed_and_grants_nothing(postgres_dsn: str) -> None:
    async with (
        CuttingProxy(postgres_dsn) as proxy,
        PostgresLimitStore.open(proxy.dsn, pool_timeout=0.5) as store,
    ):
        shared = limiter(store)
        assert (await shared.try_acquire(KEY, 10)).granted
        await proxy.close()
        for _ in range(3):  # a broken pooled connection, then no connection at all
            with pytest.raises(LimitStoreUnavailable, match="cannot be reached"):
                await shared.try_acquire(KEY, 10)


async def test_grants_made_before_an_outage_still_count_after_it(postgres_dsn: str) -> None:
    async with (
        CuttingProxy(postgres_dsn) as proxy,
        PostgresLimitStore.open(proxy.dsn, pool_timeout=0.5) as store,
    ):
        shared = limiter(store)
        first = await shared.try_acquire(KEY, 60)
        assert first.granted
        # The proxy's connections break mid-conversation; new ones still get through.
        await proxy.close()
        with pytest.raises(LimitStoreUnavailable):
            await shared.try_acquire(KEY, 10)
    async with PostgresLimitStore.open(postgres_dsn) as direct:
        # The grant made before the outage still counts: 60 of 100 tokens are taken.
        assert not (await limiter(direct).try_acquire(KEY, 50)).granted
        assert (await limiter(direct).try_acquire(KEY, 40)).granted
