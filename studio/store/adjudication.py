"""Settling what double reviewers decided differently: the `adjudications` table (issue 14).

`disputes` lists the records waiting for an adjudicator, each stage with every assigned reviewer's
version side by side; `adjudicate` writes the adjudicator's outcome (pick one reviewer's version,
merge a text of their own, or reject) with an audit event, and `decisions.settle` makes it the
stage's final state. The event is undoable like a reviewer's decision (`review.undo_last`, which
calls `revert_adjudication`). Nobody's own decision is changed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from studio.cbt.checks import judge_answer
from studio.cbt.techniques import normalize_technique
from studio.errors import BadInputError, InvalidStage, UndoConflict
from studio.model import STAGES, RecordStatus, Stage, StageStatus
from studio.store import decisions
from studio.store.decisions import DECIDED, RECORD, Decision
from studio.store.events import EventAction

if TYPE_CHECKING:
    from studio.store.store import RecordView, Store


class Outcome(StrEnum):
    """`adjudications.outcome`: stored by value."""

    PICK = "pick"
    """One reviewer's version becomes the final one (`picked` names them)."""
    MERGE = "merge"
    """The adjudicator's own text (often one version, amended)."""
    REJECT = "reject"


#: What a reviewer's decision status says, in the words of the adjudication screen.
_KINDS = {
    StageStatus.ACCEPTED: "accept",
    StageStatus.EDITED: "edit",
    StageStatus.REJECTED: "reject",
    StageStatus.INVALID: "invalid edit",
}
#: The fields of an adjudication row an audit event keeps (its before / after).
_FIELDS = ("outcome", "picked", "status", "edited_text", "note")


@dataclass(frozen=True, slots=True)
class Version:
    """One reviewer's version of one stage (or of the record as a whole)."""

    reviewer: str
    decision: Decision | None
    """Their current decision (None: not decided; on the record: they kept it)."""
    text: str
    """The text their decision stands for: their edit, else the generated text ("" for the
    record as a whole)."""

    @property
    def kind(self) -> str:
        """accept, edit, reject, invalid edit or undecided (on the record: reject or keep)."""
        if self.decision is None:
            return "undecided" if self.text else "keep"
        return _KINDS.get(self.decision.status, self.decision.status.value)

    @property
    def note(self) -> str:
        return self.decision.note if self.decision else ""


@dataclass(frozen=True, slots=True)
class Adjudication:
    """How a stage (or the record, `stage` None) was settled."""

    record_id: int
    stage: Stage | None
    adjudicator: str
    outcome: Outcome
    picked: str
    status: StageStatus
    edited_text: str | None
    note: str = ""
    guideline: str = ""
    decided_at: str = ""

    def fields(self) -> dict[str, Any]:
        """As an audit event's before / after."""
        return {
            "adjudicator": self.adjudicator,
            "outcome": self.outcome.value,
            "picked": self.picked,
            "status": self.status.value,
            "edited_text": self.edited_text,
            "note": self.note,
        }


@dataclass(frozen=True, slots=True)
class StageDispute:
    """One stage of a disputed record (`stage` None: the record rejected by some, kept by others)."""

    stage: Stage | None
    original_text: str
    versions: tuple[Version, ...]
    """Each assigned reviewer's version, in the order of `Dispute.reviewers`."""
    differs: bool
    """Every assigned reviewer decided it and they decided differently (or, on the record: some
    rejected it while the others decided every stage)."""
    adjudication: Adjudication | None = None

    @property
    def label(self) -> str:
        return self.stage.label if self.stage else "Record as a whole"

    @property
    def open(self) -> bool:
        """Waiting for the adjudicator: differs and not settled (or settled by an invalid merge)."""
        if self.adjudication is not None:
            return self.adjudication.status is StageStatus.INVALID
        return self.differs


@dataclass(frozen=True, slots=True)
class Dispute:
    """A record whose reviewers disagreed, as the adjudication screen shows it."""

    record_id: int
    thought: str
    status: RecordStatus
    reviewers: tuple[str, ...]
    stages: tuple[StageDispute, ...]
    """The four stages in order, after the record as a whole when someone rejected it."""

    @property
    def open_stages(self) -> list[StageDispute]:
        return [s for s in self.stages if s.open]


# -- reading ------------------------------------------------------------------------------------


def adjudications_of(store: Store, record_id: int) -> dict[Stage | None, Adjudication]:
    """The record's adjudications, by stage (None: the record as a whole)."""
    found: dict[Stage | None, Adjudication] = {}
    for row in store.conn.execute(
        "SELECT stage, adjudicator, outcome, picked, status, edited_text, note, guideline,"
        " decided_at FROM adjudications WHERE record_id = ?",
        (record_id,),
    ):
        stage = None if row[0] == RECORD else Stage(row[0])
        found[stage] = Adjudication(
            record_id, stage, row[1], Outcome(row[2]), row[3], StageStatus(row[4]), *row[5:]
        )
    return found


def disputed_ids(store: Store) -> list[int]:
    """The records waiting for adjudication, by id: disputed, or settled by a merge saved as
    invalid (which someone still has to fix)."""
    return [
        int(rid)
        for (rid,) in store.conn.execute(
            "SELECT id FROM records WHERE status = ? OR id IN"
            " (SELECT record_id FROM adjudications WHERE status = ?) ORDER BY id",
            (RecordStatus.DISPUTED.value, StageStatus.INVALID.value),
        )
    ]


def disputes(store: Store) -> list[Dispute]:
    """Every record waiting for adjudication, with each reviewer's version of each stage."""
    with store.read_snapshot():
        return [dispute(store, rid) for rid in disputed_ids(store)]


def dispute(store: Store, record_id: int) -> Dispute:
    """One record's reviewers' versions side by side (whatever its status)."""
    record = store.record(record_id)
    assigned = decisions.assigned_reviewers(store, record_id)
    every = decisions.counted_decisions(store, record_id)
    settled = adjudications_of(store, record_id)
    stages = [_stage_dispute(record, stage, assigned, every, settled) for stage in STAGES]
    if any((None, name) in every for name in assigned) or None in settled:
        stages.insert(0, _record_dispute(record, assigned, every, settled))
    return Dispute(record_id, record.seed.thought, record.status, assigned, tuple(stages))


def _stage_dispute(
    record: RecordView,
    stage: Stage,
    assigned: Sequence[str],
    every: dict[tuple[Stage | None, str], Decision],
    settled: dict[Stage | None, Adjudication],
) -> StageDispute:
    original = record.stages[stage].original_text or ""
    versions = []
    for name in assigned:
        mine = every.get((stage, name))
        edited = mine.edited_text if mine is not None else None
        versions.append(Version(name, mine, original if edited is None else edited))
    decided = [v.decision for v in versions if v.decision is not None]
    differs = len(decided) == len(assigned) and all(d.status in DECIDED for d in decided)
    differs = differs and len({(d.status, d.edited_text) for d in decided}) > 1
    return StageDispute(stage, original, tuple(versions), differs, settled.get(stage))


def _record_dispute(
    record: RecordView,
    assigned: Sequence[str],
    every: dict[tuple[Stage | None, str], Decision],
    settled: dict[Stage | None, Adjudication],
) -> StageDispute:
    versions = tuple(Version(name, every.get((None, name)), "") for name in assigned)
    keepers = [v.reviewer for v in versions if v.decision is None]
    finished = all(
        (stage, name) in every and every[(stage, name)].status in DECIDED
        for name in keepers
        for stage in STAGES
    )
    differs = bool(keepers) and len(keepers) < len(assigned) and finished
    return StageDispute(None, "", versions, differs, settled.get(None))


# -- settling -----------------------------------------------------------------------------------


def adjudicate(
    store: Store,
    record_id: int,
    stage: Stage | None,
    *,
    adjudicator: str,
    outcome: Outcome | str,
    picked: str = "",
    text: str | None = None,
    note: str = "",
    guideline: str = "",
    invalid_ok: bool = False,
) -> RecordStatus:
    """Settle a stage the reviewers decided differently (`stage` None: the record as a whole);
    returns the record's status after `settle`.

    `pick`: `picked`'s version becomes final (on the record as a whole: their rejection, or, if
    they kept it, their version of every stage not yet final). `merge`: `text` is saved as
    edited, held to the stage rule like a reviewer's edit: a text that breaks it is refused
    (`InvalidStage`, with the reason) unless `invalid_ok` (the app asked), then saved as
    `invalid`. `reject`: rejected, `note` the reason. Each adjudication is one `adjudicate`
    event (a record-level pick of several stages: one group, undone together)."""
    outcome = Outcome(outcome)
    with store.transaction() as conn:
        found = dispute(store, record_id)
        if len(found.reviewers) < 2:
            raise BadInputError(f"record {record_id} is not double-reviewed: nothing to adjudicate")
        rows = _outcome_rows(store, found, stage, outcome, picked, text, note, invalid_ok)
        group = None
        if len(rows) > 1:
            # Named by its first event's id, as an accept-all is: we hold the write lock.
            group = int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM events").fetchone()[0])
        previous = adjudications_of(store, record_id)
        for status, on, edited, why in rows:
            row = Adjudication(
                record_id, on, adjudicator, outcome, picked, status, edited, why, guideline
            )
            _write(store, row)
            before = previous.get(on)
            store.log_event(
                EventAction.ADJUDICATE,
                reviewer=adjudicator,
                record_id=record_id,
                stage=on,
                before=before.fields() if before else {},
                after=row.fields(),
                accept_group=group,
                guideline=guideline,
            )
        if outcome is Outcome.MERGE and stage is not None:
            conn.execute(
                "DELETE FROM drafts WHERE record_id = ? AND stage = ? AND reviewer = ?",
                (record_id, stage.value, adjudicator),
            )
        return decisions.settle(store, record_id, reviewer=adjudicator)


_Row = tuple[StageStatus, Stage | None, str | None, str]


def _outcome_rows(
    store: Store,
    found: Dispute,
    stage: Stage | None,
    outcome: Outcome,
    picked: str,
    text: str | None,
    note: str,
    invalid_ok: bool,
) -> list[_Row]:
    """The adjudication rows an outcome writes: (status, stage, edited text, note)."""
    on = next((s for s in found.stages if s.stage == stage), None)
    if on is None:
        raise BadInputError(f"nobody rejected record {found.record_id} as a whole")
    if not on.differs and on.adjudication is None:
        raise BadInputError(
            f"the {on.label.lower()} of record {found.record_id} is not in dispute"
            " (its reviewers agree, or not all of them decided it yet)"
        )
    if outcome is Outcome.REJECT:
        return [(StageStatus.REJECTED, stage, None, note)]
    if outcome is Outcome.MERGE:
        if stage is None:
            raise BadInputError("a record as a whole is kept (pick) or rejected, not merged")
        return [_merged(stage, on.original_text, text or "", note, invalid_ok)]
    version = next((v for v in on.versions if v.reviewer == picked), None)
    if version is None:
        raise BadInputError(f"{picked or 'nobody'} is not a reviewer of record {found.record_id}")
    mine = version.decision
    if stage is None:
        if mine is not None:
            return [(StageStatus.REJECTED, None, None, note or mine.note)]
        # Kept: the record stands as the picked reviewer decided its stages.
        rows: list[_Row] = [(StageStatus.ACCEPTED, None, None, note)]
        for each in found.stages:
            own = next(v.decision for v in each.versions if v.reviewer == picked)
            open_stage = each.stage is not None and each.adjudication is None
            if open_stage and own is not None and not _agreed(each):
                rows.append((own.status, each.stage, own.edited_text, own.note))
        return rows
    if mine is None or mine.status not in DECIDED:
        raise BadInputError(
            f"{picked} has not decided the {stage.label} of record {found.record_id}"
        )
    return [(mine.status, stage, mine.edited_text, note or mine.note)]


def _agreed(each: StageDispute) -> bool:
    decided = [v.decision for v in each.versions]
    return all(d is not None and d.status in DECIDED for d in decided) and not each.differs


def _merged(stage: Stage, original: str, text: str, note: str, invalid_ok: bool) -> _Row:
    judged = judge_answer(stage, text)
    if not judged.ok and not invalid_ok:
        raise InvalidStage(
            f"the merged {stage.label.lower()} breaks its stage rule: {judged.error}"
        )
    if judged.ok and stage is Stage.CBT_TECHNIQUE:
        text = normalize_technique(text) or text
    if judged.ok and text == original:
        return (StageStatus.ACCEPTED, stage, None, note)
    return (StageStatus.EDITED if judged.ok else StageStatus.INVALID, stage, text, note)


def _write(store: Store, row: Adjudication) -> None:
    with store.transaction() as conn:
        conn.execute(
            "INSERT INTO adjudications (record_id, stage, adjudicator, outcome, picked, status,"
            " edited_text, note, guideline, decided_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (record_id, stage) DO UPDATE SET adjudicator = excluded.adjudicator,"
            " outcome = excluded.outcome, picked = excluded.picked, status = excluded.status,"
            " edited_text = excluded.edited_text, note = excluded.note,"
            " guideline = excluded.guideline, decided_at = excluded.decided_at",
            (
                row.record_id,
                RECORD if row.stage is None else row.stage.value,
                row.adjudicator,
                row.outcome.value,
                row.picked,
                row.status.value,
                row.edited_text,
                row.note,
                row.guideline,
                row.decided_at or store.now(),
            ),
        )


def revert_adjudication(
    store: Store,
    record_id: int,
    stage: Stage | None,
    before: dict[str, Any],
    after: dict[str, Any],
    adjudicator: str,
) -> dict[str, Any]:
    """Undo one `adjudicate` event: the adjudication goes back to `before` (none when empty);
    `UndoConflict` if it changed since. Returns the adjudication as it was (the undo event's
    before). The caller settles the record."""
    current = adjudications_of(store, record_id).get(stage)
    now = current.fields() if current else {}
    if {k: now.get(k) for k in _FIELDS} != {k: after.get(k) for k in _FIELDS}:
        where = stage.label if stage else "record as a whole"
        raise UndoConflict(f"the adjudication of the {where} of record {record_id} changed since")
    with store.transaction() as conn:
        if not before:
            conn.execute(
                "DELETE FROM adjudications WHERE record_id = ? AND stage = ?",
                (record_id, RECORD if stage is None else stage.value),
            )
        else:
            _write(
                store,
                Adjudication(
                    record_id,
                    stage,
                    before.get("adjudicator", adjudicator),
                    Outcome(before["outcome"]),
                    before.get("picked", ""),
                    StageStatus(before["status"]),
                    before.get("edited_text"),
                    before.get("note", ""),
                ),
            )
    return now
