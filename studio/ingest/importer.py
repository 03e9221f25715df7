"""`studio import`: files and datasets into the store, good rows kept, bad rows reported.

One file is one transaction (with `strict`, the whole import is one, and any bad row cancels it).
Whatever goes wrong with one row is that row's error; a file that cannot be read to its end keeps
the rows read before, and the other files are imported all the same.
Content already stored is skipped by its hash, so importing the same file twice adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field

from studio.errors import BadInputError
from studio.ingest.formats import FORMATS, RowError, detect_format, parse_row
from studio.ingest.load import (
    PreparedRow,
    add_rows,
    bulk_load,
    prepare_row,
    secondary_indexes_deferred,
)
from studio.ingest.readers import BadRow, Progress, Source, read_rows, resolve_source
from studio.store import Store
from studio.store.events import EventAction

BATCH_ROWS = 2000


@dataclass(slots=True)
class FileReport:
    source: str
    format: str = ""
    imported: int = 0
    """Rows that added a new seed or record."""
    duplicates: int = 0
    """Rows whose content was already stored."""
    seeds_added: int = 0
    records_added: int = 0
    problems: list[BadRow] = field(default_factory=list)
    rows: int = 0
    """Rows read, good or bad."""
    failure: str = ""
    """Why the file could not be read (to its end), as a full `FILE: reason` line; or ""."""
    warnings: dict[str, FileWarning] = field(default_factory=dict)
    """Optional fields taken in an unexpected shape, one entry per kind of note."""

    @property
    def skipped(self) -> int:
        return len(self.problems)

    @property
    def empty(self) -> bool:
        """The file held no rows at all (not even bad ones)."""
        return not (self.rows or self.failure)

    def warn(self, where: str, message: str) -> None:
        note = self.warnings.get(message)
        if note is None:
            self.warnings[message] = FileWarning(where, message)
        else:
            note.rows += 1

    def notes(self) -> list[str]:
        """Lines about the file as a whole: why it was not read, that it was empty, warnings."""
        lines = [self.failure] if self.failure else []
        if self.empty:
            lines.append(f"{self.source}: empty, no rows to import")
        lines.extend(str(note) for note in self.warnings.values())
        return lines


@dataclass(slots=True)
class FileWarning:
    where: str
    """The first row it applied to."""
    message: str
    rows: int = 1

    def __str__(self) -> str:
        more = f" (and {self.rows - 1} more rows of this file)" if self.rows > 1 else ""
        return f"{self.where}: warning: {self.message}{more}"


@dataclass(slots=True)
class ImportReport:
    files: list[FileReport] = field(default_factory=list)

    @property
    def imported(self) -> int:
        return sum(f.imported for f in self.files)

    @property
    def skipped(self) -> int:
        return sum(f.skipped for f in self.files)

    @property
    def duplicates(self) -> int:
        return sum(f.duplicates for f in self.files)

    @property
    def problems(self) -> list[BadRow]:
        return [p for f in self.files for p in f.problems]

    @property
    def failed(self) -> int:
        """Files that could not be read (to their end)."""
        return sum(1 for f in self.files if f.failure)

    def messages(self) -> list[str]:
        """What to tell the user besides the summary: file notes first (never cut off by a long
        list of bad rows), then each bad row."""
        return [line for f in self.files for line in f.notes()] + [str(p) for p in self.problems]

    def summary(self) -> str:
        text = f"imported {self.imported}, skipped {self.skipped}"
        empty = sum(1 for f in self.files if f.empty)
        notes = [
            f"{self.duplicates} already in the database" if self.duplicates else "",
            f"{empty} empty file{'s' if empty > 1 else ''}" if empty else "",
            f"{self.failed} file{'s' if self.failed > 1 else ''} not read to the end"
            if self.failed
            else "",
        ]
        if any(notes):
            text += f" ({'; '.join(n for n in notes if n)})"
        return text


class StrictImportError(BadInputError):
    """`--strict` found bad rows or an unreadable file; nothing was imported."""

    def __init__(self, report: ImportReport) -> None:
        what = [f"{report.skipped} bad row(s)"] if report.skipped else []
        if report.failed:
            what.append(f"{report.failed} file(s) not read to the end")
        super().__init__(f"{' and '.join(what)}; --strict imported nothing")
        self.report = report


ProgressFactory = Callable[[Source], Progress | None]


def import_sources(
    store: Store,
    specs: Sequence[str],
    *,
    fmt: str = "auto",
    accepted_by: str | None = None,
    strict: bool = False,
    progress: ProgressFactory | None = None,
) -> ImportReport:
    """Import every source; raises `BadInputError` for a missing path before anything is written."""
    if fmt != "auto" and fmt not in FORMATS:
        raise BadInputError(f"unknown format {fmt!r}; expected auto or one of {', '.join(FORMATS)}")
    sources = [resolve_source(spec) for spec in specs]
    with bulk_load(store) as bulk:
        return _import_all(store, sources, fmt, accepted_by, strict, progress, bulk)


def _import_all(
    store: Store,
    sources: list[Source],
    fmt: str,
    accepted_by: str | None,
    strict: bool,
    progress: ProgressFactory | None,
    bulk: bool,
) -> ImportReport:
    report = ImportReport()
    # A bulk load that is one transaction builds the secondary indexes once, at its end; with one
    # transaction per file, a kill between files would leave them dropped.
    defer = bulk and (strict or len(sources) == 1)
    if strict:
        try:
            with store.transaction(), _indexes_deferred(store, defer):
                for source in sources:
                    report.files.append(_import_one(store, source, fmt, accepted_by, progress))
                if report.skipped or report.failed:
                    raise StrictImportError(report)
        except StrictImportError:
            for file in report.files:
                file.imported = file.seeds_added = file.records_added = file.duplicates = 0
            raise
        return report
    for source in sources:
        with store.transaction(), _indexes_deferred(store, defer):
            report.files.append(_import_one(store, source, fmt, accepted_by, progress))
    return report


def _indexes_deferred(store: Store, defer: bool) -> AbstractContextManager[None]:
    return secondary_indexes_deferred(store) if defer else nullcontext()


def _import_one(
    store: Store,
    source: Source,
    fmt: str,
    accepted_by: str | None,
    progress: ProgressFactory | None,
) -> FileReport:
    file = FileReport(source.label, "" if fmt == "auto" else fmt)
    for batch in _prepared_batches(source, file, progress(source) if progress else None):
        result = add_rows(store, batch, source=source.label, accepted_by=accepted_by)
        file.seeds_added += result.seeds_added
        file.records_added += result.records_added
        file.duplicates += result.duplicates
        file.imported += len(batch) - result.duplicates
    store.log_event(
        EventAction.IMPORT,
        reviewer=accepted_by or "",
        after={
            "source": source.label,
            "format": file.format,
            "imported": file.imported,
            "duplicates": file.duplicates,
            "skipped": file.skipped,
            **({"error": file.failure} if file.failure else {}),
        },
    )
    return file


def _prepared_batches(
    source: Source, file: FileReport, progress: Progress | None
) -> Iterator[list[PreparedRow]]:
    """Rows of one source, parsed and prepared in batches; bad rows go to `file.problems`, and
    a reader that gives up sets `file.failure` after the rows it did read."""
    batch: list[PreparedRow] = []
    warnings: list[str] = []
    try:
        for row in read_rows(source, progress):
            file.rows += 1
            if isinstance(row, BadRow):
                file.problems.append(row)
                continue
            if not file.format:
                file.format = detect_format(row.data)
            try:
                batch.append(prepare_row(parse_row(file.format, row.data, source.label, warnings)))
            except Exception as exc:
                file.problems.append(BadRow(row.where, _row_reason(exc)))
                warnings.clear()
                continue
            if warnings:
                for message in warnings:
                    file.warn(row.where, message)
                warnings.clear()
            if len(batch) >= BATCH_ROWS:
                yield batch
                batch = []
    except BadInputError as exc:  # readers name the file in their messages
        file.failure = str(exc)
    except Exception as exc:
        file.failure = f"{source.label}: {_row_reason(exc)}; the rest of the file was not read"
    if batch:
        yield batch


def _row_reason(exc: Exception) -> str:
    if isinstance(exc, RowError):
        return str(exc)
    if isinstance(exc, RecursionError):
        return "nested too deeply to read"
    # Not a case the formats know: still that row's (or file's) error, never a traceback.
    return f"unexpected error ({type(exc).__name__}: {exc})"
