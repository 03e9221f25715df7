"""Requests- and tokens-per-minute limiting that stays under a known limit and adapts to an unknown one.

Known limits (`--rpm`, `--tpm`, a named plan) are kept with a sliding one-minute log of what was
sent, the way providers count: a request starts only when the last minute's requests and tokens
leave room for it. Token counts are estimated before a call (prompt characters through a learned
characters-per-token ratio, plus the completion size seen so far for that kind of call) and
replaced by the server's usage when the answer arrives.

Without known limits the limiter adapts: a 429 halves the number of requests in flight and pauses
everyone until `retry-after`; successes grow it back one at a time (AIMD). `x-ratelimit-*`
headers are read too: a provider's token limit is adopted, and a "remaining 0" pauses until reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from studio.synth.backends import duration_seconds

WINDOW_S = 60.0
#: Our clock starts a request a little before the server counts it; keep entries this much longer.
MARGIN_S = 1.0
INITIAL_CHARS_PER_TOKEN = 3.5
INITIAL_COMPLETION_TOKENS = 1024


@dataclass(slots=True)
class Permit:
    started: float
    tokens: int
    kind: str


@dataclass(slots=True)
class LimiterStats:
    requests: int = 0
    rate_limited: int = 0
    waited_s: float = 0.0


class RateLimiter:
    def __init__(
        self,
        *,
        rpm: int | None,
        tpm: int | None,
        max_in_flight: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rpm = rpm
        self.tpm = tpm
        self.tpm_learned = False
        self.max_in_flight = max_in_flight
        self.window = float(max_in_flight)
        """AIMD: how many requests may be in flight now (≤ max_in_flight)."""
        self.in_flight = 0
        self.paused_until = 0.0
        self.stats = LimiterStats()
        self._clock = clock
        self._log: deque[Permit] = deque()
        self._wake = asyncio.Event()
        self._chars_per_token = INITIAL_CHARS_PER_TOKEN
        self._completion: dict[str, deque[int]] = {}

    # -- estimates ------------------------------------------------------------------------

    def estimate(self, prompt_chars: int, kind: str, max_tokens: int) -> int:
        seen = self._completion.get(kind)
        completion = int(max(seen) * 1.1) if seen else INITIAL_COMPLETION_TOKENS
        tokens = int(prompt_chars / self._chars_per_token) + min(completion, max_tokens)
        return min(tokens, self.tpm) if self.tpm else tokens

    def learn(self, prompt_chars: int, kind: str, tokens_in: int, tokens_out: int) -> None:
        if tokens_in > 0 and prompt_chars > 0:
            ratio = prompt_chars / tokens_in
            self._chars_per_token = 0.8 * self._chars_per_token + 0.2 * ratio
        if tokens_out > 0:
            self._completion.setdefault(kind, deque(maxlen=20)).append(tokens_out)

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
        permit = Permit(self._clock(), tokens, kind)
        self._log.append(permit)
        self.in_flight += 1
        self.stats.requests += 1
        self.stats.waited_s += self._clock() - started_wait
        return permit

    def _delay(self, tokens: int) -> float:
        """Seconds until a request of `tokens` may start (0: now); inf waits for a release."""
        now = self._clock()
        if now < self.paused_until:
            return self.paused_until - now
        horizon = WINDOW_S + MARGIN_S
        while self._log and self._log[0].started <= now - horizon:
            self._log.popleft()
        if self.rpm is not None and len(self._log) + 1 > self.rpm:
            return self._log[0].started + horizon - now
        if self.tpm is not None:
            used = sum(p.tokens for p in self._log)
            if used + tokens > self.tpm:
                freed = 0
                for permit in self._log:
                    freed += permit.tokens
                    if used - freed + tokens <= self.tpm:
                        return max(0.01, permit.started + horizon - now)
                return horizon
        if self.in_flight >= max(1, int(self.window)):
            return 3600.0  # woken by release()
        return 0.0

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
        now = self._clock()
        if tokens is not None:
            permit.tokens = tokens  # the server's count replaces our estimate
        if rate_limited:
            self.stats.rate_limited += 1
            # A refused request costs no quota; the pause covers the wait.
            if permit in self._log:
                self._log.remove(permit)
            self.window = max(1.0, self.window / 2)
            pause = retry_after if retry_after is not None else 2.0
            self.paused_until = max(self.paused_until, now + pause + random.uniform(0, 0.25))
        elif tokens is not None:
            self.window = min(float(self.max_in_flight), self.window + 1.0 / self.window)
        if headers:
            self._read_headers(headers, now)
        # Wake every waiter to re-check; later waiters wait on a fresh event.
        self._wake.set()
        self._wake = asyncio.Event()

    def _read_headers(self, headers: Mapping[str, str], now: float) -> None:
        limit = headers.get("x-ratelimit-limit-tokens")
        if limit and limit.isdigit() and (self.tpm is None or self.tpm_learned):
            # The provider told us its token limit: keep under it from now on.
            self.tpm = int(limit)
            self.tpm_learned = True
        if self.rpm is None and headers.get("x-ratelimit-remaining-requests") == "0":
            reset = duration_seconds(headers.get("x-ratelimit-reset-requests", ""))
            if reset:
                self.paused_until = max(self.paused_until, now + reset)
