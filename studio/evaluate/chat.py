"""Talk to a trained counselor: the clinician writes as the client, the adapter answers in the
format it was trained on, token by token. A conversation can be kept as an evaluation session."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.cbt.dialogue import Role, Turn, format_dialogue
from studio.evaluate.clients import EvalClient
from studio.evaluate.engine import Counselor, counselor_messages
from studio.evaluate.storage import FINISHED, SessionRow, find_or_create_evaluation, save_session
from studio.store import Store

#: How a chat opens (the CACTUS greeting; the adapter was trained with an opening exchange).
GREETING = "Hello, thank you for coming in today. What would you like to talk about?"
CHAT_ATTITUDE = "clinician"


@dataclass(slots=True)
class ChatSession:
    counselor: Counselor
    turns: list[Turn] = field(default_factory=lambda: [Turn(Role.COUNSELOR, GREETING)])
    saved_as: str = ""
    """The session's client key once saved: saving again updates that session."""
    _model: Any = None
    _tokenizer: Any = None
    _info: Any = None

    def load(self) -> None:
        """The base model with the adapter, and the tokenizer (chat template) it was trained with."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from studio.train.adapter import AdapterInfo, has_tokenizer

        settings = self.counselor.settings
        adapter = Path(settings.adapter) if settings.adapter else None
        source = adapter if adapter and has_tokenizer(adapter) else settings.model_id
        self._tokenizer = AutoTokenizer.from_pretrained(source)
        model: Any = AutoModelForCausalLM.from_pretrained(settings.model_id)
        if adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(adapter))
            self._info = AdapterInfo.load(adapter)
        model.eval()
        self._model = model

    def say(self, text: str) -> None:
        self.turns.append(Turn(Role.CLIENT, " ".join(text.split())))

    def reply(self, *, max_tokens: int = 256) -> Iterator[str]:
        """The counselor's answer as it is generated (the pieces joined are the whole answer,
        which is then a turn of the conversation)."""
        from transformers import TextIteratorStreamer

        from studio.train.adapter import trained_messages

        if self._model is None:
            self.load()
        client = EvalClient("chat", "", CHAT_ATTITUDE, ())
        messages = counselor_messages(self.counselor, client, self.turns)
        if self._info is not None:
            messages = trained_messages(self._info, messages)
        tokenizer, model = self._tokenizer, self._model
        inputs = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        ).to(model.device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
        temperature = self.counselor.settings.temperature
        kwargs = {
            **inputs,
            "max_new_tokens": max_tokens,
            "do_sample": temperature > 0,
            "temperature": temperature if temperature > 0 else None,
            "pad_token_id": tokenizer.pad_token_id or tokenizer.eos_token_id,
            "streamer": streamer,
        }
        worker = threading.Thread(target=model.generate, kwargs=kwargs, daemon=True)
        worker.start()
        pieces = []
        for piece in streamer:
            pieces.append(piece)
            yield piece
        worker.join()
        text = " ".join("".join(pieces).split())
        self.turns.append(Turn(Role.COUNSELOR, text or "(no answer)"))

    @property
    def transcript(self) -> str:
        return format_dialogue(self.turns)


def save_chat(
    store: Store,
    session: ChatSession,
    *,
    ctrs: dict[str, Any] | None = None,
    flags: list[Any] | None = None,
) -> int:
    """Keep the conversation as a session of the run's chat evaluation; returns its id."""
    counselor = session.counselor
    evaluation = find_or_create_evaluation(
        store,
        key=f"chat:{counselor.label}:{counselor.settings.adapter or counselor.settings.model_id}",
        run_id=counselor.run_id,
        label=f"{counselor.label} — chats",
        counselor=counselor.describe(),
        settings={"clients": "chat"},
    )
    if not session.saved_as:
        count = store.conn.execute(
            "SELECT COUNT(*) FROM eval_sessions WHERE evaluation_id = ?", (evaluation.id,)
        ).fetchone()[0]
        session.saved_as = f"chat:{count + 1}"
    scores = ctrs or {}
    values = [v["score"] for v in scores.values()]
    save_session(
        store,
        SessionRow(
            evaluation_id=evaluation.id,
            client_key=session.saved_as,
            attitude=CHAT_ATTITUDE,
            status=FINISHED,
            transcript=session.transcript,
            turns=len(session.turns),
            ended_by="clinician",
            ctrs=scores,
            flags=flags or [],
            ctrs_mean=sum(values) / len(values) if values else None,
        ),
    )
    return evaluation.id
