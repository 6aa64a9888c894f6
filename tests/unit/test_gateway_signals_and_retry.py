"""Provider rate-limit headers become signals; the retry loop backs off within a deadline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from graphmesh.services.gateway.errors import (
    DeadlineExceeded,
    InvalidRequest,
    ProviderUnavailable,
    RateLimited,
    clean_message,
)
from graphmesh.services.gateway.retry import Deadline, RetryPolicy, with_retries
from graphmesh.services.gateway.signals import MAX_WAIT_S, parse_duration, read_signals
from graphmesh.services.gateway.types import RateSignals

NOW = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("1s", 1.0), ("6m0s", 360.0), ("20ms", 0.02), ("1h2m3.5s", 3723.5), ("0.5s", 0.5)],
)
def test_openai_durations_parse(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "1x", "s", "1s junk", "-1s", "1s1"])
def test_malformed_durations_are_ignored(text: str) -> None:
    assert parse_duration(text) is None


def test_retry_after_reads_ms_seconds_and_http_dates() -> None:
    assert read_signals({"retry-after-ms": "1500"}, now=NOW).retry_after == 1.5
    assert read_signals({"retry-after": "3"}, now=NOW).retry_after == 3.0
    date = "Tue, 01 Jan 2030 12:00:10 GMT"
    assert read_signals({"retry-after": date}, now=NOW).retry_after == 10.0


@pytest.mark.parametrize("value", ["soon", "nan", "inf", "-5", "\x00", "1e400"])
def test_hostile_retry_after_values_are_ignored(value: str) -> None:
    assert read_signals({"retry-after": value}, now=NOW).retry_after is None


def test_waits_are_capped() -> None:
    signals = read_signals({"retry-after": "99999999"}, now=NOW)
    assert signals.retry_after == MAX_WAIT_S


def test_an_exhausted_bucket_pauses_until_its_reset() -> None:
    headers = {
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "2s",
        "x-ratelimit-remaining-tokens": "10",
        "x-ratelimit-reset-tokens": "50s",
    }
    assert read_signals(headers, now=NOW) == RateSignals(pause=2.0)


def test_anthropic_buckets_reset_at_an_rfc3339_time() -> None:
    reset = (NOW + timedelta(seconds=12)).isoformat().replace("+00:00", "Z")
    headers = {
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": reset,
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": "not a time",
    }
    assert read_signals(headers, now=NOW).pause == 12.0


def test_plenty_remaining_says_nothing() -> None:
    headers = {"x-ratelimit-remaining-requests": "499", "x-ratelimit-reset-requests": "1s"}
    assert read_signals(headers, now=NOW) == RateSignals()


def test_clean_message_redacts_secrets_and_strips_what_cannot_travel() -> None:
    text = "bad key sk-123456789\x00 \ud800 tail" + "x" * 2000
    cleaned = clean_message(text, ["sk-123456789"])
    assert "sk-123456789" not in cleaned and "[redacted]" in cleaned
    assert "\x00" not in cleaned
    cleaned.encode("utf-8")  # no lone surrogate left
    assert len(cleaned) <= 500


# The retry loop ---------------------------------------------------------------------------


class Flaky:
    """Fails with the given errors, then answers ``"done"``."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


POLICY = RetryPolicy(attempts=4, base_delay=0.5, max_delay=2.0)


async def test_retryable_failures_are_retried_with_capped_growing_backoff() -> None:
    flaky, sleeps = Flaky(*(ProviderUnavailable("down") for _ in range(3))), Sleeps()
    result = await with_retries(
        flaky, policy=POLICY, deadline=Deadline.after(60), sleep=sleeps, draw=lambda: 0.999
    )
    assert result == "done" and flaky.calls == 4
    assert sleeps.waits == pytest.approx([0.5, 1.0, 2.0], abs=0.01)


async def test_jitter_stays_within_half_and_all_of_the_ceiling() -> None:
    for failures, ceiling in ((1, 0.5), (2, 1.0), (3, 2.0), (9, 2.0)):
        assert POLICY.backoff(failures, lambda: 0.0) == ceiling / 2
        assert POLICY.backoff(failures, lambda: 0.999) <= ceiling


async def test_retries_stop_after_the_last_attempt() -> None:
    flaky = Flaky(*(ProviderUnavailable(f"down {n}") for n in range(9)))
    with pytest.raises(ProviderUnavailable, match="down 3"):
        await with_retries(flaky, policy=POLICY, deadline=Deadline.after(60), sleep=Sleeps())
    assert flaky.calls == 4


async def test_a_wait_past_the_deadline_is_not_taken() -> None:
    flaky, sleeps = Flaky(ProviderUnavailable("down")), Sleeps()
    with pytest.raises(ProviderUnavailable):
        await with_retries(flaky, policy=POLICY, deadline=Deadline.after(0.1), sleep=sleeps)
    assert flaky.calls == 1 and sleeps.waits == []


async def test_the_provider_retry_after_lengthens_the_wait() -> None:
    error = ProviderUnavailable("overloaded", signals=RateSignals(retry_after=1.5))
    flaky, sleeps = Flaky(error), Sleeps()
    await with_retries(flaky, policy=POLICY, deadline=Deadline.after(60), sleep=sleeps)
    assert sleeps.waits == [1.5]


@pytest.mark.parametrize(
    "error", [InvalidRequest("bad"), RateLimited("slow down", retry_after=3.0)]
)
async def test_final_failures_and_429s_are_not_retried(error: Exception) -> None:
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        await with_retries(flaky, policy=POLICY, deadline=Deadline.after(60), sleep=Sleeps())
    assert flaky.calls == 1


async def test_a_passed_deadline_is_deadline_exceeded() -> None:
    with pytest.raises(DeadlineExceeded):
        await with_retries(Flaky(), policy=POLICY, deadline=Deadline.after(-1), sleep=Sleeps())
