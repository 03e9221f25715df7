"""`studio import`: files and datasets into the store, good rows kept, bad rows reported.

One file is one transaction (with `strict`, the whole import is one, and any bad row cancels it).
Content already stored is skipped by its hash, so importing the same file twice adds nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

from studio.errors import BadInputError
from studio.ingest.formats import FORMATS, RowError, detect_format, parse_row
from studio.ingest.readers import BadRow, Progress, Source, read_rows, resolve_source
from studio.store import PreparedRow, Store, prepare_row

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

    @property
    def skipped(self) -> int:
        return len(self.problems)


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

    def summary(self) -> str:
        text = f"imported {self.imported}, skipped {self.skipped}"
        if self.duplicates:
            text += f" ({self.duplicates} already in the database)"
        return text


class StrictImportError(BadInputError):
    """`--strict` found bad rows; nothing was imported."""

    def __init__(self, report: ImportReport) -> None:
        super().__init__(f"{report.skipped} bad row(s); --strict imported nothing")
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
    report = ImportReport()
    if strict:
        try:
            with store.transaction():
                for source in sources:
                    report.files.append(_import_one(store, source, fmt, accepted_by, progress))
                if report.skipped:
                    raise StrictImportError(report)
        except StrictImportError:
            for file in report.files:
                file.imported = file.seeds_added = file.records_added = file.duplicates = 0
            raise
        return report
    for source in sources:
        with store.transaction():
            report.files.append(_import_one(store, source, fmt, accepted_by, progress))
    return report


def _import_one(
    store: Store,
    source: Source,
    fmt: str,
    accepted_by: str | None,
    progress: ProgressFactory | None,
) -> FileReport:
    file = FileReport(source.label, "" if fmt == "auto" else fmt)
    for batch in _prepared_batches(source, file, progress(source) if progress else None):
        result = store.add_rows(batch, source=source.label, accepted_by=accepted_by)
        file.seeds_added += result.seeds_added
        file.records_added += result.records_added
        file.duplicates += result.duplicates
        file.imported += len(batch) - result.duplicates
    store.log_event(
        "import",
        reviewer=accepted_by or "",
        after={
            "source": source.label,
            "format": file.format,
            "imported": file.imported,
            "duplicates": file.duplicates,
            "skipped": file.skipped,
        },
    )
    return file


def _prepared_batches(
    source: Source, file: FileReport, progress: Progress | None
) -> Iterator[list[PreparedRow]]:
    """Rows of one source, parsed and prepared in batches; bad rows go to `file.problems`."""
    batch: list[PreparedRow] = []
    for row in read_rows(source, progress):
        if isinstance(row, BadRow):
            file.problems.append(row)
            continue
        if not file.format:
            file.format = detect_format(row.data)
        try:
            batch.append(prepare_row(parse_row(file.format, row.data, source.label)))
        except RowError as exc:
            file.problems.append(BadRow(row.where, str(exc)))
            continue
        if len(batch) >= BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch
