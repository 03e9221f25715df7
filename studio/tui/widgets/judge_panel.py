"""The judge's scores of the dialogue, with its explanations and flags, beside the reviewer's own
ratings (digit keys); shown under the seed on the review screen."""

from __future__ import annotations

from textual.content import Content
from textual.widgets import Static

from studio.cbt.ctrs import ITEM_LABELS, RATED_ITEMS, FlagKind
from studio.store.judging import FAILED, StoredJudgement


def judge_content(
    judgement: StoredJudgement | None,
    ratings: dict[str, int],
    rating_item: str,
    *,
    judging: bool = False,
) -> Content:
    parts: list[Content] = []
    if judging:
        parts.append(Content.styled("re-judging…", "italic $text-muted"))
    if judgement is None:
        parts.append(Content.styled("Not judged yet (J judges it).", "dim"))
    else:
        result = judgement.result
        if result.status == FAILED:
            parts.append(Content.styled(f"The judge failed: {result.error}", "$error"))
        else:
            mean = result.ctrs_mean
            head = f"CTRS mean {mean:.1f}" if mean is not None else "CTRS"
            parts.append(Content.styled(head, "bold"))
            if not judgement.current:
                parts.append(
                    Content.styled("stale: the dialogue changed since (J re-judges)", "$warning")
                )
        for flag in result.flags:
            label = FlagKind(flag.kind).label if flag.kind in set(FlagKind) else flag.kind
            text = f"⚑ turn {flag.turn} · {label}: “{flag.quote}”"
            if flag.counselor_response:
                text += f" — counselor: {flag.counselor_response}"
            parts.append(Content.styled(text, "bold $error"))
        if result.model:
            parts.append(Content.styled(f"{result.model} · {result.template_version}", "dim"))
    parts.append(Content(""))
    scored = judgement.result.items if judgement is not None else {}
    for item in RATED_ITEMS:
        mine = ratings.get(item)
        judge = scored.get(item)
        marker = "▸ " if item == rating_item else "  "
        line = Content.assemble(
            Content.styled(marker, "bold $accent"),
            Content.styled(ITEM_LABELS[item], "bold"),
            f"  judge {judge.score if judge else '—'}",
            f" · you {mine if mine is not None else '—'}",
        )
        parts.append(line)
        if judge is not None:
            parts.append(Content.styled(f"  {judge.explanation}", "dim"))
    if judgement is not None and judgement.result.plan_steps:
        steps = ", ".join(str(n) for n in judgement.result.plan_steps)
        parts.append(Content.styled(f"Plan steps covered: {steps}", "dim"))
    parts.append(Content.styled("0-6 rates ▸ · i next item · J re-judge", "dim italic"))
    return Content("\n").join(parts)


class JudgePanel(Static):
    """Styled from review.tcss."""

    def show(
        self,
        judgement: StoredJudgement | None,
        ratings: dict[str, int],
        rating_item: str,
        *,
        judging: bool = False,
    ) -> None:
        self.update(judge_content(judgement, ratings, rating_item, judging=judging))
