"""`studio eval` end to end: the tiny random Llama with an adapter trained here is the counselor
under test, a loopback chat-completions server plays the client and the judge."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from studio.evaluate.panas import FEELINGS, NEGATIVE
from studio.ingest.formats import parse_cactus
from studio.ingest.load import add_rows
from studio.model import BackendName
from studio.store import Store
from tests.chat_server import ChatServer, Reply, cbt_reply, detect_stage
from tests.conftest import cactus_row
from tests.judge_server import is_judge_prompt, judgement
from tests.tiny_model import build_tiny_llama
from tests.waiting import wait_until as wait_for

pytestmark = pytest.mark.train_extra

RECORDS = 6
#: A condition waited on longer than this means the code under test hangs: fail, never hang.
PATIENCE_S = 600


class EvalResponder:
    """Client turns (the two-agent client prompt), judgements and PANAS ratings; the judge can be
    held after `hold_after` calls, so a test can kill a run with sessions in flight."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {}
        self.hold_after: int | None = None
        self.release = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        system = str(messages[0]["content"])
        user = str(messages[-1]["content"])
        kind = (
            "judge"
            if is_judge_prompt(body)
            else "panas"
            if "PANAS" in system
            else detect_stage(body)
        )
        with self._lock:
            self.calls[kind] = self.calls.get(kind, 0) + 1
            count = self.calls[kind]
        if kind == "judge":
            if self.hold_after is not None and count > self.hold_after:
                self.release.wait(timeout=PATIENCE_S)
            return Reply(content=judgement(4, steps=()))
        if kind == "panas":
            after = "from its transcript" in user
            ratings = {
                f: (2 if after else 4) if f in NEGATIVE else (3 if after else 2) for f in FEELINGS
            }
            return Reply(content=json.dumps(ratings))
        return cbt_reply(body)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A database with accepted records and one finished training run (3 steps)."""
    folder = tmp_path_factory.mktemp("eval")
    model = build_tiny_llama(folder / "model")
    db = folder / "studio.db"
    with Store(db) as store:
        add_rows(store, [parse_cactus(cactus_row(n)) for n in range(RECORDS)], accepted_by="ann")
    subprocess.run(
        [sys.executable, "-m", "studio", "train", "--db", str(db), "--base-model", str(model),
         "--output", str(folder / "run"), "--max-steps", "2", "--events"],
        env=_env(), check=True, capture_output=True, timeout=PATIENCE_S,
    )  # fmt: skip
    return db, model


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "STUDIO_DB"}


@pytest.fixture
def db(trained: tuple[Path, Path], tmp_path: Path) -> Path:
    copy = tmp_path / "studio.db"
    shutil.copy(trained[0], copy)
    return copy


@pytest.fixture
def server() -> Iterator[tuple[ChatServer, EvalResponder]]:
    responder = EvalResponder()
    with ChatServer(responder) as chat:
        yield chat, responder
    responder.release.set()


def clients_file(path: Path) -> Path:
    """Two clients × two attitudes, in the CACTUS evaluation shape."""
    entries = []
    for n, name in enumerate(("Mia", "Tom")):
        for attitude in ("positive", "negative"):
            entries.append(
                {
                    "AI_client": {
                        "intake_form": f"1. Basic Information\nName: {name}\nAge: {30 + n}\n\n"
                        "2. Presenting Problem\nShe keeps thinking she will be fired.",
                        "attitude": attitude,
                        "dialogue_history_init": "Counselor: Hi, what brings you here today?\n"
                        f"Client: I am sure I will be fired ({name}).",
                    }
                }
            )
    path.write_text(json.dumps(entries))
    return path


def eval_argv(db: Path, url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "studio", "eval", "--db", str(db), "--run", "1",
        "--client-backend", "openai", "--client-base-url", url, "--client-model", "client",
        "--judge-backend", "openai", "--judge-base-url", url, "--judge-model", "judge",
        "--max-exchanges", "3", "--min-turns", "4", "--concurrency", "2", "--json", *extra,
    ]  # fmt: skip


def finished_sessions(db: Path) -> int:
    try:
        with sqlite3.connect(db, timeout=30) as conn:
            row = conn.execute("SELECT COUNT(*) FROM eval_sessions WHERE status = 'finished'")
            return int(row.fetchone()[0])
    except sqlite3.OperationalError:  # the table is not there yet
        return 0


def test_evaluation_runs_stores_and_resumes_after_kill_9(
    db: Path, server: tuple[ChatServer, EvalResponder], tmp_path: Path
) -> None:
    chat, responder = server
    clients = clients_file(tmp_path / "clients.json")
    argv = eval_argv(db, chat.openai_base_url, "--clients", str(clients),
                     "--attitudes", "positive,negative")  # fmt: skip
    responder.hold_after = 1  # the first session is judged; the next ones wait at the judge
    proc = subprocess.Popen(argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: finished_sessions(db) == 1, "the first finished session")
        wait_for(lambda: responder.calls.get("judge", 0) >= 2, "a second session at the judge")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    first_run = dict(responder.calls)
    responder.hold_after = None
    responder.release.set()

    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=PATIENCE_S)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["progress"]["resumed_from"] == 1 and summary["progress"]["ran"] == 3
    assert summary["sessions"] == 4 and summary["failed"] == 0 and summary["run"] == 1
    assert summary["label"] == "run 1 (adapter)"
    assert summary["counselor"]["kind"] == "adapter" and summary["counselor"]["adapter"]
    for item, stat in summary["items"].items():
        assert stat["mean"] == 4 and stat["ci95"] == [4, 4] and stat["n"] == 4, item
    panas = summary["panas"]
    assert panas["positive_change"]["mean"] == 10 and panas["negative_change"]["mean"] == -20
    assert set(summary["per_attitude"]) == {"positive", "negative"}
    assert all(p["sessions"] == 2 for p in summary["per_attitude"].values())

    # Nothing paid twice: every client turn answered before the kill came from the cache (four
    # sessions of three client turns), and the PANAS of the finished session was not asked again.
    assert responder.calls["client_agent"] == 4 * 3, (first_run, responder.calls)
    assert responder.calls["panas"] == 4 * 2

    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT client_key, attitude, transcript, turns, ended_by, ctrs, panas_before,"
            " panas_after, evaluation_id FROM eval_sessions ORDER BY client_key, attitude"
        ).fetchall()
        (evaluation,) = conn.execute("SELECT id, run_id FROM evaluations").fetchall()
    assert [(r[0], r[1]) for r in rows] == [
        ("file:0", "positive"), ("file:1", "negative"), ("file:2", "positive"),
        ("file:3", "negative"),
    ]  # fmt: skip
    for row in rows:
        lines = row[2].splitlines()
        assert lines[0] == "Counselor: Hi, what brings you here today?"
        assert len(lines) == row[3] == 2 + 2 * 3 and row[4] == "limit"
        assert [line.split(":")[0] for line in lines] == ["Counselor", "Client"] * 4
        assert len(json.loads(row[5])) == 6 and len(json.loads(row[6])) == 20
        assert row[8] == evaluation[0]
    assert evaluation[1] == 1


def test_default_clients_are_the_runs_held_out_records(
    db: Path, server: tuple[ChatServer, EvalResponder]
) -> None:
    chat, _responder = server
    argv = eval_argv(db, chat.openai_base_url, "--attitudes", "neutral", "--max-exchanges", "1")
    done = subprocess.run(argv, env=_env(), capture_output=True, text=True, timeout=PATIENCE_S)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["sessions"] == 1 and summary["settings"]["clients"] == "held-out"
    with Store(db) as store:
        from studio.train.dataset import build_sft_dataset

        held_out = {e.record_id for e in build_sft_dataset(store.accepted_records()).validation}
        (row,) = store.conn.execute("SELECT record_id, client_key FROM eval_sessions").fetchall()
    assert {row[0]} == held_out and row[1] == f"record:{row[0]}"


def test_a_local_counselor_generates_for_waiting_sessions_in_one_batch(
    trained: tuple[Path, Path],
) -> None:
    import asyncio

    from studio.evaluate.batching import BatchedLocalBackend
    from studio.synth.backends import ChatRequest, LocalBackend
    from studio.synth.settings import SynthSettings

    _db, model = trained
    adapter = str(model.parent / "run")
    settings = SynthSettings(
        backend=BackendName.LOCAL, model=str(model), adapter=adapter, temperature=0.0
    )
    conversations = [
        [{"role": "system", "content": ""}, {"role": "assistant", "content": "Hello."},
         {"role": "user", "content": "Hi." * n}]
        for n in (1, 4, 9)
    ]  # fmt: skip
    requests = [ChatRequest(messages=m, max_tokens=6, temperature=0.0) for m in conversations]
    batched = BatchedLocalBackend(settings)
    single = LocalBackend(settings)

    async def both() -> tuple[list[str], list[str]]:
        together = await asyncio.gather(*(batched.complete(r) for r in requests))
        alone = [await single.complete(r) for r in requests]
        return [a.text for a in together], [a.text for a in alone]

    together, alone = asyncio.run(both())
    assert batched.batches == [3]  # three sessions waiting: one generate call
    assert any(together) and together == alone  # left padding changes nothing (greedy decoding)


def test_chat_streams_the_adapter_and_saves_the_conversation_scored(
    db: Path, server: tuple[ChatServer, EvalResponder], monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from studio.cli import cli

    chat, responder = server
    monkeypatch.delenv("STUDIO_DB", raising=False)
    argv = ["chat", "--db", str(db), "--run", "1", "--max-tokens", "8", "--judge",
            "--judge-backend", "openai", "--judge-base-url", chat.openai_base_url,
            "--judge-model", "judge"]  # fmt: skip
    result = CliRunner().invoke(cli, argv, input="I keep failing.\nIt is hard.\n/end\n")
    assert result.exit_code == 0, result.output
    assert result.output.count("Counselor: ") == 3  # the greeting and two answers
    assert "saved as a session of evaluation 1 (5 turns, CTRS mean 4.00)" in result.output
    assert responder.calls == {"judge": 1}
    with Store(db) as store:
        (row,) = store.conn.execute(
            "SELECT e.run_id, s.attitude, s.ended_by, s.transcript, s.ctrs_mean"
            " FROM eval_sessions s JOIN evaluations e ON e.id = s.evaluation_id"
        ).fetchall()
    assert row[:3] == (1, "clinician", "clinician") and row[4] == 4
    lines = row[3].splitlines()
    assert [line.split(":")[0] for line in lines] == ["Counselor", "Client"] * 2 + ["Counselor"]
    assert lines[1] == "Client: I keep failing."


def test_chat_reply_streams_pieces_that_make_the_turn(trained: tuple[Path, Path]) -> None:
    from studio.evaluate.chat import ChatSession
    from studio.evaluate.engine import Counselor
    from studio.synth.settings import SynthSettings

    _db, model = trained
    settings = SynthSettings(
        backend=BackendName.LOCAL,
        model=str(model),
        adapter=str(model.parent / "run"),
        temperature=0.0,
    )
    session = ChatSession(Counselor(settings, "run 1", "adapter"))
    session.say("I keep failing.")
    pieces = list(session.reply(max_tokens=12))
    assert pieces and session.turns[-1].text == " ".join("".join(pieces).split())


async def test_the_app_chats_with_a_runs_adapter_streamed_and_saves_it(db: Path) -> None:
    from studio.evaluate.storage import (
        FINISHED,
        SessionRow,
        find_or_create_evaluation,
        save_session,
    )
    from studio.tui.screens.chat import ChatScreen
    from tests.test_tui_support import settle, studio_app

    with Store(db) as store:
        evaluation = find_or_create_evaluation(
            store, key="k", run_id=1, label="run 1 (adapter)", counselor={}, settings={}
        )
        save_session(
            store,
            SessionRow(evaluation.id, "file:0", "neutral", FINISHED, transcript="Counselor: Hi.",
                       turns=1, ctrs_mean=3.0),
        )  # fmt: skip
    from studio.tui.screens.chat import ChatPiece

    app = studio_app(db)
    messages: list[Any] = []
    async with app.run_test(size=(120, 36), message_hook=messages.append) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        await pilot.press("c")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, ChatScreen)
        screen.max_tokens = 8
        counselor = screen.session.counselor  # greedy: the same answer on every run
        screen.session.counselor = replace(
            counselor, settings=replace(counselor.settings, temperature=0.0)
        )
        await pilot.press(*"I keep failing.", "enter")
        await settle(pilot)
        assert not screen.busy
        turns = [t.role.value for t in screen.session.turns]
        assert turns == ["counselor", "client", "counselor"]
        pieces = [m.text for m in messages if isinstance(m, ChatPiece)]
        assert pieces and " ".join("".join(pieces).split()) == screen.session.turns[-1].text
        await pilot.press("ctrl+s")
        await settle(pilot)
        await pilot.press("ctrl+s")  # saved again: the same session, updated
        await settle(pilot)
    with Store(db) as store:
        rows = store.conn.execute(
            "SELECT e.run_id, s.client_key, s.turns FROM eval_sessions s"
            " JOIN evaluations e ON e.id = s.evaluation_id WHERE s.attitude = 'clinician'"
        ).fetchall()
    assert rows == [(1, "chat:1", 3)]


async def test_the_app_evaluates_the_newest_run_in_the_background_with_progress(
    db: Path,
    server: tuple[ChatServer, EvalResponder],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from textual.widgets import Label

    from studio.tui.screens.evaluation import EvaluationScreen
    from tests.test_tui_support import settle, studio_app

    chat, _responder = server
    config = tmp_path / "studio.toml"
    config.write_text(
        f'[synth]\nbackend = "openai"\nbase_url = "{chat.openai_base_url}"\nmodel = "loopback"\n'
    )
    monkeypatch.setenv("STUDIO_CONFIG", str(config))  # the client simulator and the judge
    app = studio_app(db)
    async with app.run_test(size=(140, 50)) as pilot:
        await settle(pilot)
        await pilot.press("v")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, EvaluationScreen) and screen.summaries == []
        screen.eval_args = ["--clients", str(clients_file(tmp_path / "clients.json")),
                            "--attitudes", "positive", "--max-exchanges", "1", "--min-turns", "2"]  # fmt: skip
        await pilot.press("e")
        await settle(pilot)
        assert str(screen.query_one("#progress", Label).render()) == "Evaluated run 1: 2/2 sessions"
        await settle(pilot)
        assert [(s["label"], s["sessions"]) for s in screen.summaries] == [("run 1 (adapter)", 2)]
