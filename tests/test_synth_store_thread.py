"""A locked database does not stall the engine's event loop; one transaction per finished stage;
templates are parsed once yet follow a clinician's edit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from studio.store import Store
from studio.synth import Synthesizer, SynthEvent, SynthSettings, make_backend
from studio.synth.templates import load_template
from tests.chat_server import ChatServer, Reply, cbt_reply
from tests.test_synth import SEEDS

WAIT_S = 60.0
"""Only a guard against a hang: every wait below ends on a condition long before it."""


def settings_for(server: ChatServer, concurrency: int) -> SynthSettings:
    return SynthSettings(
        backend="openai",
        model="test-model",
        base_url=server.openai_base_url,
        concurrency=concurrency,
        # Known limits far above the load, no budget probe: no call waits for a first answer
        # (without them the first request goes alone), so the first four go out together.
        rpm=10**7,
        tpm=10**10,
        token_budgets=False,
    ).validate()


def test_a_database_locked_by_another_writer_does_not_stall_the_calls_in_flight(
    tmp_path: Path,
) -> None:
    """Four first calls are out at once; before they are answered another writer (the review
    app, a batch) takes the database's write lock, and lets go only once all four answers have
    arrived. The first answer's commit must wait for the lock off the event loop: waiting on it,
    the loop would never see the other answers (and the commit would fail when its busy timeout
    ran out)."""
    db = tmp_path / "s.db"
    with Store(db) as store:
        store.add_rows(SEEDS[:4])
    other_writer = sqlite3.connect(db, isolation_level=None, check_same_thread=False)

    def lock() -> None:
        other_writer.execute("BEGIN IMMEDIATE")

    # The first four requests are answered only once all are sent and the lock is taken; later
    # ones at once (the barrier is then broken).
    all_out = threading.Barrier(4, action=lock)
    released_by = ""
    answered = 0

    def release(why: str) -> None:
        nonlocal released_by
        if not released_by:
            released_by = why
            all_out.abort()
            other_writer.rollback()

    def reply(body: dict[str, Any]) -> Reply:
        with contextlib.suppress(threading.BrokenBarrierError):
            all_out.wait(WAIT_S)
        return cbt_reply(body)

    def on_event(event: SynthEvent) -> None:
        nonlocal answered
        if event.kind == "call":
            answered += 1
            if answered == 4:
                release("the four answers")

    guard = threading.Timer(WAIT_S, release, ("the guard",))
    guard.start()
    try:
        with ChatServer(reply) as server:
            settings = settings_for(server, concurrency=4)

            async def run() -> int:
                backend = make_backend(settings)
                with Store(db) as store:
                    synthesizer = Synthesizer(store, backend, settings, on_event=on_event)
                    summary = await synthesizer.run()
                await backend.aclose()
                return summary.stages.get("generated", 0)

            generated = asyncio.run(run())
    finally:
        guard.cancel()
        other_writer.close()
    assert released_by == "the four answers"  # they came in while the lock was held
    assert generated == 16


def test_each_finished_stage_is_one_commit_with_its_answer(
    tmp_path: Path,
) -> None:
    db = tmp_path / "s.db"
    with Store(db) as store:
        store.add_rows(SEEDS[:2])
    statements: list[str] = []
    with ChatServer() as server:
        settings = settings_for(server, concurrency=1)

        async def run() -> None:
            backend = make_backend(settings)
            with Store(db) as store:
                store.conn.set_trace_callback(statements.append)
                await Synthesizer(store, backend, settings).run()
            await backend.aclose()

        asyncio.run(run())
    commits = [s for s in statements if s.strip().upper() == "COMMIT"]
    # One to create the two records, then one per stage (its cached answer in the same one).
    assert len(commits) == 1 + 8
    with Store(db) as store:
        assert store.conn.execute("SELECT count(*) FROM llm_cache").fetchone()[0] == 8
        assert store.stats()["stages"]["generated"] == 8


def test_a_template_is_parsed_once_and_an_edit_applies_to_the_next_call(tmp_path: Path) -> None:
    source = load_template("intake_form").path.read_text(encoding="utf-8")
    path = tmp_path / "intake_form.md"
    path.write_text(source, encoding="utf-8")
    first = load_template("intake_form", tmp_path)
    assert load_template("intake_form", tmp_path) is first  # kept, not read again
    path.write_text(source.replace("=== user ===\n", "=== user ===\nEdited.\n"), encoding="utf-8")
    stat = path.stat()
    # Same size class of edit within one clock tick must still count: move mtime on explicitly.
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
    edited = load_template("intake_form", tmp_path)
    assert edited is not first
    assert edited.user.startswith("Edited.")
