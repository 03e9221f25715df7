"""The limiter's decisions, on a hand-driven clock (no sleeping)."""

from __future__ import annotations

import random

import pytest

from studio.synth.backends import duration_seconds, retry_after_seconds
from studio.synth.ratelimit import (
    INITIAL_BUDGET,
    UNTIL_RELEASE,
    WINDOW_S,
    CompletionBudgets,
    Permit,
    RateLimiter,
)


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


async def start_when_allowed(limiter: RateLimiter, clock: Clock, tokens: int) -> Permit:
    """Advance the fake clock to when the limiter lets a request of `tokens` start."""
    while (delay := limiter._delay(tokens)) > 0:
        assert delay < UNTIL_RELEASE
        clock.t += delay
    return await limiter.acquire(tokens)


async def test_a_known_rpm_is_paced_evenly_not_spent_in_the_first_seconds() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=600, tpm=None, max_in_flight=1000, burst_s=1.0, clock=clock)
    starts = []
    for _ in range(1200):
        permit = await start_when_allowed(limiter, clock, 10)
        starts.append(permit.started)
        limiter.release(permit, tokens=10)
    first = starts[0]
    # The old sliding-minute log let all 600 go in the first instant; now at most a second's worth.
    assert sum(1 for t in starts if t < first + 1.0) <= 20  # a full bucket + a second
    assert sum(1 for t in starts if t < first + 10.0) <= 110
    # ... while a minute still uses nearly all of the limit, and never more, in any minute.
    for i, t in enumerate(starts):
        in_minute = sum(1 for u in starts[i:] if u < t + WINDOW_S)
        assert in_minute <= 600
    assert sum(1 for t in starts if first + 30 <= t < first + 90) >= 0.95 * 600


async def test_tokens_never_overrun_a_short_server_bucket_nor_a_sliding_minute() -> None:
    """Simulate a provider that enforces its TPM as a bucket holding 3 s: no request is refused,
    ≥ 95 % of the limit is used, and no sliding minute holds more than the limit either
    (big requests, bigger than our one-second bucket, included)."""
    clock = Clock()
    tpm = 60_000
    limiter = RateLimiter(rpm=None, tpm=tpm, max_in_flight=1000, clock=clock)
    rng = random.Random(7)
    server_level, server_at = 0.0, clock.t
    admitted: list[tuple[float, int]] = []
    while clock.t < 1000.0 + 300:
        tokens = rng.choice([200, 800, 1500, 2500])
        permit = await start_when_allowed(limiter, clock, tokens)
        server_level = max(0.0, server_level - tpm / 60 * (clock.t - server_at)) + tokens
        server_at = clock.t
        assert server_level <= max(3 * tpm / 60, tokens) + 1e-6, "the server would answer 429"
        admitted.append((clock.t, tokens))
        limiter.release(permit, tokens=tokens)
    for i, (t, _) in enumerate(admitted):
        assert sum(n for u, n in admitted[i:] if u < t + WINDOW_S) <= tpm
    used = sum(n for t, n in admitted if 1060 <= t < 1240)
    assert used >= 0.95 * tpm * 3


async def test_known_tpm_counts_the_servers_usage_not_our_guess() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=None, tpm=60_000, max_in_flight=10, burst_s=1.0, clock=clock)
    permit = await limiter.acquire(300)
    assert limiter._delay(600) == 0
    limiter.release(permit, tokens=900)  # the answer was longer than estimated
    assert limiter._log.total == 900
    assert limiter._delay(200) > 0  # the one-second bucket (~975 tokens) is full now


async def test_the_minute_total_is_kept_running_through_corrections_refusals_and_expiry() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=None, tpm=10**9, max_in_flight=100, clock=clock)
    permits = [await limiter.acquire(100) for _ in range(5)]
    limiter.release(permits[0], tokens=250)
    limiter.release(permits[1], rate_limited=True, retry_after=0.0)
    assert limiter._log.total == 250 + 3 * 100 and limiter._log.count == 4
    clock.t += WINDOW_S + 1
    limiter._delay(1)
    assert limiter._log.total == 0 and limiter._log.count == 0


async def test_a_429_halves_the_window_pauses_everyone_and_costs_no_quota() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=None, tpm=6_000, max_in_flight=8, clock=clock)
    permit = await limiter.acquire(90)
    limiter.release(permit, rate_limited=True, retry_after=5.0)
    assert limiter.window == 4
    assert 5.0 <= limiter._delay(10) <= 5.25
    assert limiter.stats.rate_limited == 1
    clock.t += 6
    assert limiter._delay(90) == 0  # the refused request was refunded
    for _ in range(40):
        permit = await start_when_allowed(limiter, clock, 10)
        limiter.release(permit, tokens=10)
    assert limiter.window == 8  # grew back, capped at the ceiling


async def test_without_known_limits_the_first_request_goes_alone() -> None:
    limiter = RateLimiter(rpm=None, tpm=None, max_in_flight=2, clock=Clock())
    first = await limiter.acquire(1)
    assert limiter._delay(1) == UNTIL_RELEASE  # its answer may announce the limits
    limiter.release(first, tokens=1)
    await limiter.acquire(1)
    await limiter.acquire(1)
    assert limiter._delay(1) == UNTIL_RELEASE  # now capped by the window


async def test_headers_teach_unknown_limits_and_exhausted_requests_pause() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=None, tpm=None, max_in_flight=4, clock=clock)
    permit = await limiter.acquire(10)
    limiter.release(
        permit,
        tokens=10,
        headers={
            "x-ratelimit-limit-tokens": "8000",
            "x-ratelimit-limit-requests": "30",
            "x-ratelimit-remaining-requests": "0",
            "x-ratelimit-reset-requests": "2m0.5s",
        },
    )
    assert (limiter.tpm, limiter.rpm) == (8000, 30)
    assert limiter._delay(10) == pytest.approx(120.5)


async def test_on_groq_the_requests_headers_count_per_day() -> None:
    limiter = RateLimiter(
        rpm=None, tpm=None, max_in_flight=4, requests_header_per_day=True, clock=Clock()
    )
    permit = await limiter.acquire(10)
    headers = {"x-ratelimit-limit-requests": "1000", "x-ratelimit-limit-tokens": "8000"}
    limiter.release(permit, tokens=10, headers=headers)
    assert (limiter.rpm, limiter.tpm) == (None, 8000)  # 1,000 a day is no per-minute pace


async def test_remaining_tokens_is_the_truth_when_it_says_there_is_less_room() -> None:
    clock = Clock()
    limiter = RateLimiter(rpm=None, tpm=62_500, max_in_flight=4, burst_s=2.0, clock=clock)
    assert limiter._delay(1500) == 0  # our bucket holds 2,000
    permit = await limiter.acquire(100)
    limiter.release(permit, tokens=100, headers={"x-ratelimit-remaining-tokens": "500"})
    assert limiter._delay(1500) == pytest.approx(1.0)  # 1,000 more at 1,000 tokens/s
    limiter.release(
        await limiter.acquire(1), tokens=1, headers={"x-ratelimit-remaining-tokens": "90000"}
    )
    assert limiter._delay(1500) > 0  # more room than we think is not believed


async def test_a_known_limit_is_not_overridden_by_headers() -> None:
    limiter = RateLimiter(rpm=None, tpm=500, max_in_flight=4, clock=Clock())
    permit = await limiter.acquire(10)
    limiter.release(permit, tokens=10, headers={"x-ratelimit-limit-tokens": "8000"})
    assert limiter.tpm == 500


def test_the_estimate_is_prompt_plus_the_budget_asked_for_and_learns_the_ratio() -> None:
    limiter = RateLimiter(rpm=None, tpm=None, max_in_flight=1, clock=Clock())
    for _ in range(30):
        limiter.learn(4000, tokens_in=1000)
    assert limiter.estimate(4000, 300) == pytest.approx(1300, abs=15)


def test_budgets_learn_a_high_percentile_with_headroom_within_the_maximum() -> None:
    budgets = CompletionBudgets()
    assert budgets.budget("dialogue", 8192) == INITIAL_BUDGET
    assert budgets.budget("dialogue", 500) == 500
    for n in range(40):
        budgets.observe("cbt_technique", 30 + n % 5)
        budgets.observe("dialogue", 1500 + 20 * n)
    assert 40 <= budgets.budget("cbt_technique", 8192) <= 80  # a few tokens
    assert 2300 <= budgets.budget("dialogue", 8192) <= 3000  # thousands
    assert budgets.budget("dialogue", 2000) == 2000


def test_a_cut_answer_raises_the_budget_for_good() -> None:
    budgets = CompletionBudgets()
    for _ in range(10):
        budgets.observe("cbt_plan", 100)
    small = budgets.budget("cbt_plan", 8192)
    assert budgets.larger("cbt_plan", small, 8192) == 4 * small
    assert budgets.larger("cbt_plan", 4000, 8192) == 8192
    budgets.cut("cbt_plan", small)
    assert budgets.budget("cbt_plan", 8192) >= 2 * small


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
