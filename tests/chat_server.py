"""A loopback HTTP server that speaks the chat-completions API, for tests and benchmarks.

The real `openai` and `groq` SDKs talk to it over real HTTP on 127.0.0.1 (`openai_base_url`,
`groq_base_url`). By default it answers every CBT Studio stage with plausible text; a test passes
`respond` to script errors (429 + retry-after, 500, garbage, slow answers). With `rpm`/`tpm` it
enforces rate limits over a sliding window, as a provider would, and sends `x-ratelimit-*` headers;
with `bucket_s` too it enforces them as token buckets that hold only `bucket_s` seconds of the
rate (how providers really enforce a per-minute limit). With `charge_max_tokens` a request is
charged its prompt plus the `max_tokens` it asks for (as OpenAI documents), else prompt plus
answer. An answer longer than the request's `max_tokens` is cut there (`finish_reason: length`).
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

from studio.cbt.techniques import TECHNIQUES

CHARS_PER_TOKEN = 4


@dataclass
class Reply:
    """What the server answers to one request."""

    content: str | None = None
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    raw: bytes | None = None
    """Send these bytes as the body instead of a chat completion (garbage answers)."""
    error: str = ""
    finish_reason: str = "stop"
    """`length` plays an answer cut at the token limit."""


Respond = Callable[[dict[str, Any]], Reply]


def tokens_of_messages(body: dict[str, Any]) -> int:
    chars = sum(len(str(m.get("content", ""))) for m in body.get("messages", []))
    return max(1, chars // CHARS_PER_TOKEN)


def tokens_of_text(text: str) -> int:
    return max(1, len(text) // CHARS_PER_TOKEN)


@dataclass
class ServerStats:
    requests: int = 0
    ok: int = 0
    rate_limited: int = 0
    errors: int = 0
    tokens: int = 0
    """Prompt + answer tokens of the answers sent."""
    cut: int = 0
    """Answers cut at their `max_tokens` (their tokens are in `tokens` too)."""
    tokens_cut: int = 0
    first_at: float = 0.0
    last_done_at: float = 0.0
    in_flight: int = 0
    max_in_flight: int = 0
    started: float = field(default_factory=time.monotonic)


class _Server(ThreadingHTTPServer):
    request_queue_size = 256  # the default backlog of 5 refuses bursts of concurrent clients


class LoopbackServer:
    """An HTTP server on a free 127.0.0.1 port, in its own thread, for `with`: the plumbing the
    test servers share. A subclass defines `_handler` and calls `_listen()` last in `__init__`."""

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError

    def _listen(self) -> None:
        self._httpd = _Server(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def openai_base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def groq_base_url(self) -> str:
        """The groq SDK appends /openai/v1 itself."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class ChatServer(LoopbackServer):
    """`with ChatServer() as server:` — a chat-completions server on a free loopback port."""

    def __init__(
        self,
        respond: Respond | None = None,
        *,
        latency: float = 0.0,
        rpm: int | None = None,
        tpm: int | None = None,
        window_s: float = 60.0,
        bucket_s: float | None = None,
        charge_max_tokens: bool = False,
    ) -> None:
        self.respond = respond or cbt_reply
        self.latency = latency
        self.rpm = rpm
        self.tpm = tpm
        self.window_s = window_s
        self.bucket_s = bucket_s
        self.charge_max_tokens = charge_max_tokens
        self._levels = {"requests": (0.0, 0.0), "tokens": (0.0, 0.0)}
        """Token-bucket mode: per limit, (level, when it was that level)."""
        self.stats = ServerStats()
        self.bodies: list[dict[str, Any]] = []
        self.requests: list[tuple[str, dict[str, str]]] = []
        """Every request's path and headers (names in lower case), in the order of `bodies`."""
        self._lock = threading.Lock()
        self._window: deque[tuple[float, int]] = deque()
        self.admitted: list[tuple[float, int]] = []
        """Every request counted against the limits: (monotonic time, tokens)."""
        self._listen()

    # -- rate limits (sliding window over accepted requests) ----------------------------------

    def charge(self, body: dict[str, Any], content: str) -> int:
        """What a request counts against the token limit."""
        if self.charge_max_tokens and body.get("max_tokens"):
            return tokens_of_messages(body) + int(body["max_tokens"])
        return tokens_of_messages(body) + tokens_of_text(content)

    def _admit(self, tokens: int) -> Reply | None:
        """Count the request against the limits, or return the 429 a provider would send."""
        if self.rpm is None and self.tpm is None:
            return None
        if self.bucket_s is not None:
            return self._admit_bucket(tokens)
        with self._lock:
            now = time.monotonic()
            while self._window and self._window[0][0] <= now - self.window_s:
                self._window.popleft()
            used_requests = len(self._window)
            used_tokens = sum(t for _, t in self._window)
            over_requests = self.rpm is not None and used_requests + 1 > self.rpm
            over_tokens = self.tpm is not None and used_tokens + tokens > self.tpm
            if over_requests or over_tokens:
                wait = self._time_until_room(now, tokens, over_requests)
                return Reply(
                    status=429,
                    error="rate limit reached",
                    headers={"retry-after": str(max(1, math.ceil(wait))), **self._headers(now)},
                )
            self._window.append((now, tokens))
            self.admitted.append((now, tokens))
            return None

    # -- rate limits (token buckets holding `bucket_s` seconds of the rate) ---------------------

    def _bucket(self, name: str, now: float) -> tuple[float, float, float]:
        """(level now, rate per second, capacity) of one limit's bucket."""
        limit = self.rpm if name == "requests" else self.tpm
        rate = (limit or 0) / 60.0
        level, at = self._levels[name]
        return max(0.0, level - rate * (now - at)), rate, rate * (self.bucket_s or 0.0)

    def _admit_bucket(self, tokens: int) -> Reply | None:
        with self._lock:
            now = time.monotonic()
            wait = 0.0
            for name, amount, limit in (("requests", 1, self.rpm), ("tokens", tokens, self.tpm)):
                if limit is None:
                    continue
                level, rate, capacity = self._bucket(name, now)
                # A request bigger than the bucket goes only into an empty one.
                excess = level + amount - max(capacity, amount)
                if excess > 0:
                    wait = max(wait, excess / rate)
            if wait > 0:
                return Reply(
                    status=429,
                    error="rate limit reached",
                    headers={"retry-after": f"{wait:.3f}", **self._headers(now)},
                )
            for name, amount, limit in (("requests", 1, self.rpm), ("tokens", tokens, self.tpm)):
                if limit is not None:
                    level, _, _ = self._bucket(name, now)
                    self._levels[name] = (level + amount, now)
            self.admitted.append((now, tokens))
            return None

    def _bucket_headers(self, now: float) -> dict[str, str]:
        headers: dict[str, str] = {}
        for name, limit in (("requests", self.rpm), ("tokens", self.tpm)):
            if limit is None:
                continue
            level, rate, capacity = self._bucket(name, now)
            headers |= {
                f"x-ratelimit-limit-{name}": str(limit),
                f"x-ratelimit-remaining-{name}": str(max(0, int(capacity - level))),
                f"x-ratelimit-reset-{name}": f"{level / rate:.3f}s",
            }
        return headers

    def _time_until_room(self, now: float, tokens: int, over_requests: bool) -> float:
        if over_requests:
            return self._window[0][0] + self.window_s - now
        need = sum(t for _, t in self._window) + tokens - (self.tpm or 0)
        freed = 0
        for at, spent in self._window:
            freed += spent
            if freed >= need:
                return at + self.window_s - now
        return self.window_s

    def _headers(self, now: float) -> dict[str, str]:
        if self.bucket_s is not None:
            return self._bucket_headers(now)
        headers: dict[str, str] = {}
        if self.rpm is not None:
            oldest = self._window[0][0] if self._window else now
            headers |= {
                "x-ratelimit-limit-requests": str(self.rpm),
                "x-ratelimit-remaining-requests": str(max(0, self.rpm - len(self._window))),
                "x-ratelimit-reset-requests": f"{max(0.0, oldest + self.window_s - now):.2f}s",
            }
        if self.tpm is not None:
            used = sum(t for _, t in self._window)
            headers |= {
                "x-ratelimit-limit-tokens": str(self.tpm),
                "x-ratelimit-remaining-tokens": str(max(0, self.tpm - used)),
                "x-ratelimit-reset-tokens": f"{self.window_s * used / self.tpm:.2f}s",
            }
        return headers

    # -- HTTP -----------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                if not self.path.rstrip("/").endswith("/chat/completions"):
                    self._send(404, {"error": {"message": f"no route {self.path}"}}, {})
                    return
                with server._lock:
                    server.stats.first_at = server.stats.first_at or time.monotonic()
                    server.stats.requests += 1
                    server.stats.in_flight += 1
                    server.stats.max_in_flight = max(
                        server.stats.max_in_flight, server.stats.in_flight
                    )
                    server.bodies.append(body)
                    server.requests.append(
                        (self.path, {k.lower(): v for k, v in self.headers.items()})
                    )
                try:
                    self._answer(body)
                finally:
                    with server._lock:
                        server.stats.in_flight -= 1

            def _answer(self, body: dict[str, Any]) -> None:
                reply = server.respond(body)
                finish_reason = reply.finish_reason
                if reply.status == 200 and reply.raw is None:
                    content = reply.content or ""
                    cap = body.get("max_tokens")
                    if cap and tokens_of_text(content) > int(cap):
                        reply = replace(reply, content=content[: int(cap) * CHARS_PER_TOKEN])
                        finish_reason = "length"
                    limited = server._admit(server.charge(body, content))
                    if limited is not None:
                        reply = limited
                time.sleep(server.latency + reply.delay)
                if reply.raw is not None:
                    self._send_bytes(reply.status, reply.raw, reply.headers)
                    return
                if reply.status != 200:
                    with server._lock:
                        if reply.status == 429:
                            server.stats.rate_limited += 1
                        else:
                            server.stats.errors += 1
                    error = {"message": reply.error or "error", "type": "server_error"}
                    self._send(reply.status, {"error": error}, reply.headers)
                    return
                content = reply.content or ""
                prompt_tokens = tokens_of_messages(body)
                completion_tokens = tokens_of_text(content)
                with server._lock:
                    server.stats.ok += 1
                    server.stats.tokens += prompt_tokens + completion_tokens
                    if finish_reason == "length":
                        server.stats.cut += 1
                        server.stats.tokens_cut += prompt_tokens + completion_tokens
                    server.stats.last_done_at = time.monotonic()
                    headers = {**server._headers(time.monotonic()), **reply.headers}
                self._send(
                    200,
                    {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "test-model"),
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": content},
                                "finish_reason": finish_reason,
                            }
                        ],
                        "usage": {
                            "prompt_tokens": prompt_tokens,
                            "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens,
                        },
                    },
                    headers,
                )

            def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str]) -> None:
                self._send_bytes(status, json.dumps(payload).encode(), headers)

            def _send_bytes(self, status: int, data: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                # The client may have given up already (a timeout test): nothing to report.
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(data)

        return Handler


# -- the default answers: plausible text for every CBT Studio stage ----------------------------


def detect_stage(body: dict[str, Any]) -> str:
    """Which CBT Studio template produced this request (by the data tags it carries)."""
    messages = body.get("messages", [])
    system = " ".join(str(m.get("content", "")) for m in messages if m.get("role") == "system")
    user = str(messages[-1].get("content", "")) if messages else ""
    if "<dialogue_history>" in user:
        return "counselor_agent" if "<intake_summary>" in system else "client_agent"
    if "<technique_list>" in user:
        return "cbt_technique"
    if "<client_persona>" in user:
        return "intake_form"
    if "<cbt_plan>" in user and "<client_attitude>" in user:
        return "dialogue_script"
    if "<cbt_technique>" in user:
        return "cbt_plan"
    return "unknown"


def _last_data(user: str, tag: str) -> str:
    found = re.findall(rf"<{tag}>\n?(.*?)\n?</{tag}>", user, flags=re.S)
    return found[-1].strip() if found else ""


def cbt_reply(body: dict[str, Any]) -> Reply:
    return Reply(content=cbt_text(body))


def cbt_text(body: dict[str, Any], *, turns: int = 16) -> str:
    stage = detect_stage(body)
    user = str(body["messages"][-1].get("content", ""))
    thought = _last_data(user, "client_thought") or "I always get things wrong."
    pick = zlib.crc32(thought.encode()) % len(TECHNIQUES)
    if stage == "intake_form":
        return (
            "1. Basic Information\nName: Alex Morgan\nAge: 34\nGender: Female\n"
            "Occupation: Teacher\nEducation: Master's degree\nMarital Status: Married\n"
            "Family Details: Lives with her husband\n\n2. Presenting Problem\n"
            f"She keeps thinking: {thought}\n\n3. Reason for Seeking Counseling\n"
            "She wants to feel calmer at work.\n\n4. Past History (including medical history)\n"
            "No prior counseling.\n\n5. Academic/Occupational Functioning Level\n"
            "Works full time.\nInterpersonal relationships: Close to colleagues.\n"
            "Daily life: Sleeps poorly.\n\n6. Social Support System\nHer husband and a sister."
        )
    if stage == "cbt_technique":
        return json.dumps({"technique": TECHNIQUES[pick], "rationale": "It fits the thought."})
    if stage == "cbt_plan":
        return "\n".join(f"{n}. Step {n}: the counselor works on the thought." for n in range(1, 6))
    if stage == "dialogue_script":
        lines = []
        for n in range(turns):
            role = "Counselor" if n % 2 == 0 else "Client"
            lines.append(f"{role}: Turn {n + 1} about {thought[:40]}")
        lines.append("Counselor: Let's stop here; please keep a thought record this week.")
        return "\n".join(lines)
    if stage == "counselor_agent":
        history = _last_data(user, "dialogue_history")
        if "last turn of the session" in user.split("</dialogue_history>")[-1]:
            return "Thank you for today; let's keep a thought record this week."
        return (
            f"Counselor turn {history.count('Counselor:') + 1}: what goes through your mind then?"
        )
    if stage == "client_agent":
        # The client ends the session (CACTUS's [/END]) once the history is long enough.
        history = _last_data(user, "dialogue_history")
        if history.count("Client:") >= 9:
            return "I think I can look at it differently now. [/END]"
        return "I suppose it is not always as bad as I think."
    return "I am not sure what you asked."
