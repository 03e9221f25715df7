"""Backends: one interface, three implementations. The engine never knows which one it talks to.

- `groq`: the groq SDK (it appends /openai/v1 to the base URL itself).
- `openai`: the openai SDK against any OpenAI-compatible server (vLLM, Ollama, llama.cpp) at …/v1.
- `local`: a transformers model folder (optionally with a LoRA adapter), loaded on first use.

The SDKs' own retries are off (`max_retries=0`): `studio.synth.engine` owns the one retry loop,
so every attempt passes the rate limiter and is counted. A chat completion goes through the SDK's
`client.post` with a plain JSON body and its answer is read as JSON: the request is the one
`chat.completions.create` sends, for less CPU per call.
"""

from __future__ import annotations

import asyncio
import datetime
import email.utils
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from studio.errors import BadInputError
from studio.model import BackendName
from studio.synth.settings import SynthSettings
from studio.synth.templates import Messages


@dataclass(frozen=True, slots=True)
class ChatRequest:
    messages: Messages
    max_tokens: int
    temperature: float
    json_schema: dict[str, Any] | None = None
    """Ask for structured output with this schema (where the backend supports it)."""


@dataclass(frozen=True, slots=True)
class ChatResponse:
    text: str
    tokens_in: int = 0
    tokens_out: int = 0
    headers: Mapping[str, str] = field(default_factory=dict)
    finish_reason: str = ""
    """Why generation stopped, as the server says (`stop`, `length`: cut at max_tokens)."""


class BackendError(Exception):
    """A call failed. `retryable` errors (429, 5xx, timeouts, connection) are tried again."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after = retry_after
        self.headers = dict(headers or {})

    @property
    def rate_limited(self) -> bool:
        return self.status == 429


class BackendConfigError(BadInputError):
    """The backend refuses the configuration itself (bad key, unknown model): stop the run."""


class StructuredOutputUnsupported(Exception):
    """The server rejected `response_format`; ask again without it."""


class Backend(Protocol):
    name: BackendName
    model: str
    supports_json_schema: bool

    async def complete(self, request: ChatRequest) -> ChatResponse: ...

    async def aclose(self) -> None: ...


#: Groq models that were shut down: (date, the model to use instead).
GROQ_RETIRED = {
    "llama3-70b-8192": ("2025-08-30", "openai/gpt-oss-120b"),
    "llama3-8b-8192": ("2025-08-30", "openai/gpt-oss-20b"),
    "llama-3.3-70b-versatile": ("2026-08-16", "openai/gpt-oss-120b"),
    "llama-3.1-8b-instant": ("2026-08-16", "openai/gpt-oss-20b"),
}
#: Groq models with strict structured outputs (constrained decoding); others get best effort.
GROQ_STRICT = frozenset({"openai/gpt-oss-20b", "openai/gpt-oss-120b"})


def check_groq_model(model: str, today: datetime.date | None = None) -> None:
    """A model Groq shut down fails before the first call, naming what to use instead."""
    retired = GROQ_RETIRED.get(model)
    if retired is None:
        return
    shutdown, replacement = retired
    if (today or datetime.date.today()) >= datetime.date.fromisoformat(shutdown):
        raise BackendConfigError(
            f"Groq shut down {model} on {shutdown}; use --model {replacement} "
            f'(or synth.model = "{replacement}" in studio.toml)'
        )


def strict_schema_ok(schema: Mapping[str, Any]) -> bool:
    """Strict mode's rules: every object lists all its properties as required and sets
    `additionalProperties: false` (nested objects and array items included)."""
    if schema.get("type") == "object":
        properties = schema.get("properties", {})
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required", ())) != set(properties):
            return False
        return all(strict_schema_ok(p) for p in properties.values())
    if schema.get("type") == "array" and isinstance(schema.get("items"), Mapping):
        return strict_schema_ok(schema["items"])
    return True


def make_backend(settings: SynthSettings) -> Backend:
    settings.validate()
    if settings.backend is BackendName.LOCAL:
        return LocalBackend(settings)
    return SdkBackend(settings)


class SdkBackend:
    """groq or openai SDK; both are generated from the same OpenAPI tooling and share a surface."""

    def __init__(self, settings: SynthSettings) -> None:
        self.name = settings.backend
        self.model = settings.model_id
        self.supports_json_schema = settings.structured_output
        self.reasoning_effort = settings.reasoning_effort
        if settings.backend is BackendName.GROQ:
            check_groq_model(self.model)
            import groq

            self._errors: Any = groq
            self._path = "/openai/v1/chat/completions"  # the groq SDK's own path for `create`
            self._client: Any = groq.AsyncGroq(
                api_key=settings.api_key_text(),
                base_url=settings.base_url,
                max_retries=0,
                timeout=settings.timeout_s,
            )
        else:
            import openai

            self._errors = openai
            self._path = "/chat/completions"
            self._client = openai.AsyncOpenAI(
                # Local servers ignore the key, but the SDK insists on one.
                api_key=settings.api_key_text() or "not-needed",
                base_url=settings.base_url,
                max_retries=0,
                timeout=settings.timeout_s,
            )
        self._response_type = sdk_response_type(self._errors)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        params: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if self.reasoning_effort:
            params["reasoning_effort"] = self.reasoning_effort
        if request.json_schema is not None and self.supports_json_schema:
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": self._json_schema(request.json_schema),
            }
        errors = self._errors
        try:
            # The SDK's own `post` (its documented way to any endpoint): the same client, auth,
            # timeout and errors as `chat.completions.create`, without its per-request work that
            # this plain JSON body does not need (the typed-params transform, an identity here;
            # a pydantic model of the answer, of which four fields are read; the raw-response
            # wrapper that `create` needs to show the headers). CPU per call: 0.97x a plain
            # `create` gather instead of 1.50x (docs/benchmarks.md).
            response = await self._client.post(self._path, cast_to=self._response_type, body=params)
        except errors.APIStatusError as exc:
            raise self._status_error(exc, params) from exc
        except errors.APITimeoutError as exc:
            raise BackendError("the request timed out", retryable=True) from exc
        except errors.APIConnectionError as exc:
            raise BackendError(f"cannot reach the server ({exc})", retryable=True) from exc
        headers = {k.lower(): v for k, v in response.headers.items()}
        try:
            completion = orjson.loads(response.content)
        except orjson.JSONDecodeError as exc:
            raise BackendError(f"malformed response ({exc})", retryable=True) from exc
        return _chat_response(completion, headers)

    def _json_schema(self, json_schema: Mapping[str, Any]) -> dict[str, Any]:
        """Strict where the model supports it and the schema obeys strict mode's rules; on Groq
        only some models do (the others reject `strict: true`), so they get best effort."""
        supported = self.name != BackendName.GROQ or self.model in GROQ_STRICT
        strict = supported and strict_schema_ok(json_schema.get("schema", {}))
        return {**json_schema, "strict": strict}

    def _status_error(self, exc: Any, params: Mapping[str, Any]) -> Exception:
        status = int(exc.status_code)
        headers = {k.lower(): v for k, v in exc.response.headers.items()}
        message = error_message(exc)
        if status == 429 or status >= 500 or status == 408:
            return BackendError(
                f"HTTP {status}: {message}",
                retryable=True,
                status=status,
                retry_after=retry_after_seconds(headers),
                headers=headers,
            )
        if status == 400 and "response_format" in params and _mentions_format(message):
            self.supports_json_schema = False
            return StructuredOutputUnsupported(message)
        if status in (401, 403):
            key = "GROQ_API_KEY" if self.name == BackendName.GROQ else "OPENAI_API_KEY"
            return BackendConfigError(
                f"the {self.name} server refused the API key ({key}): {message}"
            )
        if status == 404 or ("model" in message.lower() and "not" in message.lower()):
            return BackendConfigError(
                f"unknown model {self.model!r} at the {self.name} server: {message}"
            )
        return BackendError(f"HTTP {status}: {message}", retryable=False, status=status)

    async def aclose(self) -> None:
        await self._client.close()


def sdk_response_type(sdk: Any) -> type:
    """The HTTP response class of the SDK's own HTTP client (httpx's; httpx2's in openai 3)."""
    base = next(c for c in sdk.DefaultAsyncHttpxClient.__mro__ if c.__name__ == "AsyncClient")
    response: type = sys.modules[base.__module__.partition(".")[0]].Response
    return response


def _chat_response(completion: Any, headers: dict[str, str]) -> ChatResponse:
    """A chat completion's JSON, read as the SDK's model of it would be: a missing field is
    empty, a missing `choices` (or an answer that is not a completion) is an error."""
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not choices or not isinstance(choices, list):
        raise BackendError("the response has no choices", retryable=True, headers=headers)
    try:
        choice = choices[0]
        message = choice.get("message") or {}
        text = message.get("content") or ""
        usage = completion.get("usage") or {}
        return ChatResponse(
            text=str(text),
            tokens_in=int(usage.get("prompt_tokens") or 0),
            tokens_out=int(usage.get("completion_tokens") or 0),
            headers=headers,
            finish_reason=str(choice.get("finish_reason") or ""),
        )
    except (AttributeError, TypeError, ValueError) as exc:
        raise BackendError(f"malformed response ({exc})", retryable=True) from exc


def error_message(exc: Any) -> str:
    """The server's own words in an SDK status error (openai's and groq's alike): the body's
    `error.message` where it has one, else the exception's message."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        error = body.get("error", body)
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
    return str(getattr(exc, "message", exc))


def _mentions_format(message: str) -> bool:
    text = message.lower()
    return "response_format" in text or "json_schema" in text or "structured" in text


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """`retry-after-ms`, `retry-after` (seconds or an HTTP date), in seconds."""
    if "retry-after-ms" in headers:
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value)
        return max(0.0, parsed.timestamp() - time.time()) if parsed else None


def duration_seconds(value: str) -> float | None:
    """Groq-style durations: `7.66s`, `2m59.56s`, `1h2m`, `120ms`."""
    import re

    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value.strip())
    if not parts:
        try:
            return float(value)
        except ValueError:
            return None
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    return sum(float(n) * scale[unit] for n, unit in parts)


class LocalBackend:
    """A transformers model on this machine: fully offline, one generation at a time."""

    supports_json_schema = False

    def __init__(self, settings: SynthSettings) -> None:
        self.name = BackendName.LOCAL
        self.model = settings.model_id
        self.adapter = settings.adapter
        self._model: Any = None
        self._tokenizer: Any = None
        self._adapter_info: Any = None
        """The adapter's `AdapterInfo` (studio.train.adapter), when it was trained here."""
        self._load_lock = threading.Lock()
        self._gate = asyncio.Semaphore(1)

    def _load(self) -> None:
        with self._load_lock:
            if self._model is not None:
                return
            from pathlib import Path

            from transformers import AutoModelForCausalLM, AutoTokenizer

            from studio.train.adapter import AdapterInfo, has_tokenizer

            # A studio adapter carries the tokenizer and chat template it was trained with.
            adapter = Path(self.adapter) if self.adapter else None
            tokenizer_from = adapter if adapter and has_tokenizer(adapter) else self.model
            self._adapter_info = AdapterInfo.load(adapter) if adapter else None
            try:
                tokenizer = AutoTokenizer.from_pretrained(tokenizer_from)
                model = AutoModelForCausalLM.from_pretrained(self.model)
            except OSError as exc:
                raise BackendConfigError(
                    f"cannot load local model {self.model!r}: {exc}. A hub id needs a download; "
                    "offline, pass a folder written by save_pretrained"
                ) from exc
            if self.adapter:
                from peft import PeftModel

                model = PeftModel.from_pretrained(model, self.adapter)  # type: ignore[assignment]
            model.eval()  # type: ignore[no-untyped-call]
            self._model, self._tokenizer = model, tokenizer

    def _generate(self, request: ChatRequest) -> ChatResponse:
        import torch

        self._load()
        tokenizer, model = self._tokenizer, self._model
        messages = list(request.messages)
        if self._adapter_info is not None:  # the system message the adapter was trained on
            from studio.train.adapter import trained_messages

            messages = trained_messages(self._adapter_info, messages)
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
        else:
            text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
            ids = tokenizer(text + "\n\nassistant:", return_tensors="pt")["input_ids"]
        ids = ids.to(model.device)
        with torch.no_grad():
            out = model.generate(
                ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=request.max_tokens,
                do_sample=request.temperature > 0,
                temperature=request.temperature if request.temperature > 0 else None,
                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id,
            )
        new = out[0, ids.shape[1] :]
        ended = tokenizer.eos_token_id is not None and bool((new == tokenizer.eos_token_id).any())
        return ChatResponse(
            text=tokenizer.decode(new, skip_special_tokens=True),
            tokens_in=int(ids.shape[1]),
            tokens_out=int(new.shape[0]),
            finish_reason="length"
            if not ended and int(new.shape[0]) >= request.max_tokens
            else "stop",
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        async with self._gate:
            return await asyncio.to_thread(self._generate, request)

    async def aclose(self) -> None:
        return None
