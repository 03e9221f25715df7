"""A loopback HTTP server that speaks the OpenAI files + batches API (as Groq does), for tests and
benchmarks.

The real `openai` and `groq` SDKs talk to it over real HTTP on 127.0.0.1 (`openai_base_url`,
`groq_base_url`). Uploaded files are kept in memory; a batch moves one status per retrieve
(`validating` → `in_progress` → `finalizing` → `completed`), so a test sees it change without
waiting on a clock. Requests are answered by `respond` (the chat server's plausible CBT texts by
default) when a batch finishes. A test can hold batches in progress (`hold`), expire one after
some answers (`expire`), fail one at validation (`fail_next`), forget one (`forgotten`: 404 on
retrieve and cancel), cancel one, fail its requests one by one (a non-200 `Reply`) and hold
the create call itself (`hold_create`) to kill a client between create and its answer.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from tests.chat_server import LoopbackServer, Respond, cbt_reply, tokens_of_messages, tokens_of_text


@dataclass
class ServerBatchState:
    id: str
    input_file_id: str
    metadata: dict[str, str]
    completion_window: str
    status: str = "validating"
    created_at: int = field(default_factory=lambda: int(time.time()))
    output_file_id: str | None = None
    error_file_id: str | None = None
    total: int = 0
    completed: int = 0
    failed: int = 0
    cancel_requested: bool = False
    errors: list[dict[str, str]] = field(default_factory=list)
    """The batch's own errors (a `failed` batch says why here)."""


@dataclass
class BatchServerStats:
    uploads: int = 0
    creates: int = 0
    retrieves: int = 0
    lists: int = 0
    cancels: int = 0
    downloads: int = 0
    answered: int = 0


class BatchServer(LoopbackServer):
    """`with BatchServer() as server:` — files + batches on a free loopback port."""

    def __init__(self, respond: Respond | None = None) -> None:
        self.respond = respond or cbt_reply
        self.files: dict[str, tuple[str, bytes]] = {}
        self.batches: dict[str, ServerBatchState] = {}
        self.stats = BatchServerStats()
        self.hold = threading.Event()
        """While set, batches stay `in_progress` (a client that returns sees them in flight)."""
        self.hold_create: threading.Event | None = None
        """When given, a create call records its batch, then waits for this before answering."""
        self.create_arrived = threading.Event()
        self.expire: dict[str, int] = {}
        """Batch id → answers it gets before it expires (the rest come back `batch_expired`)."""
        self.expire_next: int | None = None
        """The next batch created expires after this many answers."""
        self.fail_next: str | None = None
        """The next batch created fails validation with this message (nothing answered)."""
        self.forgotten: set[str] = set()
        """Batch ids the server has lost: retrieve and cancel answer 404."""
        self._fail: dict[str, str] = {}
        self.requests_seen: list[dict[str, Any]] = []
        """Every request line of every batch input file, in order."""
        self._lock = threading.Lock()
        self._listen()

    def __exit__(self, *exc: object) -> None:
        if self.hold_create is not None:
            self.hold_create.set()
        super().__exit__(*exc)

    # -- state ----------------------------------------------------------------------------------

    def _new_file(self, name: str, data: bytes) -> str:
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = (name, data)
        return file_id

    def _batch_json(self, batch: ServerBatchState) -> dict[str, Any]:
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "input_file_id": batch.input_file_id,
            "completion_window": batch.completion_window,
            "status": batch.status,
            "created_at": batch.created_at,
            "output_file_id": batch.output_file_id,
            "error_file_id": batch.error_file_id,
            "metadata": batch.metadata,
            "errors": {"object": "list", "data": batch.errors} if batch.errors else None,
            "request_counts": {
                "total": batch.total,
                "completed": batch.completed,
                "failed": batch.failed,
            },
        }

    def _advance(self, batch: ServerBatchState) -> None:
        """One step of a batch's life, taken on each retrieve."""
        if batch.cancel_requested and batch.status in ("validating", "in_progress", "cancelling"):
            self._finish(batch, "cancelled", answer=0)
        elif batch.status == "validating" and batch.id in self._fail:
            # Like a server that rejects the input file: no request runs, no file comes back.
            batch.errors = [{"code": "invalid_request", "message": self._fail[batch.id]}]
            batch.status = "failed"
        elif batch.status == "validating":
            batch.status = "in_progress"
        elif batch.status == "in_progress" and not self.hold.is_set():
            batch.status = "finalizing"
        elif batch.status == "finalizing":
            limit = self.expire.get(batch.id)
            self._finish(batch, "expired" if limit is not None else "completed", answer=limit)

    def _finish(self, batch: ServerBatchState, status: str, *, answer: int | None) -> None:
        """Answer the batch's requests (the first `answer` of them, or all), write the output and
        error files, and end it with `status`."""
        lines = [
            json.loads(raw)
            for raw in self.files[batch.input_file_id][1].splitlines()
            if raw.strip()
        ]
        output, errors = [], []
        for n, line in enumerate(lines):
            cid = line["custom_id"]
            if answer is not None and n >= answer:
                code = "batch_expired" if status == "expired" else "batch_cancelled"
                errors.append(
                    {
                        "id": f"batch_req_{batch.id}_{n}",
                        "custom_id": cid,
                        "response": None,
                        "error": {"code": code, "message": f"request not run: {code}"},
                    }
                )
                continue
            reply = self.respond(line["body"])
            if reply.status != 200:
                errors.append(
                    {
                        "id": f"batch_req_{batch.id}_{n}",
                        "custom_id": cid,
                        "response": {
                            "status_code": reply.status,
                            "request_id": f"req_{n}",
                            "body": {"error": {"message": reply.error or "error"}},
                        },
                        "error": None,
                    }
                )
                batch.failed += 1
                continue
            content = reply.content or ""
            prompt, completion = tokens_of_messages(line["body"]), tokens_of_text(content)
            output.append(
                {
                    "id": f"batch_req_{batch.id}_{n}",
                    "custom_id": cid,
                    "response": {
                        "status_code": 200,
                        "request_id": f"req_{n}",
                        "body": {
                            "id": f"chatcmpl-{n}",
                            "object": "chat.completion",
                            "created": int(time.time()),
                            "model": line["body"].get("model", "test-model"),
                            "choices": [
                                {
                                    "index": 0,
                                    "message": {"role": "assistant", "content": content},
                                    "finish_reason": reply.finish_reason,
                                }
                            ],
                            "usage": {
                                "prompt_tokens": prompt,
                                "completion_tokens": completion,
                                "total_tokens": prompt + completion,
                            },
                        },
                    },
                    "error": None,
                }
            )
            batch.completed += 1
            self.stats.answered += 1
        if output:
            batch.output_file_id = self._new_file("output.jsonl", _jsonl(output))
        if errors:
            batch.error_file_id = self._new_file("errors.jsonl", _jsonl(errors))
        batch.status = status

    # -- HTTP -----------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                return

            def _path(self) -> list[str]:
                path = self.path.split("?")[0].rstrip("/")
                path = path.removeprefix("/openai")
                return path.removeprefix("/v1").strip("/").split("/")

            def do_GET(self) -> None:
                parts = self._path()
                with server._lock:
                    if parts == ["batches"]:
                        server.stats.lists += 1
                        data = [server._batch_json(b) for b in server.batches.values()]
                        self._send(200, {"object": "list", "data": data, "has_more": False})
                        return
                    if (
                        len(parts) == 2
                        and parts[0] == "batches"
                        and parts[1] in server.batches
                        and parts[1] not in server.forgotten
                    ):
                        server.stats.retrieves += 1
                        batch = server.batches[parts[1]]
                        server._advance(batch)
                        self._send(200, server._batch_json(batch))
                        return
                    if (
                        parts[0] == "files"
                        and parts[2:] == ["content"]
                        and parts[1] in server.files
                    ):
                        server.stats.downloads += 1
                        self._send_bytes(200, server.files[parts[1]][1], "application/jsonl")
                        return
                self._send(404, {"error": {"message": f"no route {self.path}"}})

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                raw = self.rfile.read(length)
                parts = self._path()
                if parts == ["files"]:
                    name, data = _multipart_file(self.headers.get("content-type", ""), raw)
                    with server._lock:
                        server.stats.uploads += 1
                        file_id = server._new_file(name, data)
                    payload = {
                        "id": file_id,
                        "object": "file",
                        "bytes": len(data),
                        "created_at": int(time.time()),
                        "filename": name,
                        "purpose": "batch",
                        "status": "processed",
                    }
                    self._send(200, payload)
                    return
                if parts == ["batches"]:
                    body = json.loads(raw or b"{}")
                    with server._lock:
                        if body.get("input_file_id") not in server.files:
                            self._send(400, {"error": {"message": "no such input file"}})
                            return
                        server.stats.creates += 1
                        batch = ServerBatchState(
                            id=f"batch_{len(server.batches) + 1}",
                            input_file_id=body["input_file_id"],
                            metadata=dict(body.get("metadata") or {}),
                            completion_window=body.get("completion_window", "24h"),
                        )
                        lines = server.files[batch.input_file_id][1].splitlines()
                        batch.total = sum(1 for line in lines if line.strip())
                        server.requests_seen.extend(
                            json.loads(line) for line in lines if line.strip()
                        )
                        server.batches[batch.id] = batch
                        if server.fail_next is not None:
                            server._fail[batch.id] = server.fail_next
                            server.fail_next = None
                        if server.expire_next is not None:
                            server.expire[batch.id] = server.expire_next
                            server.expire_next = None
                    server.create_arrived.set()
                    if server.hold_create is not None:
                        server.hold_create.wait()
                    with server._lock:
                        self._send(200, server._batch_json(batch))
                    return
                if len(parts) == 3 and parts[0] == "batches" and parts[2] == "cancel":
                    with server._lock:
                        if parts[1] not in server.batches or parts[1] in server.forgotten:
                            self._send(404, {"error": {"message": f"no batch {parts[1]}"}})
                            return
                        batch = server.batches[parts[1]]
                        server.stats.cancels += 1
                        batch.cancel_requested = True
                        if batch.status in ("validating", "in_progress"):
                            batch.status = "cancelling"
                        self._send(200, server._batch_json(batch))
                    return
                self._send(404, {"error": {"message": f"no route {self.path}"}})

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                self._send_bytes(status, json.dumps(payload).encode(), "application/json")

            def _send_bytes(self, status: int, data: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("content-type", kind)
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler


def _jsonl(rows: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def _multipart_file(content_type: str, body: bytes) -> tuple[str, bytes]:
    """The uploaded file of a multipart/form-data body: its name and bytes."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    for part in message.iter_parts():
        if part.get_param("name", header="content-disposition") == "file":
            return str(part.get_filename() or "upload.jsonl"), bytes(part.get_payload(decode=True))
    raise ValueError("no file in the upload")
