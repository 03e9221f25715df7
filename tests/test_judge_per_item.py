"""The judge's per-item mode (one call per CTRS item) against the loopback judge server; the
benchmark of both modes; the judged counts in plain `studio stats`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from studio.cbt.ctrs import CTRS_ITEMS, RATED_ITEMS
from studio.judge.answer import AnswerError, item_schema, parse_item_answer, rest_schema
from studio.judge.per_item import PerItemJudge
from studio.store import Store
from studio.store.judging import judged_counts, latest_judgement, records_to_judge
from studio.synth import SynthSettings, make_backend
from tests.chat_server import ChatServer
from tests.judge_server import JudgeResponder
from tests.test_judge import add_records, dialogue, judge_argv, settings_for


async def judge_per_item(store: Store, settings: SynthSettings) -> Any:
    backend = make_backend(settings)
    judge = PerItemJudge(store, backend, settings)
    try:
        return await judge.run()
    finally:
        await judge.aclose()
        await backend.aclose()


def test_one_item_is_read_strictly() -> None:
    assert parse_item_answer('{"explanation": "Warm.", "score": 3}', "focus").score == 3
    for bad, reason in [
        ('{"explanation": "Warm.", "score": 7}', "focus.score is 7"),
        ('{"explanation": "Warm.", "score": 3, "extra": 1}', "unexpected fields: extra"),
        ("A 5, I think.", "not JSON"),
    ]:
        try:
            parse_item_answer(bad, "focus")
        except AnswerError as exc:
            assert reason in str(exc)
        else:
            raise AssertionError(bad)
    assert item_schema("focus")["schema"]["required"] == ["explanation", "score"]
    assert set(rest_schema()["schema"]["required"]) == {"fidelity", "safety_flags"}


async def test_per_item_makes_seven_calls_and_stores_one_judgement(store: Store) -> None:
    ids = add_records(store, [dialogue("SCORE=2"), dialogue("SCORE=5", risk=True)])
    responder = JudgeResponder()
    with ChatServer(responder) as server:
        summary = await judge_per_item(store, settings_for(server))
        bodies = list(server.bodies)
    assert (summary.records, summary.scored, summary.flagged, summary.failed) == (2, 2, 1, 0)
    # Six CTRS items and one call for fidelity and flags, per record, each with its own schema.
    assert responder.judge_calls == summary.calls == 14
    names = {b["response_format"]["json_schema"]["name"] for b in bodies}
    assert names == {f"ctrs_{i}" for i in CTRS_ITEMS} | {"cbt_fidelity_and_safety"}
    low = latest_judgement(store, ids[0])
    assert low is not None and low.current
    assert {i: s.score for i, s in low.result.items.items()} == dict.fromkeys(RATED_ITEMS, 2)
    assert low.result.template_version.startswith("per-item:judge_understanding@1,")
    assert "judge_fidelity@1" in low.result.template_version
    assert low.result.plan_steps == (1, 2)
    risky = latest_judgement(store, ids[1])
    assert risky is not None and risky.flagged and risky.result.flags[0].turn == 4
    assert judged_counts(store)["records"] == 2


async def test_an_unparseable_item_fails_the_record_with_the_raw_text(store: Store) -> None:
    ids = add_records(store, [dialogue("ITEM_PROSE"), dialogue()])
    responder = JudgeResponder()
    with ChatServer(responder) as server:
        settings = settings_for(server)
        summary = await judge_per_item(store, settings)
        assert (summary.scored, summary.failed) == (1, 1)
        assert summary.failures == {"unreadable answer": 1}
        failed = latest_judgement(store, ids[0])
        assert failed is not None and failed.result.status == "failed"
        assert failed.result.error.startswith("focus: unreadable answer: not JSON")
        assert "--- focus ---\nThe focus was good, I would say a 5." in failed.result.raw
        assert failed.result.items == {}  # never a partial judgement
        assert records_to_judge(store) == ids[:1]
        # The next run asks again only what was unreadable: the readable items come from cache.
        responder.fixed = True
        again = await judge_per_item(store, settings)
    assert (again.records, again.scored, again.calls, again.cache_hits) == (1, 1, 1, 6)
    assert judged_counts(store)["records"] == 2


def test_cli_per_item(db_path: Path) -> None:
    with Store(db_path) as store:
        add_records(store, [dialogue(), dialogue("ITEM_PROSE")])
    from click.testing import CliRunner

    from studio.cli import cli

    with ChatServer(JudgeResponder()) as server:
        result = CliRunner().invoke(cli, [*judge_argv(db_path, server), "--per-item", "--json"])
    assert result.exit_code == 1, result.output
    summary = json.loads(result.output.splitlines()[0])
    assert (summary["scored"], summary["failed"], summary["calls"]) == (1, 1, 14)


def test_the_mode_benchmark_runs_on_the_loopback_server() -> None:
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        [sys.executable, str(root / "bench" / "judge_modes.py"), "--loopback", "--json"],
        capture_output=True,
        text=True,
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    modes = json.loads(done.stdout)["modes"]
    assert set(modes) == {"one-call", "per-item"}
    assert modes["one-call"]["judging"]["calls"] == 30
    assert modes["per-item"]["judging"]["calls"] == 30 * 7
    assert modes["per-item"]["agreement"]["pairs"] == 30 * len(RATED_ITEMS)


def test_plain_stats_prints_the_judged_counts(db_path: Path, run: Any) -> None:
    with Store(db_path) as store:
        ids = add_records(store, [dialogue(), dialogue(risk=True), dialogue()])
    with ChatServer(JudgeResponder()) as server:
        assert run(*judge_argv(db_path, server), db=False).exit_code == 0
    with Store(db_path) as store:
        from studio.store.judging import rate

        rate(store, ids[0], "focus", 3, reviewer="dr-a")
    text = run("stats").output
    assert "Judged" in text
    lines = {" ".join(line.strip("│┃ ").split()) for line in text.splitlines()}
    assert any(
        line.startswith("records with current scores") and line.endswith("3") for line in lines
    )
    assert any(line.startswith("flagged") and line.endswith("1") for line in lines)
    assert any(line.startswith("rated by clinicians") and line.endswith("1") for line in lines)
