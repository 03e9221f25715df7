"""Requests- and tokens-per-minute limiting that paces evenly under a known limit and adapts to an
unknown one; per-stage completion budgets learned from the answers seen.

Providers state limits per minute but enforce them over much shorter windows (OpenAI: 60,000 RPM
"may be enforced as 1,000 requests per second"), so a run that spends its minute in the first
seconds collects 429s. Known limits (`--rpm`, `--tpm`, a plan, or the `x-ratelimit-limit-*` headers
a provider sends) are therefore kept with a token bucket per limit (GCRA: one number per limit, the
time at which the bucket would be empty) that refills at the limit's rate and holds `burst_s`
seconds of it. Its rate is the limit spread over `60 + burst_s + MARGIN_S` seconds, so a full
bucket plus a minute at that rate still fits in one sliding minute; a running total over the last
minute caps what a bucket would allow against a sliding-minute server too (one request bigger
than the bucket goes when the bucket is empty).

Requests are counted the way providers count them: prompt tokens (characters through a learned
characters-per-token ratio) plus the `max_tokens` the request asks for. The server's
`x-ratelimit-remaining-tokens` is the truth when it says there is less room than we think. On
Groq the `-requests` headers count per day (not adopted as a per-minute rate; "remaining 0"
pauses until reset) and the `-tokens` headers per minute.

Without known limits the limiter adapts: the first request goes alone (its answer may announce
the limits), a 429 halves the number of requests in flight and pauses everyone until
`retry-after`; successes grow it back (AIMD).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from studio.synth.backends import duration_seconds

WINDOW_S = 60.0
#: Our clock starts a request a little before the server counts it: pace a little under the limit.
MARGIN_S = 0.5
DEFAULT_BURST_S = 1.0
INITIAL_CHARS_PER_TOKEN = 3.5
#: Completion budget for a stage before any answer of its kind was seen.
INITIAL_BUDGET = 1024
#: Budget = this percentile of recent completions, times HEADROOM, plus a small constant.
BUDGET_PERCENTILE = 0.95
BUDGET_HEADROOM = 1.25
BUDGET_MIN = 64
BUDGET_SAMPLES = 50
#: Waiting on a release rather than on the clock.
UNTIL_RELEASE = 3600.0


@dataclass(slots=True)
class Permit:
    started: float
    tokens: int
    kind: str
    counted: bool = True
    """Still in the last-minute log (a 429 takes it out: a refused request costs no quota)."""


@dataclass(slots=True)
class LimiterStats:
    requests: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0


class Bucket:
    """A token bucket kept as GCRA: `tat` is when the bucket would be empty.

    Holds `burst_s` seconds of the rate; an amount larger than that goes only into an empty
    bucket (and leaves it in debt), so one big request is never refused forever.
    """

    __slots__ = ("burst_s", "capacity", "limit", "rate", "tat")

    def __init__(self, per_minute: int, burst_s: float) -> None:
        self.tat = 0.0
        self.burst_s = burst_s
        self.limit = per_minute
        self.rate = 1.0
        self.capacity = 1.0
        self.set_limit(per_minute)

    def set_limit(self, per_minute: int) -> None:
        self.limit = per_minute
        # A full bucket plus a minute at this rate still fits in one sliding minute.
        self.rate = per_minute / (WINDOW_S + self.burst_s + MARGIN_S)
        self.capacity = max(1.0, self.rate * self.burst_s)

    def level(self, now: float) -> float:
        return max(0.0, self.tat - now) * self.rate

    def delay(self, amount: float, now: float) -> float:
        excess = self.level(now) + amount - max(self.capacity, amount)
        # A float hair over the line is on it (a tiny delay could not move a monotonic clock).
        return excess / self.rate if excess > 1e-6 * self.capacity else 0.0

    def take(self, amount: float, now: float) -> None:
        self.tat = max(self.tat, now) + amount / self.rate

    def correct(self, delta: float) -> None:
        """The request cost `delta` more (or less) than was taken when it started."""
        self.tat += delta / self.rate

    def at_most(self, available: float, now: float) -> None:
        """The server says only `available` is left now: never believe in more."""
        level = self.capacity - max(0.0, available)
        if level > self.level(now):
            self.tat = now + level / self.rate


class MinuteLog:
    """What started in the last minute, with a running total (no re-summing on each check)."""

    __slots__ = ("count", "entries", "horizon", "total")

    def __init__(self) -> None:
        self.entries: deque[Permit] = deque()
        self.count = 0
        self.total = 0
        self.horizon = WINDOW_S + MARGIN_S

    def expire(self, now: float) -> None:
        entries = self.entries
        while entries and (not entries[0].counted or entries[0].started <= now - self.horizon):
            self.drop(entries.popleft())

    def delay(self, tokens: int, limit: int, now: float, *, count_requests: bool) -> float:
        """Seconds until `tokens` more (or one more request) fit in the last minute."""
        if count_requests:
            if self.count < limit:
                return 0.0
            need = self.count - limit + 1
        elif self.total + tokens <= limit:
            return 0.0
        else:
            need = self.total + tokens - limit
        # Rare (only when the buckets would overshoot a sliding minute): walk to the entry whose
        # expiry makes room.
        for permit in self.entries:
            if permit.counted:
                need -= 1 if count_requests else permit.tokens
                if need <= 0:
                    return max(0.01, permit.started + self.horizon - now)
        return 0.0

    def add(self, permit: Permit) -> None:
        self.entries.append(permit)
        self.count += 1
        self.total += permit.tokens

    def drop(self, permit: Permit) -> None:
        if permit.counted:
            permit.counted = False
            self.count -= 1
            self.total -= permit.tokens

    def recount(self, permit: Permit, tokens: int) -> None:
        if permit.counted:
            self.total += tokens - permit.tokens
        permit.tokens = tokens


class CompletionBudgets:
    """The `max_tokens` each kind of call asks for, learned from the answers seen.

    A technique needs a few tokens, a dialogue thousands; providers charge `max_tokens` against
    the token limit up front, so asking every call for the model's maximum spends the limit on
    reserve. The budget is a high percentile of recent completions with headroom, bounded by the
    stage's maximum; an answer cut at its budget teaches a larger one.
    """

    def __init__(self, initial: int = INITIAL_BUDGET) -> None:
        self.initial = initial
        self._seen: dict[str, deque[int]] = {}
        self._floor: dict[str, int] = {}

    def known(self, kind: str) -> bool:
        return bool(self._seen.get(kind))

    def budget(self, kind: str, maximum: int) -> int:
        seen = self._seen.get(kind)
        if not seen:
            wanted = max(self.initial, self._floor.get(kind, 0))
        else:
            ordered = sorted(seen)
            high = ordered[min(len(ordered) - 1, math.ceil(BUDGET_PERCENTILE * len(ordered)) - 1)]
            wanted = max(int(high * BUDGET_HEADROOM) + 16, self._floor.get(kind, 0))
        return max(1, min(maximum, max(BUDGET_MIN, wanted)))

    def larger(self, kind: str, budget: int, maximum: int) -> int:
        """The budget for the one retry of an answer cut at `budget`."""
        return min(maximum, max(budget * 4, self.budget(kind, maximum)))

    def observe(self, kind: str, tokens_out: int) -> None:
        if tokens_out > 0:
            self._seen.setdefault(kind, deque(maxlen=BUDGET_SAMPLES)).append(tokens_out)

    def cut(self, kind: str, budget: int) -> None:
        """An answer needed more than `budget`: never ask for that little again."""
        self._floor[kind] = max(self._floor.get(kind, 0), budget * 2)


class RateLimiter:
    def __init__(
        self,
        *,
        rpm: int | None,
        tpm: int | None,
        max_in_flight: int,
        burst_s: float = DEFAULT_BURST_S,
        requests_header_per_day: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.burst_s = burst_s
        self.requests = Bucket(rpm, burst_s) if rpm else None
        self.tokens = Bucket(tpm, burst_s) if tpm else None
        self.tpm_learned = False
        self.rpm_learned = False
        self.requests_header_per_day = requests_header_per_day
        """Groq: `x-ratelimit-*-requests` count per day, so they are no per-minute rate."""
        self.max_in_flight = max_in_flight
        self.window = float(max_in_flight)
        """AIMD: how many requests may be in flight now (≤ max_in_flight)."""
        self.probing = rpm is None and tpm is None
        """No limit known yet: the first request goes alone; its answer may announce the limits."""
        self.in_flight = 0
        self.paused_until = 0.0
        self.stats = LimiterStats()
        self._clock = clock
        self._log = MinuteLog()
        self._wake = asyncio.Event()
        self._chars_per_token = INITIAL_CHARS_PER_TOKEN

    @property
    def rpm(self) -> int | None:
        return self.requests.limit if self.requests else None

    @property
    def tpm(self) -> int | None:
        return self.tokens.limit if self.tokens else None

    # -- estimates ------------------------------------------------------------------------

    def estimate(self, prompt_chars: int, max_tokens: int) -> int:
        """What the provider will charge: prompt tokens plus the completion budget asked for."""
        return int(prompt_chars / self._chars_per_token) + 1 + max_tokens

    def learn(self, prompt_chars: int, tokens_in: int) -> None:
        if tokens_in > 0 and prompt_chars > 0:
            ratio = prompt_chars / tokens_in
            self._chars_per_token = 0.8 * self._chars_per_token + 0.2 * ratio

    # -- acquire / release ----------------------------------------------------------------

    async def acquire(self, tokens: int, kind: str = "") -> Permit:
        """Wait until a request of `tokens` may start, and count it.

        Everything runs on one event loop and nothing awaits between the check and the count, so
        no lock is needed; waiters sleep until their delay passes or a release wakes them.
        """
        started_wait = self._clock()
        while True:
            delay = self._delay(tokens)
            if delay <= 0:
                break
            wake = self._wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=delay)
        now = self._clock()
        permit = Permit(now, tokens, kind)
        if self.requests is not None:
            self.requests.take(1, now)
        if self.tokens is not None:
            self.tokens.take(tokens, now)
        self._log.add(permit)
        self.in_flight += 1
        self.stats.requests += 1
        self.stats.waited_s += now - started_wait
        return permit

    def _delay(self, tokens: int) -> float:
        """Seconds until a request of `tokens` may start (0: now); UNTIL_RELEASE waits for one."""
        now = self._clock()
        if now < self.paused_until:
            return self.paused_until - now
        if self.in_flight >= (1 if self.probing else max(1, int(self.window))):
            return UNTIL_RELEASE
        self._log.expire(now)
        delay = 0.0
        if self.requests is not None:
            delay = max(
                self.requests.delay(1, now),
                self._log.delay(1, self.requests.limit, now, count_requests=True),
            )
        if self.tokens is not None:
            tokens = min(tokens, self.tokens.limit)  # one request larger than a minute still goes
            delay = max(
                delay,
                self.tokens.delay(tokens, now),
                self._log.delay(tokens, self.tokens.limit, now, count_requests=False),
            )
        return delay

    def release(
        self,
        permit: Permit,
        *,
        tokens: int | None = None,
        headers: Mapping[str, str] | None = None,
        rate_limited: bool = False,
        retry_after: float | None = None,
    ) -> None:
        self.in_flight -= 1
        self.probing = False
        now = self._clock()
        if rate_limited:
            self.stats.rate_limited += 1
            # A refused request costs no quota; the pause covers the wait.
            if self.tokens is not None and permit.counted:
                self.tokens.correct(-permit.tokens)
            self._log.drop(permit)
            self.window = max(1.0, self.window / 2)
            pause = retry_after if retry_after is not None else 2.0
            self.paused_until = max(self.paused_until, now + pause + random.uniform(0, 0.25))
        elif tokens is not None:
            if tokens != permit.tokens:  # the server's count replaces our estimate
                if self.tokens is not None and permit.counted:
                    self.tokens.correct(tokens - permit.tokens)
                self._log.recount(permit, tokens)
            self.window = min(float(self.max_in_flight), self.window + 1.0 / self.window)
        if headers:
            self._read_headers(headers, now)
        # Wake every waiter to re-check; later waiters wait on a fresh event.
        self._wake.set()
        self._wake = asyncio.Event()

    def _read_headers(self, headers: Mapping[str, str], now: float) -> None:
        limit = headers.get("x-ratelimit-limit-tokens", "")
        if limit.isdigit() and int(limit) > 0 and (self.tokens is None or self.tpm_learned):
            # The provider told us its token limit: pace under it from now on.
            if self.tokens is None:
                self.tokens = Bucket(int(limit), self.burst_s)
            elif self.tokens.limit != int(limit):
                self.tokens.set_limit(int(limit))
            self.tpm_learned = True
        limit = headers.get("x-ratelimit-limit-requests", "")
        if (
            not self.requests_header_per_day
            and limit.isdigit()
            and int(limit) > 0
            and (self.requests is None or self.rpm_learned)
        ):
            if self.requests is None:
                self.requests = Bucket(int(limit), self.burst_s)
            elif self.requests.limit != int(limit):
                self.requests.set_limit(int(limit))
            self.rpm_learned = True
        remaining = headers.get("x-ratelimit-remaining-tokens", "")
        if self.tokens is not None and remaining.isdigit():
            self.tokens.at_most(int(remaining), now)
        if headers.get("x-ratelimit-remaining-requests") == "0":
            reset = duration_seconds(headers.get("x-ratelimit-reset-requests", ""))
            if reset:
                self.paused_until = max(self.paused_until, now + reset)
