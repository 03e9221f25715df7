"""Benchmark: which judge mode agrees better with clinicians, one structured call or one call per
CTRS item (`studio judge --per-item`)?

    # a database that clinicians rated in the review app, against a real judge model:
    python bench/judge_modes.py --db studio.db --backend groq --model openai/gpt-oss-120b
    # or an unrated database plus a file of ratings, one JSON object a line:
    #   {"record_id": 3, "item": "focus", "score": 4, "reviewer": "dr-a"}
    python bench/judge_modes.py --db studio.db --ratings ratings.jsonl --config studio.toml
    # proof that the script runs, nothing measured: the loopback judge server on made-up records
    python bench/judge_modes.py --loopback

Each mode judges its own copy of the database afresh (`--rejudge`, no cached answer), then the
copy's judge scores are paired with the clinicians' ratings by `studio judge --agreement`'s code
(quadratic-weighted kappa, Spearman with its interval, bias, AUC) and printed per mode. The
database given is only read. `--loopback` agreement numbers mean nothing: that server scores from
a marker in the text and the "clinician" ratings are made up beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from pydantic import SecretStr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from studio.cbt.ctrs import RATED_ITEMS  # noqa: E402
from studio.commands.judge import print_agreement  # noqa: E402
from studio.judge.agreement import AgreementReport, agreement_report  # noqa: E402
from studio.judge.per_item import MODES, judge_class  # noqa: E402
from studio.model import BackendName  # noqa: E402
from studio.store import Store  # noqa: E402
from studio.store.judging import rate  # noqa: E402
from studio.synth import SynthSettings, make_backend  # noqa: E402


def read_ratings(path: Path) -> list[dict[str, Any]]:
    ratings = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            ratings.append(
                {
                    "record_id": int(row["record_id"]),
                    "item": str(row["item"]),
                    "score": int(row["score"]),
                    "reviewer": str(row.get("reviewer", "clinician")),
                }
            )
        except (ValueError, KeyError, TypeError) as exc:
            sys.exit(f"{path}:{number}: not a rating ({exc!r}); expected record_id, item, score")
    return ratings


async def judge_copy(db: Path, settings: SynthSettings, mode: str) -> Any:
    backend = make_backend(settings)
    with Store(db) as store:
        judge = judge_class(mode)(store, backend, settings, fresh=True)
        try:
            return await judge.run(rejudge=True)
        finally:
            await judge.aclose()
            await backend.aclose()


def measure(
    db: Path, settings: SynthSettings, ratings: list[dict[str, Any]], work: Path
) -> dict[str, tuple[AgreementReport, Any]]:
    results = {}
    for mode in MODES:
        copy = work / f"{mode}.db"
        shutil.copyfile(db, copy)
        if ratings:
            with Store(copy) as store:
                for r in ratings:
                    rate(store, r["record_id"], r["item"], r["score"], reviewer=r["reviewer"])
        summary = asyncio.run(judge_copy(copy, settings, mode))
        with Store(copy) as store:
            results[mode] = (agreement_report(store), summary)
    return results


def loopback_database(path: Path) -> None:
    """Thirty records whose judge scores (set by a marker) sit near made-up clinician ratings."""
    from tests.test_judge import add_records, dialogue

    with Store(path) as store:
        ids = add_records(store, [dialogue(f"SCORE={n % 7}") for n in range(30)])
        for n, record_id in enumerate(ids):
            for item in RATED_ITEMS:
                clinician = max(0, min(6, n % 7 - (n % 3 == 0)))
                rate(store, record_id, item, clinician, reviewer="made-up")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", type=Path, help="A database with dialogues (rated or not).")
    parser.add_argument("--ratings", type=Path, help="Clinician ratings, JSON lines.")
    parser.add_argument("--config", type=Path, help="TOML config ([synth] chooses the backend).")
    parser.add_argument("--backend", choices=[b.value for b in BackendName])
    parser.add_argument("--model")
    parser.add_argument("--base-url")
    parser.add_argument("--concurrency", type=int)
    parser.add_argument("--loopback", action="store_true", help="Prove it runs; measures nothing.")
    parser.add_argument("--json", action="store_true", help="One JSON object.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.loopback:
            from tests.chat_server import ChatServer
            from tests.judge_server import JudgeResponder

            db = work / "loopback.db"
            loopback_database(db)
            with ChatServer(JudgeResponder()) as server:
                settings = SynthSettings(
                    backend=BackendName.OPENAI,
                    model="loopback",
                    base_url=server.openai_base_url,
                    api_key=SecretStr("k"),
                ).validate()
                results = measure(db, settings, [], work)
        else:
            if args.db is None or not args.db.is_file():
                sys.exit(f"{args.db}: no such database (give --db, or --loopback)")
            settings = SynthSettings.load(
                args.config,
                backend=args.backend,
                model=args.model,
                base_url=args.base_url,
                concurrency=args.concurrency,
            ).validate()
            ratings = read_ratings(args.ratings) if args.ratings else []
            results = measure(args.db, settings, ratings, work)
    if args.json:
        out = {
            mode: {"agreement": report.to_json(), "judging": summary.to_json()}
            for mode, (report, summary) in results.items()
        }
        print(json.dumps({"model": settings.model_id, "modes": out}))
        return
    for mode, (report, summary) in results.items():
        print(
            f"\n{mode}: {summary.scored} of {summary.records} records scored, {summary.failed}"
            f" failed, {summary.calls} calls, {summary.tokens:,} tokens, {summary.elapsed_s:.1f} s"
        )
        print_agreement(report, title=f"{mode} ({settings.model_id}): ")


if __name__ == "__main__":
    main()
