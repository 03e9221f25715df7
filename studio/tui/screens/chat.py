"""Talk to a trained counselor: the clinician writes as the client, the run's adapter answers in
its trained format, token by token; ctrl+s keeps the conversation as an evaluation session."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Header, Input, Static

from studio.cbt.dialogue import Role
from studio.evaluate.chat import ChatSession, save_chat
from studio.evaluate.engine import Counselor
from studio.tui.screens.base import StudioScreen
from studio.tui.widgets.footer import StudioFooter


@dataclass
class ChatPiece(Message, bubble=False):
    """A piece of the counselor's answer, as it is generated."""

    text: str


@dataclass
class ChatAnswered(Message, bubble=False):
    """The counselor's answer is complete (it is now the last turn of the session)."""


@dataclass
class ChatSaved(Message, bubble=False):
    evaluation_id: int


class ChatScreen(StudioScreen):
    CSS_PATH = "chat.tcss"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "back", "Back", id="chat.back"),
        Binding("ctrl+s", "save", "Save session", id="chat.save"),
    ]

    def __init__(self, counselor: Counselor, *, max_tokens: int = 256) -> None:
        super().__init__()
        self.session = ChatSession(counselor)
        self.max_tokens = max_tokens
        self.partial = ""
        """The answer being generated (shown after the turns until it is complete)."""
        self.busy = False
        """The counselor is answering: the client's next line waits."""

    def compose(self) -> ComposeResult:
        yield Header()
        with VerticalScroll(id="chat"):
            yield Static(id="transcript")
        yield Input(placeholder="Write as the client; enter sends", id="say")
        yield StudioFooter()

    def on_mount(self) -> None:
        self.sub_title = f"chat with {self.session.counselor.label}"
        self.show()
        self.query_one("#say", Input).focus()

    def transcript(self) -> Text:
        text = Text()
        for turn in self.session.turns:
            counselor = turn.role is Role.COUNSELOR
            text.append(f"{turn.role.label}: ", style="bold cyan" if counselor else "bold magenta")
            text.append(f"{turn.text}\n")
        if self.busy:
            text.append("Counselor: ", style="bold cyan")
            text.append(self.partial or "…")
        return text

    def show(self) -> None:
        self.query_one("#transcript", Static).update(self.transcript())
        self.query_one("#chat", VerticalScroll).scroll_end(animate=False)

    @on(Input.Submitted, "#say")
    def say(self, event: Input.Submitted) -> None:
        line = event.value.strip()
        if not line or self.busy:
            return
        event.input.value = ""
        self.session.say(line)
        self.busy, self.partial = True, ""
        self.show()
        self.answer()

    @work(thread=True, group="chat", exclusive=True, exit_on_error=False, description="Answer")
    def answer(self) -> None:
        # Loading the model (first answer) and generating run here, never on the UI thread.
        try:
            for piece in self.session.reply(max_tokens=self.max_tokens):
                self.post_message(ChatPiece(piece))
        finally:
            self.post_message(ChatAnswered())

    def on_chat_piece(self, message: ChatPiece) -> None:
        self.partial += message.text
        self.show()

    def on_chat_answered(self, message: ChatAnswered) -> None:
        self.busy, self.partial = False, ""
        self.show()

    def action_save(self) -> None:
        if self.busy or len(self.session.turns) < 2:
            self.notify("Nothing to save yet", severity="warning")
            return
        self.save()

    @work(group="chat-save", exclusive=True, exit_on_error=False, description="Save the chat")
    async def save(self) -> None:
        session = self.session

        def job(store: Any) -> int:
            return save_chat(store, session)

        self.post_message(ChatSaved(await self.studio.lane.run(job)))

    def on_chat_saved(self, message: ChatSaved) -> None:
        self.notify(f"Saved as a session of evaluation {message.evaluation_id}")

    def action_back(self) -> None:
        self.dismiss(None)
