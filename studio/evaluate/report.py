"""An evaluation's summary: per-item means with 95 % intervals, per attitude, and PANAS change."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from studio.cbt.ctrs import CTRS_ITEMS
from studio.evaluate.stats import mean_ci
from studio.evaluate.storage import FINISHED, EvaluationRow, SessionRow


def summarize_sessions(rows: Sequence[SessionRow]) -> dict[str, Any]:
    done = [s for s in rows if s.status == FINISHED]
    items = {
        item: mean_ci([float(s.ctrs[item]["score"]) for s in done if item in s.ctrs]).to_json()
        for item in CTRS_ITEMS
    }
    return {
        "sessions": len(done),
        "items": items,
        "ctrs_mean": mean_ci([s.ctrs_mean for s in done if s.ctrs_mean is not None]).to_json(),
        "panas": {
            "positive_change": mean_ci(
                [s.positive_change for s in done if s.positive_change is not None]
            ).to_json(),
            "negative_change": mean_ci(
                [s.negative_change for s in done if s.negative_change is not None]
            ).to_json(),
        },
        "flagged": sum(1 for s in done if s.flags),
        "ended_by_client": sum(1 for s in done if s.ended_by == "client"),
        "turns": mean_ci([float(s.turns) for s in done]).to_json(),
    }


def summarize(evaluation: EvaluationRow, rows: Sequence[SessionRow]) -> dict[str, Any]:
    attitudes = sorted({s.attitude for s in rows})
    failed = [s for s in rows if s.status != FINISHED]
    return {
        "evaluation": evaluation.id,
        "run": evaluation.run_id,
        "label": evaluation.label,
        "counselor": evaluation.counselor,
        "settings": evaluation.settings,
        "failed": len(failed),
        "errors": sorted({s.error for s in failed})[:5],
        **summarize_sessions(rows),
        "per_attitude": {
            a: summarize_sessions([s for s in rows if s.attitude == a]) for a in attitudes
        },
    }


def comparison(store: Any) -> list[tuple[dict[str, Any], list[SessionRow]]]:
    """Every evaluation with finished sessions: its summary and its sessions, lowest score first
    (what the counselor does worst is what a clinician should read first)."""
    from studio.evaluate.storage import list_evaluations, sessions

    found = []
    for evaluation in list_evaluations(store):
        rows = sessions(store, evaluation.id)
        done = [s for s in rows if s.status == FINISHED]
        if not done:
            continue
        done.sort(key=lambda s: (s.ctrs_mean is None, s.ctrs_mean or 0.0, s.id))
        found.append((summarize(evaluation, rows), done))
    return found


def run_summaries(store: Any) -> dict[int, str]:
    """One line per evaluated training run (its newest evaluation of an adapter), for the
    Training pane's run history: `CTRS 3.80 [3.52, 4.08] · PANAS +4.0 / -6.0 · 24 sessions`."""
    from studio.evaluate.storage import list_evaluations, sessions

    lines: dict[int, str] = {}
    for evaluation in list_evaluations(store):
        if evaluation.run_id is None or evaluation.counselor.get("kind") != "adapter":
            continue
        if evaluation.settings.get("clients") == "chat":
            continue
        summary = summarize_sessions(sessions(store, evaluation.id))
        if not summary["sessions"]:
            continue
        ctrs = summary["ctrs_mean"]
        low, high = ctrs["ci95"]
        interval = f" [{low:.2f}, {high:.2f}]" if low is not None else ""
        panas = summary["panas"]
        positive, negative = panas["positive_change"]["mean"], panas["negative_change"]["mean"]
        lines[evaluation.run_id] = (
            f"CTRS {ctrs['mean']:.2f}{interval} · PANAS {positive:+.1f} / {negative:+.1f}"
            f" · {summary['sessions']} sessions"
        )
    return lines
