"""Where an export came from: counts, spreads, reviewers, agreement, guidelines, models, prompts.

`studio export` writes it with every format: `hf` as the dataset card (`README.md`, Hugging Face
front-matter), `cactus-jsonl` and `sft-jsonl` as a sidecar `NAME.provenance.json`. With
`with_provenance`, each row also names its record, who accepted it and when (`RowStamp`).

A reviewer's *decisions* come from three places, so a database from before team review counts as
well as one after it: `decisions` (each reviewer's current decision), `adjudications`, and the
decision events of the audit log that were not undone. Reviewer notes are never part of it: they
leave the database only in rows, and only with `--include-notes`. Nothing here reads settings, so
no API key can reach a card.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from studio.model import RecordStatus, StageStatus
from studio.store import Store
from studio.team.agreement import agreement_report

#: Decision events of the audit log (an undone one does not count).
DECISION_ACTIONS = ("accept", "edit", "reject", "reject_record", "accept_import")
#: Decisions that make a stage (or, for `accept_import`, a record) accepted.
ACCEPTING_STATUSES = (StageStatus.ACCEPTED.value, StageStatus.EDITED.value)
ACCEPTING_ACTIONS = ("accept", "edit", "accept_import")
#: The columns `with_provenance` adds to each row.
PROVENANCE_COLUMNS = ("record_id", "accepted_by", "accepted_at")

# Every decision, wherever it is kept: (record_id, who, at, guideline, kind, accepting).
_ACTS = f"""
SELECT record_id, reviewer AS who, decided_at AS at, guideline, 'decision' AS kind,
       status IN {ACCEPTING_STATUSES!r} AS accepting
FROM decisions
UNION ALL
SELECT record_id, adjudicator, decided_at, guideline, 'adjudication',
       status IN {ACCEPTING_STATUSES!r}
FROM adjudications
UNION ALL
SELECT e.record_id, e.reviewer, e.ts, e.guideline, 'event', e.action IN {ACCEPTING_ACTIONS!r}
FROM events e
WHERE e.action IN {DECISION_ACTIONS!r} AND e.reviewer != '' AND e.record_id IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM events u WHERE u.undoes IS NOT NULL AND u.undoes = e.id)
"""
_ACCEPTED = f"(SELECT id FROM records WHERE status = '{RecordStatus.ACCEPTED.value}')"

#: Hugging Face's size buckets (`size_categories`), by the number of records.
_SIZE_BUCKETS: tuple[tuple[int, str], ...] = (
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
)


@dataclass(frozen=True, slots=True)
class ReviewerShare:
    name: str
    """The reviewer's name, or their pseudonym (`reviewer-1`, …) when pseudonymized."""
    records: int
    """Exported records this reviewer decided (a stage or the whole record)."""
    adjudicated: int
    """Exported records in which this reviewer settled a disagreement."""


@dataclass(frozen=True, slots=True)
class Provenance:
    """Everything a dataset card says, from one read of the store (`build_provenance`)."""

    format: str
    exported_at: str
    records: int
    """Accepted records exported."""
    database: dict[str, int]
    """Records in the database per status (the exported ones are the accepted)."""
    stages: dict[str, dict[str, int]]
    """Per stage of the exported records: how many accepted as generated, how many edited."""
    modes: dict[str, int]
    """How the exported records were made: imported, script, two-agent."""
    techniques: dict[str, int]
    attitudes: dict[str, int]
    reviewers: list[ReviewerShare]
    pseudonymized: bool
    guideline_versions: dict[str, int]
    """Guideline version -> exported records decided under it ("" : decided before versions
    were recorded)."""
    models: dict[str, int]
    """Synthesis model -> stages of the exported records it wrote ("": imported text)."""
    template_versions: dict[str, dict[str, int]]
    """Stage -> prompt template version -> stages."""
    agreement: dict[str, Any]
    """Agreement between reviewers, as `studio agreement --json` gives it."""
    with_provenance: bool = False
    """Rows carry `record_id`, `accepted_by`, `accepted_at`."""
    include_notes: bool = False
    """Rows carry the reviewers' notes."""
    pseudonyms: Mapping[str, str] = field(default_factory=dict, repr=False)
    """Name -> pseudonym when pseudonymized (never written out: it would undo them)."""

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        del data["pseudonyms"]
        return data

    def json_bytes(self) -> bytes:
        return orjson.dumps(self.as_dict(), option=orjson.OPT_INDENT_2) + b"\n"

    def card(self) -> str:
        """The dataset card: Hugging Face front-matter, then the provenance in Markdown."""
        return render_card(self)


def build_provenance(
    store: Store,
    *,
    fmt: str,
    pseudonymize: bool = False,
    with_provenance: bool = False,
    include_notes: bool = False,
) -> Provenance:
    """The provenance of the accepted records as the store holds them now (call it inside the
    export's read snapshot, so it describes exactly what is written)."""
    conn = store.conn

    def counts(sql: str) -> dict[str, int]:
        return {str(key): int(n) for key, n in conn.execute(sql)}

    pseudonyms = reviewer_pseudonyms(store) if pseudonymize else {}
    reviewers = [
        ReviewerShare(pseudonyms.get(who, who), int(records), int(adjudicated))
        for who, records, adjudicated in conn.execute(
            f"SELECT who, COUNT(DISTINCT record_id),"
            f" COUNT(DISTINCT CASE WHEN kind = 'adjudication' THEN record_id END)"
            f" FROM ({_ACTS}) WHERE record_id IN {_ACCEPTED} GROUP BY who"
            f" ORDER BY COUNT(DISTINCT record_id) DESC, who"
        )
    ]
    if pseudonymize:
        reviewers.sort(key=lambda r: (-r.records, _pseudonym_number(r.name)))
    stages: dict[str, dict[str, int]] = {}
    for name, status, n in conn.execute(
        f"SELECT name, status, COUNT(*) FROM stages WHERE record_id IN {_ACCEPTED}"
        " GROUP BY name, status ORDER BY MIN(position), status"
    ):
        stages.setdefault(name, {})[status] = n
    templates: dict[str, dict[str, int]] = {}
    for name, version, n in conn.execute(
        f"SELECT name, template_version, COUNT(*) FROM stages WHERE record_id IN {_ACCEPTED}"
        " GROUP BY name, template_version ORDER BY MIN(position), template_version"
    ):
        templates.setdefault(name, {})[version] = n
    agreement = _agreement(store)
    return Provenance(
        format=fmt,
        exported_at=store.now(),
        records=conn.execute(f"SELECT COUNT(*) FROM {_ACCEPTED}").fetchone()[0],
        database=counts("SELECT status, COUNT(*) FROM records GROUP BY status ORDER BY status"),
        stages=stages,
        modes=counts(f"SELECT mode, COUNT(*) FROM records WHERE id IN {_ACCEPTED} {_BY_COUNT}"),
        techniques=counts(
            f"SELECT technique, COUNT(*) FROM records WHERE id IN {_ACCEPTED} {_BY_COUNT}"
        ),
        attitudes=counts(
            f"SELECT attitude, COUNT(*) FROM records WHERE id IN {_ACCEPTED} {_BY_COUNT}"
        ),
        reviewers=reviewers,
        pseudonymized=pseudonymize,
        guideline_versions=counts(
            f"SELECT guideline, COUNT(DISTINCT record_id) FROM ({_ACTS})"
            f" WHERE record_id IN {_ACCEPTED} GROUP BY guideline ORDER BY 2 DESC, 1"
        ),
        models=counts(
            f"SELECT model, COUNT(*) FROM stages WHERE record_id IN {_ACCEPTED}"
            " GROUP BY model ORDER BY 2 DESC, 1"
        ),
        template_versions=templates,
        agreement=_pseudonymized(agreement, pseudonyms),
        with_provenance=with_provenance,
        include_notes=include_notes,
        pseudonyms=pseudonyms,
    )


_BY_COUNT = "GROUP BY 1 ORDER BY 2 DESC, 1"


def reviewer_pseudonyms(store: Store) -> dict[str, str]:
    """Every reviewer of the database -> `reviewer-N`, numbered in order of their first decision
    (ties by name): the same person keeps the same pseudonym in every later export."""
    rows = store.conn.execute(
        f"SELECT who FROM ({_ACTS}) WHERE who != '' GROUP BY who ORDER BY MIN(at), who"
    )
    return {who: f"reviewer-{n}" for n, (who,) in enumerate(rows, start=1)}


def _pseudonym_number(name: str) -> int:
    return int(name.rpartition("-")[2]) if name.rpartition("-")[2].isdigit() else 0


def _agreement(store: Store) -> dict[str, Any]:
    """The agreement figures between reviewers (`studio agreement --json`)."""
    return agreement_report(store).to_json()


def _agreement_lines(agreement: Mapping[str, Any]) -> list[str]:
    """The agreement section of the card: one row per stage (kappa for two reviewers, alpha for
    more), or the sentence that says why there are no figures."""
    if not agreement.get("double_reviewed_records"):
        return [agreement.get("note") or "Nobody has double-reviewed a record.", ""]
    interval = agreement.get("interval", {})
    out = [
        f"Between reviewers, by decision kind (accept, edit, reject) per stage, on"
        f" {agreement['double_reviewed_records']:,} double-reviewed records; 95 % intervals by"
        f" {interval.get('method', 'bootstrap')} ({interval.get('resamples', '?')} resamples).",
        "",
        "| stage | reviewers | items | statistic | value | 95 % interval | raw agreement |",
        "| --- | --- | ---: | --- | ---: | --- | ---: |",
    ]
    for stage in agreement.get("stages", []):
        value = stage.get("value")
        ci = stage.get("ci")
        raw = stage.get("percent_agreement")
        shown = stage.get("note") if value is None else f"{value:.2f}"
        out.append(
            f"| {stage['stage']} | {_cell(', '.join(stage['reviewers']))} | {stage['items']:,}"
            f" | {stage.get('statistic') or ''} | {_cell(shown or '')}"
            f" | {'' if ci is None else f'{ci[0]:.2f} to {ci[1]:.2f}'}"
            f" | {'' if raw is None else f'{raw:.0%}'} |"
        )
    return [*out, ""]


def _pseudonymized(value: Any, pseudonyms: Mapping[str, str]) -> Any:
    """`value` with every string (and key) that is exactly a reviewer's name replaced by their
    pseudonym (agreement figures name reviewers and pairs of them)."""
    if not pseudonyms:
        return value
    if isinstance(value, str):
        return pseudonyms.get(value, value)
    if isinstance(value, Mapping):
        return {
            _pseudonymized(k, pseudonyms): _pseudonymized(v, pseudonyms) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_pseudonymized(item, pseudonyms) for item in value]
    return value


# -- rows -------------------------------------------------------------------------------------


RowStamp = Callable[[int], dict[str, Any]]
"""record id -> the provenance columns of its rows (`record_id`, `accepted_by`, `accepted_at`)."""


def row_stamp(store: Store, pseudonyms: Mapping[str, str] | None = None) -> RowStamp:
    """Who accepted each record and when: the newest accepting decision, adjudication or (not
    undone) event of the record; the record's last reviewer and update where none is logged.

    One indexed look-up per record, the last one remembered (a record's training rows come
    together), so memory stays flat however large the export."""
    names = pseudonyms or {}
    last: dict[int, dict[str, Any]] = {}

    def stamp(record_id: int) -> dict[str, Any]:
        if record_id in last:
            return last[record_id]
        row = store.conn.execute(
            f"SELECT who, at FROM ({_ACTS_OF_ONE}) WHERE accepting ORDER BY at DESC LIMIT 1",
            (record_id, record_id, record_id),
        ).fetchone()
        if row is None:
            row = store.conn.execute(
                "SELECT last_reviewer, updated_at FROM records WHERE id = ?", (record_id,)
            ).fetchone()
        who, at = row if row is not None else ("", "")
        last.clear()
        last[record_id] = {
            "record_id": record_id,
            "accepted_by": names.get(who, who),
            "accepted_at": at,
        }
        return last[record_id]

    return stamp


# The same three sources for one record (each part filtered by its own index).
_ACTS_OF_ONE = (
    _ACTS.replace("FROM decisions", "FROM decisions WHERE record_id = ?")
    .replace("FROM adjudications", "FROM adjudications WHERE record_id = ?")
    .replace("WHERE e.action IN", "WHERE e.record_id = ? AND e.action IN")
)


def stamped(rows: Iterable[dict[str, Any]], stamp: RowStamp | None) -> Iterable[dict[str, Any]]:
    """`rows` (each with a `record_id`) with the provenance columns added, or as they are."""
    if stamp is None:
        return rows
    return ({**row, **stamp(int(row["record_id"]))} for row in rows)


# -- the dataset card ---------------------------------------------------------------------------


def size_category(n: int) -> str:
    for limit, name in _SIZE_BUCKETS:
        if n < limit:
            return name
    return "n>10M"


def _cell(text: object) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ") or "—"


def _table(header: tuple[str, str], counts: Mapping[str, int], empty: str = "—") -> list[str]:
    lines = [f"| {header[0]} | {header[1]} |", "| --- | ---: |"]
    lines += [f"| {_cell(key or empty)} | {n:,} |" for key, n in counts.items()]
    if not counts:
        lines.append("| none | 0 |")
    return [*lines, ""]


def render_card(p: Provenance) -> str:
    """The card as Markdown with the Hugging Face YAML front-matter."""
    out = [
        "---",
        "license: other",
        "language:",
        "- en",
        "task_categories:",
        "- text-generation",
        "size_categories:",
        f"- {size_category(p.records)}",
        "tags:",
        "- cbt",
        "- counseling",
        "- synthetic",
        "pretty_name: CBT Studio export",
        "---",
        "",
        "# CBT Studio export",
        "",
        "Synthetic cognitive behavioural therapy counseling records in the CACTUS shape (intake "
        "form, CBT technique, counseling plan, dialogue), each stage reviewed by clinicians in "
        "CBT Studio; only records accepted in full are exported, with the reviewers' edits in "
        "place of the model's text. The license is a placeholder: set it before publishing.",
        "",
        f"Exported {p.exported_at} as `{p.format}`.",
        "",
        "## Counts",
        "",
        f"Records exported: **{p.records:,}** (accepted).",
        "",
        *_table(("records in the database", "count"), p.database),
        "| stage | accepted as generated | edited by a reviewer |",
        "| --- | ---: | ---: |",
        *(
            f"| {_cell(stage)} | {by.get(StageStatus.ACCEPTED.value, 0):,}"
            f" | {by.get(StageStatus.EDITED.value, 0):,} |"
            for stage, by in p.stages.items()
        ),
        "",
        *_table(("how made", "records"), p.modes),
        "## Techniques",
        "",
        *_table(("technique", "records"), p.techniques),
        "## Client attitudes",
        "",
        *_table(("attitude", "records"), p.attitudes),
        "## Reviewers",
        "",
    ]
    if p.pseudonymized:
        out += [
            "Names are replaced by pseudonyms, numbered in order of each reviewer's first "
            "decision (stable across exports of the same database).",
            "",
        ]
    out += ["| reviewer | records decided | records adjudicated |", "| --- | ---: | ---: |"]
    out += [f"| {_cell(r.name)} | {r.records:,} | {r.adjudicated:,} |" for r in p.reviewers]
    if not p.reviewers:
        out.append("| nobody recorded | 0 | 0 |")
    out += ["", "## Agreement", ""]
    out += _agreement_lines(p.agreement)
    out += ["## Review guidelines", ""]
    out += _table(
        ("guideline version", "records decided under it"), p.guideline_versions, "not recorded"
    )
    out += ["## Synthesis", ""]
    out += _table(("model", "stages written"), p.models, "imported")
    out += ["| stage | prompt template version | stages |", "| --- | --- | ---: |"]
    for stage, versions in p.template_versions.items():
        out += [
            f"| {_cell(stage)} | {_cell(v or 'imported')} | {n:,} |" for v, n in versions.items()
        ]
    out += ["", "## Fields", ""]
    if p.with_provenance:
        out.append(
            "Each row carries `record_id`, `accepted_by` (the reviewer whose decision accepted "
            "it last) and `accepted_at`."
        )
    out.append(
        "Reviewer notes are included (`notes`)."
        if p.include_notes
        else "Reviewer notes are not included."
    )
    return "\n".join(out) + "\n"
