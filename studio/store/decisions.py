"""Each reviewer's own decisions, and a record's final state derived from them (issue 14).

The one owner of the `decisions` table (docs/team-review.md). A reviewer only ever writes their own
rows; `settle` derives the `stages` / `records` final state of a record assigned to two or more
reviewers, and is the only writer of that state for such a record. A record with fewer than two
assigned reviewers is decided as before 0007: its decision goes to `stages` directly (the store's
decision methods do both in one transaction) and `settle` only recomputes its status.

Blind review: until every assigned reviewer has decided a stage, a reviewer sees it as generated
plus their own decision (`own_stage`, `reviewer_record`), never another reviewer's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import orjson

from studio.cbt.checks import judge_answer
from studio.cbt.techniques import normalize_technique
from studio.errors import NotAssigned
from studio.model import STAGES, RecordStatus, Stage, StageStatus, record_status
from studio.store.stages import StageView, snapshot, write_stage

if TYPE_CHECKING:
    from studio.store.store import RecordView, Store

RECORD = "record"
"""`decisions.stage` of a rejection of the record as a whole."""

DECIDED: frozenset[StageStatus] = frozenset(
    {StageStatus.ACCEPTED, StageStatus.EDITED, StageStatus.REJECTED}
)
"""A reviewer's decision statuses that count as having decided a stage (`invalid`: an edit that
breaks its stage rule, still to be fixed, does not)."""

_SETTLED_RECORD = frozenset({RecordStatus.ACCEPTED, RecordStatus.REJECTED, RecordStatus.DISPUTED})

#: Events after which the decisions made on a stage are out of date (its text changed under them).
_OUTDATING_ACTIONS = ("generate", "regenerate", "stale")
#: Events that write a reviewer's decision on a stage.
_DECIDING_ACTIONS = ("accept", "reject", "edit", "undo")


@dataclass(frozen=True, slots=True)
class Decision:
    """One reviewer's current decision on one stage of a record (`stage` None: the record)."""

    record_id: int
    stage: Stage | None
    reviewer: str
    status: StageStatus
    edited_text: str | None = None
    note: str = ""
    guideline: str = ""
    decided_at: str = ""

    def snapshot(self) -> dict[str, Any]:
        """As an audit event's before/after (the fields of `stages.REVIEW_FIELDS`)."""
        return {"status": self.status.value, "edited_text": self.edited_text, "note": self.note}


def _key(stage: Stage | None) -> str:
    return RECORD if stage is None else stage.value


def write_decision(store: Store, decision: Decision) -> None:
    """Set one reviewer's decision on a stage (`stage` None: the record rejected as a whole);
    `decided_at` "" stamps it with the store's clock."""
    d = decision
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO decisions (record_id, stage, reviewer, status, edited_text, note,"
            " guideline, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (record_id, stage, reviewer) DO UPDATE SET status = excluded.status,"
            " edited_text = excluded.edited_text, note = excluded.note,"
            " guideline = excluded.guideline, decided_at = excluded.decided_at",
            (
                d.record_id,
                _key(d.stage),
                d.reviewer,
                StageStatus(d.status).value,
                d.edited_text,
                d.note,
                d.guideline,
                d.decided_at or store.now(),
            ),
        )


def delete_decision(store: Store, record_id: int, stage: Stage | None, *, reviewer: str) -> None:
    with store.transaction() as conn:
        conn.execute(
            "DELETE FROM decisions WHERE record_id = ? AND stage = ? AND reviewer = ?",
            (record_id, _key(stage), reviewer),
        )


def decisions_of(store: Store, record_id: int, *, reviewer: str | None = None) -> list[Decision]:
    """The current decisions on a record (of one reviewer, or of everyone), by stage."""
    sql = (
        "SELECT record_id, stage, reviewer, status, edited_text, note, guideline, decided_at"
        " FROM decisions WHERE record_id = ?"
    )
    params: list[Any] = [record_id]
    if reviewer is not None:
        sql += " AND reviewer = ?"
        params.append(reviewer)
    found = [
        Decision(
            record_id=row[0],
            stage=None if row[1] == RECORD else Stage(row[1]),
            reviewer=row[2],
            status=StageStatus(row[3]),
            edited_text=row[4],
            note=row[5],
            guideline=row[6],
            decided_at=row[7],
        )
        for row in store.conn.execute(sql, params)
    ]
    return sorted(found, key=lambda d: (d.stage.position if d.stage else 0, d.reviewer))


def decision(store: Store, record_id: int, stage: Stage | None, reviewer: str) -> Decision | None:
    """`reviewer`'s current decision on a stage (None: on the record as a whole), if any."""
    found = [d for d in decisions_of(store, record_id, reviewer=reviewer) if d.stage == stage]
    return found[0] if found else None


def assigned_reviewers(store: Store, record_id: int) -> tuple[str, ...]:
    """Who is assigned to review the record (`studio assign`), by name."""
    return tuple(
        name
        for (name,) in store.conn.execute(
            "SELECT reviewer FROM assignments WHERE record_id = ? ORDER BY reviewer", (record_id,)
        )
    )


def is_double_reviewed(store: Store, record_id: int) -> bool:
    """Assigned to two or more reviewers: its final state is derived by `settle`."""
    return len(assigned_reviewers(store, record_id)) >= 2


def double_reviewed_by(store: Store, record_id: int, reviewer: str) -> bool:
    """Whether the record is double-reviewed (`reviewer` then deciding only for themselves);
    `NotAssigned` when it is and `reviewer` is not one of its reviewers."""
    assigned = assigned_reviewers(store, record_id)
    if len(assigned) < 2:
        return False
    if reviewer not in assigned:
        raise NotAssigned(
            f"record {record_id} is reviewed by {' and '.join(assigned)}; only they decide it"
        )
    return True


# -- what one reviewer sees ---------------------------------------------------------------------


def own_stage(view: StageView, own: Decision | None) -> StageView:
    """A stage of a double-reviewed record as one reviewer sees it before the blind is lifted:
    the generated text, with their own decision (if any) over it; never a final state that
    others' decisions made."""
    if own is not None:
        error = ""
        if own.status is StageStatus.INVALID:
            error = judge_answer(view.stage, own.edited_text or "").error
        return replace(
            view, status=own.status, edited_text=own.edited_text, note=own.note, error=error
        )
    if view.status in DECIDED:
        return replace(view, status=StageStatus.GENERATED, edited_text=None, note="", error="")
    return view


def own_snapshot(
    store: Store, view: StageView, reviewer: str
) -> tuple[Decision | None, dict[str, Any]]:
    """`reviewer`'s decision on a stage of a double-reviewed record, and the stage as they see
    it (the before of their next decision event)."""
    own = decision(store, view.record_id, view.stage, reviewer)
    return own, snapshot(own_stage(view, own))


def _lifted(
    assigned: Sequence[str], stage: Stage, mine: dict[tuple[Stage | None, str], Decision]
) -> bool:
    return all((stage, name) in mine and mine[(stage, name)].status in DECIDED for name in assigned)


def reviewer_record(store: Store, record: RecordView, reviewer: str) -> RecordView:
    """The record as `reviewer` may see it: unchanged unless it is double-reviewed; then each
    stage not yet decided by every assigned reviewer shows only `reviewer`'s own decision, and
    the status is theirs until the record is settled (accepted, rejected or disputed)."""
    assigned = assigned_reviewers(store, record.id)
    if len(assigned) < 2:
        return record
    every = _current(store, record.id, assigned)
    adjudicated = {stage for stage, *_ in _adjudications(store, record.id)}
    stages: dict[Stage, StageView] = {}
    for stage, view in record.stages.items():
        final = view.status in DECIDED and (stage in adjudicated or _lifted(assigned, stage, every))
        stages[stage] = view if final else own_stage(view, every.get((stage, reviewer)))
    if record.status in _SETTLED_RECORD:
        return replace(record, stages=stages)
    own_reject = every.get((None, reviewer))
    status = record_status(
        [stages[s].status for s in STAGES if s in stages], rejected=own_reject is not None
    )
    technique = stages[Stage.CBT_TECHNIQUE].text if Stage.CBT_TECHNIQUE in stages else ""
    return replace(
        record,
        stages=stages,
        status=status,
        note=own_reject.note if own_reject else "",
        technique=normalize_technique(technique) or record.technique,
    )


# -- deriving the final state -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Final:
    status: StageStatus
    edited_text: str | None
    note: str

    def snapshot(self) -> dict[str, Any]:
        return {"status": self.status.value, "edited_text": self.edited_text, "note": self.note}


def _target(view: StageView, final: _Final | bool | None) -> _Final | None:
    """What a stage row becomes: the final decision (unless the text is missing or out of
    date), back to `generated` when a final state no longer holds, else None (unchanged)."""
    if isinstance(final, _Final) and view.status not in _NO_TEXT:
        return final
    if view.status in DECIDED:
        return _Final(StageStatus.GENERATED, None, "")
    return None


_NO_TEXT = frozenset({StageStatus.PENDING, StageStatus.STALE, StageStatus.FAILED})


def _adjudications(store: Store, record_id: int) -> list[tuple[Stage | None, _Final]]:
    return [
        (None if stage == RECORD else Stage(stage), _Final(StageStatus(status), edited, note))
        for stage, status, edited, note in store.conn.execute(
            "SELECT stage, status, edited_text, note FROM adjudications WHERE record_id = ?",
            (record_id,),
        )
    ]


def _outdated(store: Store, record_id: int) -> set[tuple[Stage, str]]:
    """The (stage, reviewer) decisions that are out of date: the stage's text was generated,
    regenerated or marked stale after the reviewer's newest decision event on it (by event id,
    which, unlike a timestamp, never depends on whose clock wrote it)."""
    marks = ",".join("?" * len(_OUTDATING_ACTIONS))
    changed: dict[Stage, int] = {}
    for event_id, action, stage, after in store.conn.execute(
        f"SELECT id, action, stage, after FROM events WHERE record_id = ? AND action IN ({marks})"
        " AND stage IS NOT NULL ORDER BY id",
        (record_id, *_OUTDATING_ACTIONS),
    ):
        # A stale event names the stage that changed; the stages it made stale are in `after`.
        names = orjson.loads(after or "{}").get("stale", []) if action == "stale" else [stage]
        changed.update(dict.fromkeys(map(Stage, names), int(event_id)))
    if not changed:
        return set()
    marks = ",".join("?" * len(_DECIDING_ACTIONS))
    return {
        (Stage(stage), reviewer)
        for stage, reviewer, last in store.conn.execute(
            f"SELECT stage, reviewer, MAX(id) FROM events WHERE record_id = ? AND action IN"
            f" ({marks}) AND stage IS NOT NULL GROUP BY stage, reviewer",
            (record_id, *_DECIDING_ACTIONS),
        )
        if changed.get(Stage(stage), 0) > int(last)
    }


def _current(
    store: Store, record_id: int, assigned: Sequence[str]
) -> dict[tuple[Stage | None, str], Decision]:
    """The assigned reviewers' decisions that still apply (not made on a text since replaced)."""
    outdated = _outdated(store, record_id)
    return {
        (d.stage, d.reviewer): d
        for d in decisions_of(store, record_id)
        if d.reviewer in assigned and (d.stage, d.reviewer) not in outdated
    }


def _joined_notes(found: Sequence[Decision]) -> str:
    notes: list[str] = []
    for d in found:
        if d.note and d.note not in notes:
            notes.append(d.note)
    return "; ".join(notes)


def _stage_outcome(found: Sequence[Decision | None]) -> _Final | bool | None:
    """The common decision of every assigned reviewer; None while someone has not decided;
    False when they all decided and differ."""
    if any(d is None or d.status not in DECIDED for d in found):
        return None
    decided = [d for d in found if d is not None]
    if len({(d.status, d.edited_text) for d in decided}) > 1:
        return False
    first = decided[0]
    return _Final(first.status, first.edited_text, _joined_notes(decided))


def settle(store: Store, record_id: int, *, reviewer: str = "") -> RecordStatus:
    """Derive a record's final state from its reviewers' decisions; returns its status.

    Fewer than two assigned: the status is recomputed from `stages` (which the single reviewer's
    decision already wrote), as before 0007. Two or more: each stage's final state is its
    adjudication, else the common decision once every assigned reviewer decided it, else the
    stage stays undecided; a stage (or a record rejection) they decided differently makes the
    record `disputed`. Nobody's decision is changed. `reviewer` becomes the record's
    `last_reviewer` when its final state changed."""
    with store.transaction() as conn:
        assigned = assigned_reviewers(store, record_id)
        if len(assigned) < 2:
            return store.refresh_status(record_id, reviewer)
        row = conn.execute(
            "SELECT rejected, note, status FROM records WHERE id = ?", (record_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no record {record_id}")
        every = _current(store, record_id, assigned)
        adjudicated = dict(_adjudications(store, record_id))
        disputed = False
        changed = False
        statuses: list[StageStatus] = []
        for stage in STAGES:
            view = store.stage(record_id, stage)
            final: _Final | bool | None
            if stage in adjudicated:
                final = adjudicated[stage]
            else:
                final = _stage_outcome([every.get((stage, name)) for name in assigned])
            if final is False:
                disputed = True
            target = _target(view, final)
            if target is not None and snapshot(view) != target.snapshot():
                write_stage(
                    store,
                    record_id,
                    stage,
                    status=target.status,
                    edited_text=target.edited_text,
                    note=target.note,
                    error="",
                )
                changed = True
                if stage is Stage.CBT_TECHNIQUE:
                    text = target.edited_text or view.original_text or ""
                    conn.execute(
                        "UPDATE records SET technique = ? WHERE id = ?",
                        (normalize_technique(text) or "", record_id),
                    )
            statuses.append(view.status if target is None else target.status)
        rejected, note = _record_outcome(assigned, every, adjudicated.get(None))
        if rejected is None:
            disputed = True
            rejected = False
        if rejected:
            status = RecordStatus.REJECTED
        elif disputed:
            status = RecordStatus.DISPUTED
        else:
            status = record_status(statuses, rejected=False)
        if not rejected:
            note = "" if row[0] else row[1]
        if changed or (int(rejected), note, status.value) != (row[0], row[1], row[2]):
            conn.execute(
                "UPDATE records SET rejected = ?, note = ?, status = ?, updated_at = ?,"
                " last_reviewer = CASE WHEN ? != '' THEN ? ELSE last_reviewer END WHERE id = ?",
                (int(rejected), note, status.value, store.now(), reviewer, reviewer, record_id),
            )
        return status


def _record_outcome(
    assigned: Sequence[str],
    every: dict[tuple[Stage | None, str], Decision],
    adjudication: _Final | None,
) -> tuple[bool | None, str]:
    """Whether the record is rejected as a whole (None: the reviewers disagree), and why."""
    if adjudication is not None:
        return adjudication.status is StageStatus.REJECTED, adjudication.note
    rejecters = [every[(None, name)] for name in assigned if (None, name) in every]
    if not rejecters:
        return False, ""
    if len(rejecters) == len(assigned):
        return True, _joined_notes(rejecters)
    others = [name for name in assigned if (None, name) not in every]
    finished = all(
        (stage, name) in every and every[(stage, name)].status in DECIDED
        for name in others
        for stage in STAGES
    )
    # Rejected by some while the others decided every stage: a disagreement. While the others
    # are still deciding, the record is simply not settled yet.
    return (None if finished else False), ""


def counted_decisions(store: Store, record_id: int) -> dict[tuple[Stage | None, str], Decision]:
    """The decisions `settle` weighs, by (stage, reviewer): the assigned reviewers' own, less those
    made before their stage's text changed (the adjudication screen shows the same)."""
    assigned = assigned_reviewers(store, record_id)
    outdated = _outdated(store, record_id)
    return {
        (d.stage, d.reviewer): d
        for d in decisions_of(store, record_id)
        if d.reviewer in assigned and (d.stage, d.reviewer) not in outdated
    }
