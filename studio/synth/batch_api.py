"""A batch server's files + batches endpoints through the groq SDK (which adds /openai/v1 to the
base URL itself) or the openai SDK (any server implementing the OpenAI endpoints, at …/v1)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from studio.errors import BadInputError, StudioError
from studio.model import BackendName
from studio.synth.backends import error_message
from studio.synth.settings import SynthSettings

#: Groq's (and OpenAI's) limits for one batch's input file.
MAX_REQUESTS = 50_000
MAX_BYTES = 200 * 1024 * 1024
ENDPOINT = "/v1/chat/completions"


class BatchError(StudioError):
    """The batch server refused or failed a call (the message says which and why)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status, when the server answered (None: no answer, the outcome unknown)."""


# -- the server: files + batches through the groq or openai SDK -------------------------------


@dataclass(frozen=True, slots=True)
class ServerBatch:
    """What the server says about one batch."""

    id: str
    status: str
    input_file_id: str = ""
    output_file_id: str = ""
    error_file_id: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    total: int = 0
    completed: int = 0
    failed: int = 0
    errors: str = ""
    """The batch's own errors (a batch that `failed` validation says why here)."""


def _server_batch(obj: Any) -> ServerBatch:
    counts = getattr(obj, "request_counts", None)
    errors = getattr(getattr(obj, "errors", None), "data", None) or []
    metadata = getattr(obj, "metadata", None) or {}
    return ServerBatch(
        id=str(obj.id),
        status=str(obj.status),
        input_file_id=str(getattr(obj, "input_file_id", "") or ""),
        output_file_id=str(getattr(obj, "output_file_id", "") or ""),
        error_file_id=str(getattr(obj, "error_file_id", "") or ""),
        metadata={str(k): str(v) for k, v in dict(metadata).items()},
        total=int(getattr(counts, "total", 0) or 0),
        completed=int(getattr(counts, "completed", 0) or 0),
        failed=int(getattr(counts, "failed", 0) or 0),
        errors="; ".join(str(getattr(e, "message", "") or e) for e in errors),
    )


class BatchClient:
    """The files and batches resources of the groq SDK (which adds /openai/v1 to the base URL
    itself) or the openai SDK (any server that implements the OpenAI endpoints, at …/v1)."""

    def __init__(self, settings: SynthSettings) -> None:
        self.backend = settings.backend
        if settings.backend is BackendName.GROQ:
            import groq

            self._errors: Any = groq
            self._client: Any = groq.AsyncGroq(
                api_key=settings.api_key_text(),
                base_url=settings.base_url,
                timeout=settings.timeout_s,
            )
        elif settings.backend is BackendName.OPENAI:
            import openai

            self._errors = openai
            self._client = openai.AsyncOpenAI(
                api_key=settings.api_key_text() or "not-needed",
                base_url=settings.base_url,
                timeout=settings.timeout_s,
            )
        else:
            raise BadInputError("--batch needs --backend groq or openai (a server with batches)")

    async def _call(self, what: str, call: Callable[[], Any]) -> Any:
        """One SDK call (the SDK retries 429s, 5xx and connection errors itself); its failure as
        a one-line `BatchError`."""
        errors = self._errors
        try:
            result = call()
            return await result if inspect.isawaitable(result) else result
        except errors.APIStatusError as exc:
            status = int(exc.status_code)
            message = error_message(exc)
            if status in (401, 403):
                raise BadInputError(
                    f"the {self.backend} server refused the API key: {message}"
                ) from exc
            if status == 404 and what in ("create a batch", "upload a batch file"):
                raise BadInputError(
                    f"the {self.backend} server has no batch endpoints ({message})"
                ) from exc
            raise BatchError(f"cannot {what}: HTTP {status}: {message}", status) from exc
        except errors.APIConnectionError as exc:
            raise BatchError(f"cannot {what}: cannot reach the server ({exc})") from exc

    async def upload(self, name: str, data: bytes) -> str:
        created = await self._call(
            "upload a batch file",
            lambda: self._client.files.create(
                file=(name, data, "application/jsonl"), purpose="batch"
            ),
        )
        return str(created.id)

    async def create(self, file_id: str, window: str, metadata: dict[str, str]) -> ServerBatch:
        created = await self._call(
            "create a batch",
            # No SDK retry here: a create that timed out may have made its batch, and a second
            # one would be paid for twice (`recover` finds the first instead).
            lambda: self._client.with_options(max_retries=0).batches.create(
                input_file_id=file_id,
                endpoint=ENDPOINT,
                completion_window=window,
                metadata=metadata,
            ),
        )
        return _server_batch(created)

    async def retrieve(self, batch_id: str) -> ServerBatch:
        got = await self._call("read a batch", lambda: self._client.batches.retrieve(batch_id))
        return _server_batch(got)

    async def cancel(self, batch_id: str) -> ServerBatch:
        got = await self._call("cancel a batch", lambda: self._client.batches.cancel(batch_id))
        return _server_batch(got)

    async def find(self, label: str, file_id: str) -> ServerBatch | None:
        """The batch made from our file (or carrying our label), if the server has one."""

        async def listed() -> list[Any]:
            if self.backend is BackendName.GROQ:  # groq's list has no pages
                return list((await self._client.batches.list()).data or [])
            return [b async for b in self._client.batches.list(limit=100)]

        for obj in await self._call("list batches", listed):
            found = _server_batch(obj)
            if found.metadata.get("studio_batch") == label or (
                file_id and found.input_file_id == file_id
            ):
                return found
        return None

    async def content(self, file_id: str) -> bytes:
        async def read() -> bytes:
            response = await self._client.files.content(file_id)
            data = response.read()
            return bytes(await data if inspect.isawaitable(data) else data)

        result: bytes = await self._call("download a result file", read)
        return result

    async def aclose(self) -> None:
        await self._client.close()
