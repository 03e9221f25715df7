"""The limiter's decisions, on a hand-driven clock (no sleeping)."""

from __future__ import annotations

import pytest

from studio.synth.backends import duration_seconds, retry_after_seconds
from studio.synth.ratelimit import MARGIN_S, WINDOW_S, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def test_known_rpm_allows_a_full_minute_then_waits_for_the_oldest() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=3, tpm=None, max_in_flight=10, clock=clock)
    permits = []
    for _ in range(3):
        permits.append(await limiter.acquire(10))
        clock.t += 1
    assert limiter._delay(10) == pytest.approx(WINDOW_S + MARGIN_S - 3)
    for permit in permits:
        limiter.release(permit, tokens=10)
    clock.t = 1000.0 + WINDOW_S + MARGIN_S
    assert limiter._delay(10) == 0


async def test_known_tpm_counts_the_servers_usage_not_our_guess() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=None, tpm=1000, max_in_flight=10, clock=clock)
    permit = await limiter.acquire(300)
    assert limiter._delay(600) == 0
    limiter.release(permit, tokens=900)  # the answer was longer than estimated
    assert limiter._delay(200) > 0
    assert limiter._delay(100) == 0


async def test_a_429_halves_the_window_and_pauses_everyone() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=None, tpm=None, max_in_flight=8, clock=clock)
    permit = await limiter.acquire(10)
    limiter.release(permit, rate_limited=True, retry_after=5.0)
    assert limiter.window == 4
    assert 5.0 <= limiter._delay(10) <= 5.25
    assert limiter.stats.rate_limited == 1
    clock.t += 6
    for _ in range(40):
        permit = await limiter.acquire(10)
        limiter.release(permit, tokens=10)
    assert limiter.window == 8  # grew back, capped at the ceiling


async def test_in_flight_is_capped_by_the_window() -> None:
    limiter = RateLimiter(rpm=None, tpm=None, max_in_flight=2, clock=Clock())
    await limiter.acquire(1)
    await limiter.acquire(1)
    assert limiter._delay(1) == 3600.0  # waits for a release


async def test_headers_teach_an_unknown_token_limit_and_exhausted_requests_pause() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=None, tpm=None, max_in_flight=4, clock=clock)
    permit = await limiter.acquire(10)
    limiter.release(
        permit,
        tokens=10,
        headers={
            "x-ratelimit-limit-tokens": "8000",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "2m0.5s",
        },
    )
    assert limiter.tpm == 8000
    assert limiter._delay(10) == pytest.approx(120.5)


async def test_a_known_limit_is_not_overridden_by_headers() -> None:
    limiter = RateLimiter(rpm=None, tpm=500, max_in_flight=4, clock=Clock())
    permit = await limiter.acquire(10)
    limiter.release(permit, tokens=10, headers={"x-ratelimit-limit-tokens": "8000"})
    assert limiter.tpm == 500


def test_estimates_learn_from_usage() -> None:
    limiter = RateLimiter(rpm=None, tpm=None, max_in_flight=1, clock=Clock())
    first = limiter.estimate(4000, "plan", 8192)
    for _ in range(10):
        limiter.learn(4000, "plan", tokens_in=1000, tokens_out=200)
    assert limiter.estimate(4000, "plan", 8192) < first
    assert limiter.estimate(4000, "plan", 8192) == pytest.approx(1000 + 220, rel=0.1)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [("7.66s", 7.66), ("2m59.56s", 179.56), ("1h2m", 3720), ("120ms", 0.12), ("3", 3.0)],
)
def test_groq_style_durations(value: str, seconds: float) -> None:
    assert duration_seconds(value) == pytest.approx(seconds)


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"retry-after": "2"}) == 2
    assert retry_after_seconds({"retry-after-ms": "250"}) == 0.25
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0
