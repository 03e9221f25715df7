"""A local counselor that generates for many sessions in one batch.

`LocalBackend` generates one answer at a time. In an evaluation, many sessions wait for the
counselor at once; this backend collects the requests that arrive while the model is busy (or
within a short window) and generates them together, left-padded, in one `generate` call. On a GPU
that is most of the throughput; on a CPU it still saves the per-call overhead.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from studio.synth.backends import ChatRequest, ChatResponse, LocalBackend
from studio.synth.settings import SynthSettings

#: How long the first request of a batch waits for others to join (seconds).
GATHER_S = 0.02


@dataclass(slots=True)
class _Pending:
    request: ChatRequest
    future: asyncio.Future[ChatResponse]


class BatchedLocalBackend(LocalBackend):
    def __init__(self, settings: SynthSettings, *, max_batch: int = 16) -> None:
        super().__init__(settings)
        self.max_batch = max(1, max_batch)
        self._pending: list[_Pending] = []
        self._runner: asyncio.Task[None] | None = None
        self.batches: list[int] = []
        """The size of every batch generated (for the benchmark and tests)."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        future: asyncio.Future[ChatResponse] = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(request, future))
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        """Generate batches until no request waits; requests that arrive during a batch form
        the next one."""
        await asyncio.sleep(GATHER_S)
        while self._pending:
            # One batch shares the generation settings; others wait for the next round.
            first = self._pending[0].request
            same = [
                p
                for p in self._pending
                if (p.request.max_tokens, p.request.temperature)
                == (first.max_tokens, first.temperature)
            ][: self.max_batch]
            self._pending = [p for p in self._pending if p not in same]
            live = [p for p in same if not p.future.cancelled()]
            if not live:
                continue
            try:
                answers = await asyncio.to_thread(self._generate_batch, [p.request for p in live])
            except BaseException as exc:
                for p in live:
                    if not p.future.done():
                        p.future.set_exception(exc)
                if not isinstance(exc, Exception):
                    raise
                continue
            for p, answer in zip(live, answers, strict=True):
                if not p.future.done():
                    p.future.set_result(answer)

    def _prompt_ids(self, request: ChatRequest) -> list[int]:
        tokenizer = self._tokenizer
        messages = list(request.messages)
        if self._adapter_info is not None:  # the system message the adapter was trained on
            from studio.train.adapter import trained_messages

            messages = trained_messages(self._adapter_info, messages)
        if getattr(tokenizer, "chat_template", None):
            ids = tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_dict=True
            )["input_ids"]
        else:
            text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
            ids = tokenizer(text + "\n\nassistant:")["input_ids"]
        return [int(i) for i in ids]

    def _generate_batch(self, requests: list[ChatRequest]) -> list[ChatResponse]:
        import torch

        self._load()
        self.batches.append(len(requests))
        tokenizer, model = self._tokenizer, self._model
        prompts = [self._prompt_ids(r) for r in requests]
        width = max(len(p) for p in prompts)
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        # Left padding: every prompt ends where generation starts.
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=model.device)
        mask = torch.tensor(
            [[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=model.device
        )
        first = requests[0]
        with torch.no_grad():
            out: Any = model.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=first.max_tokens,
                do_sample=first.temperature > 0,
                temperature=first.temperature if first.temperature > 0 else None,
                pad_token_id=pad,
            )
        answers = []
        eos = tokenizer.eos_token_id
        for row, prompt in zip(out[:, width:], prompts, strict=True):
            tokens = row.tolist()
            ended = eos is not None and eos in tokens
            if ended:
                tokens = tokens[: tokens.index(eos)]
            while tokens and tokens[-1] == pad:
                tokens.pop()
            answers.append(
                ChatResponse(
                    text=tokenizer.decode(tokens, skip_special_tokens=True),
                    tokens_in=len(prompt),
                    tokens_out=len(tokens),
                    finish_reason="stop" if ended or len(tokens) < first.max_tokens else "length",
                )
            )
        return answers
