"""Limiter contract: every kind behaves the same on every store (memory, SQLite, Postgres).

Windows and leases are short; every wait is bounded by a deadline instead of asserting how
long something took, and grant times come from the store's own clock.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest

from graphmesh.limits import (
    CompositeLimiter,
    ConcurrencyLimiter,
    LimiterBase,
    LimitStore,
    MemoryLimitStore,
    Permit,
    RateLimiter,
    TokenRateLimiter,
    seconds_from_now,
)
from graphmesh.limits.postgres import PostgresLimitStore
from graphmesh.limits.sqlite import SqliteLimitStore

BACKENDS = ("memory", "sqlite", "postgres")
SHARED_BACKENDS = ("sqlite", "postgres")  # several stores, even processes, on one location
KINDS = ("rate", "concurrency", "composite")

RATE_LIMIT = 3
WINDOW = 0.4
HOLDERS = 2
LEASE = 30.0  # long: only the expiry tests let a lease run out
SHORT_LEASE = 0.3
RECHECK = 0.05
TOKEN_LIMIT = 10
LONG_WINDOW = 30.0  # for token tests that never wait for a window to pass
DEADLINE = 10.0  # generous bound on any wait that must end
EPSILON = 1e-6  # float rounding of database timestamps
CLOCK_SLACK = timedelta(milliseconds=50)  # between reading our clock and the store's


@asynccontextmanager
async def open_store(backend: str, request: pytest.FixtureRequest) -> AsyncIterator[LimitStore]:
    """A store of ``backend``; every store opened in one test shares one location."""
    if backend == "memory":
        yield MemoryLimitStore()
    elif backend == "sqlite":
        async with SqliteLimitStore.open(request.getfixturevalue("sqlite_path")) as store:
            yield store
    else:
        async with PostgresLimitStore.open(request.getfixturevalue("postgres_dsn")) as store:
            yield store


@pytest.fixture(params=BACKENDS)
async def store(request: pytest.FixtureRequest) -> AsyncIterator[LimitStore]:
    """Each store backend in turn."""
    async with open_store(request.param, request) as opened:
        yield opened


def rate_limiter(store: LimitStore, name: str = "rate") -> RateLimiter:
    return RateLimiter(store, name=name, limit=RATE_LIMIT, window=WINDOW, recheck_interval=RECHECK)


def concurrency_limiter(
    store: LimitStore, *, lease: float = LEASE, limit: int = HOLDERS
) -> ConcurrencyLimiter:
    return ConcurrencyLimiter(
        store, name="concurrency", limit=limit, lease=lease, recheck_interval=RECHECK
    )


@pytest.fixture
def rate(store: LimitStore) -> RateLimiter:
    return rate_limiter(store)


@pytest.fixture
def concurrency(store: LimitStore) -> ConcurrencyLimiter:
    return concurrency_limiter(store)


@pytest.fixture
def composite(concurrency: ConcurrencyLimiter, rate: RateLimiter) -> CompositeLimiter:
    return CompositeLimiter(concurrency, rate)


@pytest.fixture(params=KINDS)
def limiter(
    request: pytest.FixtureRequest,
    rate: RateLimiter,
    concurrency: ConcurrencyLimiter,
    composite: CompositeLimiter,
) -> LimiterBase:
    """Each kind of limiter in turn (on each store)."""
    kinds: dict[str, LimiterBase] = {
        "rate": rate,
        "concurrency": concurrency,
        "composite": composite,
    }
    return kinds[request.param]


async def fill(limiter: LimiterBase, key: str) -> list[Permit]:
    """Take every slot ``key`` has now; the next try is refused."""
    permits = []
    while (decision := await limiter.try_acquire(key)).permit is not None:
        permits.append(decision.permit)
        assert len(permits) <= RATE_LIMIT, "the limit did not hold"
    return permits


async def acquire_within(
    limiter: LimiterBase, key: str, cost: int = 1, deadline: float = DEADLINE
) -> Permit:
    async with asyncio.timeout(deadline):
        return await limiter.acquire(key, cost)


def seconds(later: datetime, earlier: datetime) -> float:
    return (later - earlier).total_seconds()


def assert_window_holds(times: Sequence[datetime], limit: int, window: float) -> None:
    """No ``limit + 1`` grants fall inside any window: the (i+limit)-th grant comes at
    least ``window`` after the i-th."""
    ordered = sorted(times)
    gaps = [seconds(ordered[i + limit], ordered[i]) for i in range(len(ordered) - limit)]
    assert all(gap >= window - EPSILON for gap in gaps), gaps


# Every kind of limiter ----------------------------------------------------------------


async def test_set_next_available_delays_every_grant(limiter: LimiterBase) -> None:
    at = seconds_from_now(0.3)
    await limiter.set_next_available("openai", at)
    refused = await limiter.try_acquire("openai")
    assert not refused.granted
    assert refused.retry_after > 0
    assert await limiter.next_available("openai") >= at - timedelta(milliseconds=1)
    permit = await acquire_within(limiter, "openai")
    assert permit.granted_at >= at - timedelta(milliseconds=1)


async def test_set_next_available_only_moves_later(limiter: LimiterBase) -> None:
    await limiter.set_next_available("openai", seconds_from_now(30))
    await limiter.set_next_available("openai", seconds_from_now(0.01))
    assert await limiter.next_available("openai") > seconds_from_now(20)
    assert not (await limiter.try_acquire("openai")).granted


async def test_clear_forgets_grants_and_blocks(limiter: LimiterBase) -> None:
    await fill(limiter, "openai")
    await limiter.set_next_available("openai", seconds_from_now(30))
    await limiter.clear("openai")
    assert (await limiter.try_acquire("openai")).granted


async def test_keys_are_independent(limiter: LimiterBase) -> None:
    await fill(limiter, "openai")
    await limiter.set_next_available("openai", seconds_from_now(30))
    assert await limiter.next_available("hf") <= datetime.now(UTC) + CLOCK_SLACK
    assert (await limiter.try_acquire("hf")).granted


async def test_next_available_is_now_when_a_slot_is_free(limiter: LimiterBase) -> None:
    assert await limiter.next_available("openai") <= datetime.now(UTC) + CLOCK_SLACK


async def test_slot_grants_a_permit_for_its_block(limiter: LimiterBase) -> None:
    async with limiter.slot("openai") as permit:
        assert permit.key == "openai"
        assert permit.granted_at <= datetime.now(UTC) + CLOCK_SLACK


async def test_slot_waits_for_the_next_slot(limiter: LimiterBase) -> None:
    await limiter.set_next_available("openai", seconds_from_now(0.2))
    async with asyncio.timeout(DEADLINE), limiter.slot("openai") as permit:
        assert permit.key == "openai"


async def test_naive_times_and_blank_keys_are_refused(limiter: LimiterBase) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await limiter.set_next_available("openai", datetime.now())
    with pytest.raises(ValueError, match="key"):
        await limiter.try_acquire("")


# Rate limiters ------------------------------------------------------------------------


async def test_rate_grants_the_limit_then_says_when_to_retry(rate: RateLimiter) -> None:
    permits = await fill(rate, "openai")
    assert len(permits) == RATE_LIMIT
    refused = await rate.try_acquire("openai")
    assert not refused.granted
    assert 0 < refused.retry_after <= WINDOW


async def test_rate_next_available_is_when_the_oldest_grant_leaves_the_window(
    rate: RateLimiter,
) -> None:
    permits = await fill(rate, "openai")
    expected = permits[0].granted_at + timedelta(seconds=WINDOW)
    assert abs(seconds(await rate.next_available("openai"), expected)) < 1e-3


async def test_rate_waiter_gets_a_slot_one_window_after_the_oldest(rate: RateLimiter) -> None:
    permits = await fill(rate, "openai")
    late = await acquire_within(rate, "openai")
    assert seconds(late.granted_at, permits[0].granted_at) >= WINDOW - EPSILON


async def test_rate_never_exceeds_the_limit_in_any_window(rate: RateLimiter) -> None:
    async with asyncio.timeout(DEADLINE):
        permits = await asyncio.gather(*(rate.acquire("openai") for _ in range(10)))
    assert len({permit.token for permit in permits}) == 10
    assert_window_holds([permit.granted_at for permit in permits], RATE_LIMIT, WINDOW)


async def test_rate_release_keeps_the_grant_counted(rate: RateLimiter) -> None:
    for permit in await fill(rate, "openai"):
        await rate.release(permit)
    assert not (await rate.try_acquire("openai")).granted


async def test_rate_cancel_gives_an_unused_grant_back(rate: RateLimiter) -> None:
    permits = await fill(rate, "openai")
    await rate.cancel(permits[-1])
    await rate.cancel(permits[-1])  # idempotent
    assert (await rate.try_acquire("openai")).granted
    assert not (await rate.try_acquire("openai")).granted


async def test_rate_limiters_sharing_a_store_are_independent(store: LimitStore) -> None:
    await fill(rate_limiter(store, "openai-rpm"), "openai")
    assert len(await fill(rate_limiter(store, "openai-tpm"), "openai")) == RATE_LIMIT


async def test_rate_permits_hold_nothing_to_renew(rate: RateLimiter) -> None:
    permit = await acquire_within(rate, "openai")
    assert permit.expires_at is None
    assert await rate.renew(permit) == permit


async def test_rate_and_concurrency_count_a_permit_once_whatever_its_cost(
    rate: RateLimiter, concurrency: ConcurrencyLimiter
) -> None:
    assert len(await fill_costing(rate, "openai", 1000)) == RATE_LIMIT
    assert len(await fill_costing(concurrency, "openai", 1000)) == HOLDERS


async def test_costs_must_be_positive_integers(limiter: LimiterBase) -> None:
    for cost in (0, -1, True, 1.5):
        with pytest.raises(ValueError, match="cost"):
            await limiter.try_acquire("openai", cost)  # type: ignore[arg-type]


# Token rate limiters (weighted by cost) ----------------------------------------------------


def token_limiter(store: LimitStore, *, window: float = LONG_WINDOW) -> TokenRateLimiter:
    return TokenRateLimiter(
        store, name="tokens", limit=TOKEN_LIMIT, window=window, recheck_interval=RECHECK
    )


async def fill_costing(limiter: LimiterBase, key: str, cost: int) -> list[Permit]:
    """Take permits of ``cost`` until refused."""
    permits = []
    while (decision := await limiter.try_acquire(key, cost)).permit is not None:
        permits.append(decision.permit)
        assert len(permits) <= TOKEN_LIMIT, "the limit did not hold"
    return permits


async def test_token_rate_charges_each_permit_its_cost(store: LimitStore) -> None:
    tokens = token_limiter(store)
    assert len(await fill_costing(tokens, "openai", 4)) == 2  # 8 of 10
    assert not (await tokens.try_acquire("openai", 3)).granted
    assert (await tokens.try_acquire("openai", 2)).granted  # exactly the limit
    assert not (await tokens.try_acquire("openai", 1)).granted


async def test_token_rate_refusal_says_when_the_cost_fits(store: LimitStore) -> None:
    tokens = token_limiter(store, window=WINDOW)
    big, small = [await acquire_within(tokens, "openai", cost) for cost in (6, 4)]
    refused = await tokens.try_acquire("openai", 5)
    assert not refused.granted
    assert 0 < refused.retry_after <= WINDOW
    late = await acquire_within(tokens, "openai", 5)
    # Room for 5 only once the 6 expired; the 4 alone leaves it.
    assert seconds(late.granted_at, big.granted_at) >= WINDOW - EPSILON
    assert late.cost == 5 and small.cost == 4


async def test_token_rate_charge_corrects_the_estimate(store: LimitStore) -> None:
    tokens = token_limiter(store)
    estimated = await acquire_within(tokens, "openai", 8)
    corrected = await tokens.charge(estimated, 2)
    assert corrected is not None and corrected.cost == 2
    assert (await tokens.try_acquire("openai", 8)).granted  # 2 + 8
    assert not (await tokens.try_acquire("openai", 1)).granted
    assert await tokens.charge(corrected, 0) is not None
    assert (await tokens.try_acquire("openai", 2)).granted


async def test_token_rate_charge_above_the_estimate_holds_later_takes(store: LimitStore) -> None:
    tokens = token_limiter(store)
    permit = await acquire_within(tokens, "openai", 1)
    assert await tokens.charge(permit, TOKEN_LIMIT) is not None
    assert not (await tokens.try_acquire("openai", 1)).granted


async def test_token_rate_charge_after_the_window_counts_nothing(store: LimitStore) -> None:
    tokens = token_limiter(store, window=0.1)
    permit = await acquire_within(tokens, "openai", 3)
    await asyncio.sleep(0.3)
    assert await tokens.charge(permit, TOKEN_LIMIT) is None
    assert (await tokens.try_acquire("openai", TOKEN_LIMIT)).granted


async def test_token_rate_refuses_a_cost_above_the_limit(store: LimitStore) -> None:
    with pytest.raises(ValueError, match="exceeds the limit"):
        await token_limiter(store).try_acquire("openai", TOKEN_LIMIT + 1)


async def test_composite_charge_reaches_the_token_member(store: LimitStore) -> None:
    tokens = token_limiter(store)
    requests = rate_limiter(store)
    both = CompositeLimiter(requests, tokens)
    permit = await acquire_within(both, "openai", 9)
    assert permit.cost == 9
    charged = await both.charge(permit, 1)
    assert charged is not None and charged.cost == 1
    assert (await tokens.try_acquire("openai", 9)).granted
    assert len(await fill(requests, "openai")) == RATE_LIMIT - 1


# Concurrency limiters -----------------------------------------------------------------


async def test_concurrency_grants_the_limit_then_refuses(concurrency: ConcurrencyLimiter) -> None:
    permits = await fill(concurrency, "openai")
    assert len(permits) == HOLDERS
    refused = await concurrency.try_acquire("openai")
    assert not refused.granted
    assert 0 < refused.retry_after <= LEASE


async def test_concurrency_release_frees_a_slot(concurrency: ConcurrencyLimiter) -> None:
    permits = await fill(concurrency, "openai")
    await concurrency.release(permits[0])
    await concurrency.release(permits[0])  # idempotent
    assert (await concurrency.try_acquire("openai")).granted
    assert not (await concurrency.try_acquire("openai")).granted


async def test_concurrency_waiter_takes_a_released_slot(concurrency: ConcurrencyLimiter) -> None:
    permits = await fill(concurrency, "openai")
    waiter = asyncio.create_task(concurrency.acquire("openai"))
    await asyncio.sleep(0.1)
    assert not waiter.done()  # nothing was released, and leases are long
    await concurrency.release(permits[0])
    async with asyncio.timeout(DEADLINE):
        permit = await waiter
    assert permit.key == "openai"


async def test_concurrency_slots_never_hold_more_than_the_limit(
    concurrency: ConcurrencyLimiter,
) -> None:
    active, most = 0, 0

    async def work() -> None:
        nonlocal active, most
        async with concurrency.slot("openai"):
            active += 1
            most = max(most, active)
            await asyncio.sleep(0.02)
            active -= 1

    async with asyncio.timeout(DEADLINE):
        await asyncio.gather(*(work() for _ in range(8)))
    assert most == HOLDERS
    assert len(await fill(concurrency, "openai")) == HOLDERS  # every slot came back


async def test_concurrency_slot_of_a_crashed_holder_expires(store: LimitStore) -> None:
    limiter = concurrency_limiter(store, lease=SHORT_LEASE)
    crashed = await fill(limiter, "openai")  # never released
    assert crashed[0].expires_at is not None
    assert 0 < (await limiter.try_acquire("openai")).retry_after <= SHORT_LEASE
    permit = await acquire_within(limiter, "openai")
    assert permit.granted_at >= min(p.expires_at for p in crashed if p.expires_at)


async def test_concurrency_renew_extends_the_lease(store: LimitStore) -> None:
    limiter = concurrency_limiter(store, lease=SHORT_LEASE, limit=1)
    permit = await acquire_within(limiter, "openai")
    renewed = await limiter.renew(permit)
    assert renewed is not None and renewed.expires_at and permit.expires_at
    assert renewed.expires_at > permit.expires_at
    assert renewed.token == permit.token
    assert abs(seconds(await limiter.next_available("openai"), renewed.expires_at)) < 1e-3


async def test_concurrency_renew_after_the_lease_lapsed_fails(store: LimitStore) -> None:
    limiter = concurrency_limiter(store, lease=0.1, limit=1)
    permit = await acquire_within(limiter, "openai")
    await asyncio.sleep(0.3)
    assert await limiter.renew(permit) is None


async def test_concurrency_slot_keeps_a_long_task_holding(store: LimitStore) -> None:
    limiter = concurrency_limiter(store, lease=0.6, limit=1)
    async with limiter.slot("openai"):
        await asyncio.sleep(1.5)  # more than two leases: only renewals keep the slot
        assert not (await limiter.try_acquire("openai")).granted
    assert (await limiter.try_acquire("openai")).granted


async def test_concurrency_release_after_clear_is_harmless(
    concurrency: ConcurrencyLimiter,
) -> None:
    permits = await fill(concurrency, "openai")
    await concurrency.clear("openai")
    fresh = await fill(concurrency, "openai")
    await concurrency.release(permits[0])  # already forgotten: must not free a fresh slot
    assert len(fresh) == HOLDERS
    assert not (await concurrency.try_acquire("openai")).granted


# Composite limiters -------------------------------------------------------------------


async def test_composite_refused_by_rate_leaks_no_concurrency_slot(
    composite: CompositeLimiter, concurrency: ConcurrencyLimiter, rate: RateLimiter
) -> None:
    await fill(rate, "openai")
    assert not (await composite.try_acquire("openai")).granted
    assert len(await fill(concurrency, "openai")) == HOLDERS


async def test_composite_refused_by_concurrency_leaks_no_rate_grant(
    composite: CompositeLimiter, concurrency: ConcurrencyLimiter, rate: RateLimiter
) -> None:
    await fill(concurrency, "openai")
    assert not (await composite.try_acquire("openai")).granted
    assert len(await fill(rate, "openai")) == RATE_LIMIT


async def test_composite_release_frees_the_slot_but_counts_the_grant(
    composite: CompositeLimiter, concurrency: ConcurrencyLimiter, rate: RateLimiter
) -> None:
    permit = await acquire_within(composite, "openai")
    await composite.release(permit)
    assert len(await fill(concurrency, "openai")) == HOLDERS
    assert len(await fill(rate, "openai")) == RATE_LIMIT - 1


async def test_composite_permit_is_made_of_member_permits(composite: CompositeLimiter) -> None:
    permit = await acquire_within(composite, "openai")
    held, counted = permit.parts
    assert held.expires_at is not None and counted.expires_at is None
    assert permit.expires_at == held.expires_at
    renewed = await composite.renew(permit)
    assert renewed is not None and renewed.token == permit.token
    assert renewed.expires_at and renewed.expires_at >= held.expires_at


async def test_composite_next_available_is_the_latest_member_time(
    composite: CompositeLimiter, concurrency: ConcurrencyLimiter, rate: RateLimiter
) -> None:
    await rate.set_next_available("openai", seconds_from_now(5))
    later = seconds_from_now(10)
    await concurrency.set_next_available("openai", later)
    assert await composite.next_available("openai") == await concurrency.next_available("openai")
    assert abs(seconds(await composite.next_available("openai"), later)) < 1e-3


async def test_composite_set_next_available_reaches_every_member(
    composite: CompositeLimiter, concurrency: ConcurrencyLimiter, rate: RateLimiter
) -> None:
    await composite.set_next_available("openai", seconds_from_now(30))
    for member in (concurrency, rate):
        assert await member.next_available("openai") > seconds_from_now(20)
        assert not (await member.try_acquire("openai")).granted


async def test_composite_of_limiters_on_different_stores_is_all_or_nothing_too(
    store: LimitStore,
) -> None:
    held = concurrency_limiter(MemoryLimitStore())  # not the store under test: no batching
    counted = rate_limiter(store)
    both = CompositeLimiter(held, counted)
    await fill(counted, "openai")
    assert not (await both.try_acquire("openai")).granted
    assert len(await fill(held, "openai")) == HOLDERS
    await both.clear("openai")
    permit = await acquire_within(both, "openai", 3)
    assert permit.cost == 3 and len(permit.parts) == 2


# Several stores on one location (SQLite file, Postgres database) ------------------------


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
async def test_rate_limit_holds_across_stores_on_one_location(
    backend: str, request: pytest.FixtureRequest
) -> None:
    async with open_store(backend, request) as first, open_store(backend, request) as second:
        limiters = [rate_limiter(first), rate_limiter(second)]
        async with asyncio.timeout(DEADLINE):
            permits = await asyncio.gather(*(limiters[i % 2].acquire("openai") for i in range(9)))
    assert_window_holds([permit.granted_at for permit in permits], RATE_LIMIT, WINDOW)


@pytest.mark.parametrize("backend", SHARED_BACKENDS)
async def test_concurrency_limit_holds_across_stores_on_one_location(
    backend: str, request: pytest.FixtureRequest
) -> None:
    async with open_store(backend, request) as first, open_store(backend, request) as second:
        here, there = concurrency_limiter(first), concurrency_limiter(second)
        held = await fill(here, "openai")
        assert not (await there.try_acquire("openai")).granted
        await here.release(held[0])
        assert (await acquire_within(there, "openai")).key == "openai"
