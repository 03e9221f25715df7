"""`studio export`: accepted records out, the reviewer's edits winning over the LLM originals.

`cactus-jsonl` writes exactly the seven CACTUS columns, so import → accept → export round-trips.

An export never destroys anything: the database and its side files (`-wal`, `-shm`, `-journal`,
the synth lock) are refused as OUT however they are spelled (resolved paths and inodes), an
existing file or folder is replaced only with `force`, and every format is written to a temporary
name in OUT's folder and renamed into place, so a crash leaves the old export or none, never half
of one. Files are owner-only (clinical data). The JSONL formats stream: memory stays flat.

Every export says where it came from (`studio.provenance`): `hf` in its dataset card
(`README.md`), the JSONL formats in a sidecar `NAME.provenance.json`, protected like OUT itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from studio.errors import BadInputError, StudioError
from studio.model import CACTUS_COLUMNS, STAGES, Stage
from studio.provenance import RowStamp, build_provenance, row_stamp, stamped
from studio.store import RecordView, Store
from studio.store.exporting import AcceptedRow, accepted_rows, accepted_seed_keys

if TYPE_CHECKING:
    from studio.train.dataset import ChatMessage

EXPORT_FORMATS = ("cactus-jsonl", "sft-jsonl", "hf")
# Files SQLite and the studio keep beside a database: overwriting any of them loses data.
DATABASE_SIDE_FILES = ("-wal", "-shm", "-journal", ".synth.lock")


@dataclass(frozen=True, slots=True)
class ExportResult:
    records: int
    """Accepted records exported."""
    notes: tuple[str, ...] = ()
    """What a person should know about the result (an empty split, left out)."""
    provenance: Path | None = None
    """The sidecar with the export's provenance (the `hf` format keeps it in its README.md)."""


def provenance_path(out: Path) -> Path:
    """The sidecar beside a JSONL export: `data.jsonl` -> `data.provenance.json`."""
    return out.with_suffix(".provenance.json")


def cactus_row(
    record: RecordView, *, include_notes: bool = False, stamp: RowStamp | None = None
) -> dict[str, Any]:
    """One accepted record as a CACTUS row (current text of each stage; then the provenance
    columns, with `stamp`)."""
    row: dict[str, Any] = {
        "thought": record.seed.thought,
        "patterns": ", ".join(record.seed.patterns),
        "intake_form": record.text(Stage.INTAKE_FORM),
        "cbt_technique": record.text(Stage.CBT_TECHNIQUE),
        "cbt_plan": record.text(Stage.CBT_PLAN),
        "attitude": record.attitude,
        "dialogue": record.text(Stage.DIALOGUE),
    }
    assert tuple(row) == CACTUS_COLUMNS
    if stamp is not None:
        row.update(stamp(record.id))
    if include_notes:
        row["notes"] = {
            "record": record.note,
            **{
                stage.value: record.stages[stage].note for stage in STAGES if stage in record.stages
            },
        }
    return row


CACTUS_STAGES = (Stage.INTAKE_FORM, Stage.CBT_TECHNIQUE, Stage.CBT_PLAN, Stage.DIALOGUE)


def cactus_export_row(
    row: AcceptedRow, *, include_notes: bool = False, stamp: RowStamp | None = None
) -> dict[str, Any]:
    """`cactus_row` of a row read by `accepted_rows(store, CACTUS_STAGES, …)`, the same dict
    (the export reads flat rows: a `RecordView` per record was 2.8x a plain dump)."""
    intake, technique, plan, dialogue = (
        _present(row, stage, text) for stage, text in zip(CACTUS_STAGES, row.texts, strict=True)
    )
    exported: dict[str, Any] = {
        "thought": row.seed.thought,
        "patterns": ", ".join(row.seed.patterns),
        "intake_form": intake,
        "cbt_technique": technique,
        "cbt_plan": plan,
        "attitude": row.attitude,
        "dialogue": dialogue,
    }
    if stamp is not None:
        exported.update(stamp(row.id))
    if include_notes:
        by_stage = dict(zip(CACTUS_STAGES, row.notes, strict=True))
        exported["notes"] = {
            "record": row.note,
            **{stage.value: by_stage[stage] for stage in STAGES if by_stage[stage] is not None},
        }
    return exported


def _stage_texts(row: AcceptedRow, stages: Sequence[Stage]) -> Callable[[Stage], str]:
    """A stage's current text, as `RecordView.text` gives it."""
    texts = dict(zip(stages, row.texts, strict=True))
    return lambda stage: _present(row, stage, texts[stage])


def _present(row: AcceptedRow, stage: Stage, text: str | None) -> str:
    if text is None:  # as `RecordView.text` of a missing stage
        raise KeyError(f"record {row.id} has no stage {stage.value}")
    return text


def export_records(
    store: Store,
    out: str | Path,
    *,
    fmt: str,
    include_notes: bool = False,
    force: bool = False,
    with_provenance: bool = False,
    pseudonymize: bool = False,
) -> ExportResult:
    """Write accepted records to `out` (refusing to touch the database or, without `force`, any
    existing file or folder), with their provenance; `with_provenance` adds `record_id`,
    `accepted_by` and `accepted_at` to each row, `pseudonymize` names reviewers `reviewer-N`."""
    if fmt not in EXPORT_FORMATS:
        raise BadInputError(
            f"unknown export format {fmt!r}; expected one of {', '.join(EXPORT_FORMATS)}"
        )
    if include_notes and fmt != "cactus-jsonl":
        raise BadInputError("--include-notes goes with --format cactus-jsonl only")
    out = Path(out)
    check_export_target(out, store.path, fmt=fmt, force=force)
    sidecar = None if fmt == "hf" else provenance_path(out)
    if sidecar is not None:
        check_export_target(sidecar, store.path, fmt=fmt, force=force)
    with store.read_snapshot():  # the provenance describes exactly the rows written
        provenance = build_provenance(
            store,
            fmt=fmt,
            pseudonymize=pseudonymize,
            with_provenance=with_provenance,
            include_notes=include_notes,
        )
        stamp = row_stamp(store, provenance.pseudonyms) if with_provenance else None
        if fmt == "hf":
            return export_hf_dataset(store, out, force=force, stamp=stamp, card=provenance.card())
        if fmt == "sft-jsonl":
            result = export_sft_jsonl(store, out, force=force, stamp=stamp)
        else:
            rows = (
                cactus_export_row(row, include_notes=include_notes, stamp=stamp)
                for row in accepted_rows(store, CACTUS_STAGES, notes=include_notes)
            )
            with atomic_file(out, replace=force) as fh:
                result = ExportResult(write_rows(fh, rows))
    assert sidecar is not None
    with atomic_file(sidecar, replace=force) as fh:
        fh.write(provenance.json_bytes())
    return dataclasses.replace(result, provenance=sidecar)


# -- where an export may go -------------------------------------------------------------------


def check_export_target(out: Path, db: Path, *, fmt: str, force: bool) -> None:
    """Refuse (exit 2) an OUT that is the database or one of its side files, or that exists
    (without `force`), or that is the wrong kind of thing to replace."""
    if str(db) != ":memory:":
        _refuse_database_paths(out, db)
    if not os.path.lexists(out):
        return
    folder = fmt == "hf"
    if not folder and out.is_dir():
        raise BadInputError(f"{out}: is a folder; {fmt} writes one file (give a file name)")
    if not force:
        raise BadInputError(
            f"{out}: already exists; choose a new name, or add --force to replace it"
        )
    if folder and not (out.is_dir() and _replaceable_dataset_folder(out)):
        raise BadInputError(
            f"{out}: exists and is not an earlier dataset export, so --force will not replace it; "
            "choose a new folder"
        )


def _refuse_database_paths(out: Path, db: Path) -> None:
    spellings = {db, db.resolve()}
    protected = [
        (p.with_name(p.name + side), side) for p in spellings for side in DATABASE_SIDE_FILES
    ]
    protected += [(p, "") for p in spellings]
    target = out.resolve()
    for path, side in protected:
        what = f"the database's {side} file" if side else "the database itself"
        same = path.resolve() == target
        if not same and path.exists() and out.exists():
            with contextlib.suppress(OSError):
                same = path.samefile(out)  # hard links, bind mounts
        if same:
            raise BadInputError(f"{out}: is {what} ({db}); export to another file")
        if target in path.resolve().parents:
            # A folder that holds the database can never be replaced by an export.
            raise BadInputError(f"{out}: holds the database ({db}); export to another folder")


def _replaceable_dataset_folder(path: Path) -> bool:
    return not any(path.iterdir()) or (path / "dataset_dict.json").is_file()


# -- writing ------------------------------------------------------------------------------------


@contextlib.contextmanager
def atomic_file(out: Path, *, replace: bool) -> Iterator[IO[bytes]]:
    """A file handle on a temporary name beside `out` (owner-only); on success it is synced and
    renamed to `out`, on any failure removed. Without `replace` an `out` that appeared meanwhile
    is never overwritten (linked into place, which fails if the name exists)."""
    tmp = _temporary_name(out)
    try:
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except OSError as exc:
        raise StudioError(f"{out}: cannot write the export ({exc.strerror})") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        _move_into_place(tmp, out, replace=replace)
    except OSError as exc:
        raise StudioError(
            f"{out}: cannot write the export ({exc.strerror or exc}); nothing was replaced"
        ) from exc
    finally:
        tmp.unlink(missing_ok=True)


def _temporary_name(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".part")
    except OSError as exc:
        raise StudioError(f"{out}: cannot write the export ({exc.strerror or exc})") from exc
    os.close(fd)
    Path(name).unlink()
    return Path(name)


def _move_into_place(tmp: Path, out: Path, *, replace: bool) -> None:
    if replace:
        tmp.replace(out)
    else:
        try:
            os.link(tmp, out)
        except FileExistsError:
            raise BadInputError(
                f"{out}: appeared while exporting; nothing was replaced (add --force to replace it)"
            ) from None
        except OSError:
            # A filesystem without hard links: the check before the export has to do.
            if os.path.lexists(out):
                raise
            tmp.replace(out)
    _sync_folder(out.parent)


def _sync_folder(folder: Path) -> None:
    """Make the rename itself durable (a crash after it keeps the new name)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_rows(fh: IO[bytes], rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    for row in rows:
        fh.write(orjson.dumps(row, option=orjson.OPT_APPEND_NEWLINE))
        count += 1
    return count


def write_jsonl(out: str | Path, rows: Iterable[dict[str, Any]], *, replace: bool = True) -> int:
    """Rows as JSONL at `out`, written atomically; returns how many."""
    with atomic_file(Path(out), replace=replace) as fh:
        return write_rows(fh, rows)


# -- the training dataset -----------------------------------------------------------------------


def export_sft_jsonl(
    store: Store,
    out: Path,
    *,
    force: bool,
    context: str = "history",
    stamp: RowStamp | None = None,
) -> ExportResult:
    """The training dataset (`studio.train.dataset`), one prompt/completion row per line with
    `record_id`, `turn` and `split`: the train rows, then the validation rows, split exactly as
    `studio train` splits them.

    Streamed in one pass over one read snapshot, validation rows waiting in a second temporary
    file. The split needs the seeds of all records that have examples; it is computed up front
    from the seeds of all accepted records (a cheap read) and checked at the end against the
    records that had examples: only when a record without examples changed it (rare) is the
    file written again. Memory holds one record, never the dataset."""
    from studio.train.dataset import validation_keys

    with store.read_snapshot():
        held_out = validation_keys(accepted_seed_keys(store), *_SPLIT)
        with atomic_file(out, replace=force) as fh, tempfile.TemporaryFile(dir=out.parent) as val:
            while True:
                n_records, n_validation, keys = _write_sft_rows(
                    store, fh, val, held_out, context, stamp
                )
                exact = validation_keys(keys, *_SPLIT)
                if held_out & frozenset(keys) == exact:
                    break  # every record went where the split of `studio train` puts it
                held_out = exact
                for file in (fh, val):
                    file.seek(0)
                    file.truncate()
            val.seek(0)
            shutil.copyfileobj(val, fh)
    return ExportResult(n_records, _split_notes(n_validation, n_records))


_SPLIT = (0.1, 42)  # validation fraction and seed, as `build_sft_dataset` defaults them


def _write_sft_rows(
    store: Store,
    train: IO[bytes],
    validation: IO[bytes],
    held_out: frozenset[str],
    context: str,
    stamp: RowStamp | None = None,
) -> tuple[int, int, list[str]]:
    """Every accepted record's examples to `train` or (seed in `held_out`) `validation`;
    returns the records read, the validation rows written and the seed keys of the records that
    had examples."""
    from studio.train.dataset import dialogue_messages, system_prompt

    stages = CACTUS_STAGES if context == "plan" else (Stage.DIALOGUE,)
    n_records = n_validation = 0
    keys: list[str] = []
    for row in accepted_rows(store, stages):
        n_records += 1
        text = _stage_texts(row, stages)
        system = system_prompt(context, text)
        key = row.seed.content_hash
        split = "validation" if key in held_out else "train"
        lines = sft_lines(
            row.id,
            system,
            dialogue_messages(text(Stage.DIALOGUE)),
            split,
            extra=_stamp_bytes(stamp, row.id),
        )
        if not lines:
            continue
        keys.append(key)
        if split == "validation":
            validation.write(b"".join(lines))
            n_validation += len(lines)
        else:
            train.write(b"".join(lines))
    return n_records, n_validation, keys


def _stamp_bytes(stamp: RowStamp | None, record_id: int) -> bytes:
    """The provenance columns after a row's own (`stamped` keeps `record_id` in its place and
    appends the rest), as the bytes that go before the row's closing brace."""
    if stamp is None:
        return b""
    extra = {k: v for k, v in stamp(record_id).items() if k != "record_id"}
    return b"," + orjson.dumps(extra)[1:-1] if extra else b""


def sft_lines(
    record_id: int,
    system: str,
    messages: Sequence[ChatMessage],
    split: str,
    *,
    extra: bytes = b"",
) -> list[bytes]:
    """The JSONL lines of `examples_from_messages(record_id, system, messages)`, each exactly
    `orjson.dumps(example.export_row(split))` (with `extra`, the provenance columns, before the
    closing brace) and a newline.

    Built from each message serialized once: the prompts of one dialogue repeat its messages
    (the rows are quadratic in the turns), and serializing them again for every row was most of
    the export's time."""
    from studio.train.dataset import OPENING_EXCHANGE

    prompt = orjson.dumps({"role": "system", "content": system})
    head = b'{"prompt":['
    closing = orjson.dumps(split) + extra.replace(b"%", b"%%") + b"}\n"  # `%` formats below
    tail = b'],"record_id":%d,"turn":%d,"split":' + closing
    lines: list[bytes] = []
    for index, message in enumerate(messages):
        encoded = orjson.dumps(message)
        if index >= OPENING_EXCHANGE and message["role"] == "assistant":
            lines.append(
                head + prompt + b'],"completion":[' + encoded + tail % (record_id, index + 1)
            )
        prompt += b"," + encoded
    return lines


def _split_notes(n_validation: int, n_records: int) -> tuple[str, ...]:
    if n_validation or not n_records:
        return ()
    return (
        f"the validation split is empty: {n_records} accepted records are too few to hold one out",
    )


def export_hf_dataset(
    store: Store,
    out: Path,
    *,
    force: bool,
    context: str = "history",
    stamp: RowStamp | None = None,
    card: str | None = None,
) -> ExportResult:
    """The training dataset as a `DatasetDict` folder (`train` and `validation`), written beside
    `out` and renamed into place, with `card` as its README.md. An empty split is saved empty,
    with the same columns."""
    from studio.train.dataset import build_sft_dataset

    dataset = build_sft_dataset(store.accepted_records(), context=context)
    splits = {
        "train": list(stamped((e.export_row("train") for e in dataset.train), stamp)),
        "validation": list(
            stamped((e.export_row("validation") for e in dataset.validation), stamp)
        ),
    }
    save_dataset_dict(out, splits, replace=force, card=card)
    return ExportResult(
        dataset.n_records, _split_notes(len(splits["validation"]), dataset.n_records)
    )


def save_dataset_dict(
    out: Path, splits: dict[str, list[dict[str, Any]]], *, replace: bool, card: str | None = None
) -> None:
    """`datasets.DatasetDict.save_to_disk` into a temporary folder beside `out` (with `card` as
    its README.md), then renamed.

    An empty split is kept, empty, with the other splits' columns: `Dataset.from_list([],
    features=…)` raises "Keys mismatch" and an empty split saved in zero shards cannot be loaded
    back (datasets 5), so it is built column by column and saved as one shard."""
    from datasets import Dataset, DatasetDict

    rows = [row for split in splits.values() for row in split]
    features = Dataset.from_list(rows).features if rows else _sft_features()

    def split_dataset(split: list[dict[str, Any]]) -> Dataset:
        if split:
            return Dataset.from_list(split, features=features)
        return Dataset.from_dict({name: [] for name in features}, features=features)

    dataset = DatasetDict({name: split_dataset(split) for name, split in splits.items()})
    shards = {name: (1 if not split else None) for name, split in splits.items()}
    tmp = _temporary_name(out)
    try:
        dataset.save_to_disk(str(tmp), num_shards=shards)
        if card is not None:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        _make_private(tmp)
        if replace and out.exists():
            old = _temporary_name(out.with_name(out.name + ".old"))
            out.rename(old)
            tmp.rename(out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if os.path.lexists(out):
                raise BadInputError(
                    f"{out}: appeared while exporting; nothing was replaced (add --force)"
                )
            tmp.rename(out)
        _sync_folder(out.parent)
    except OSError as exc:
        raise StudioError(
            f"{out}: cannot write the export ({exc.strerror or exc}); nothing was replaced"
        ) from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _sft_features() -> Any:
    """The columns of `SftExample.export_row`, for a dataset without a single row to infer from."""
    from datasets import Features, List, Value

    message = List({"role": Value("string"), "content": Value("string")})
    return Features(
        {
            "prompt": message,
            "completion": message,
            "record_id": Value("int64"),
            "turn": Value("int64"),
            "split": Value("string"),
        }
    )


def _make_private(folder: Path) -> None:
    """Owner-only permissions, as for every export (clinical data)."""
    folder.chmod(0o700)
    for item in folder.rglob("*"):
        item.chmod(0o700 if item.is_dir() else 0o600)
