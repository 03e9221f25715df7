"""Read rows out of files and datasets, each with the place it came from (`FILE:LINE`).

A reader never stops at a bad row: it yields a `BadRow` with the reason and goes on, so one broken
line never costs the good ones around it.
"""

from __future__ import annotations

import codecs
import csv
import errno
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from studio.errors import BadInputError

Progress = Callable[[int, int], None]
"""Called with (done, total) in the reader's own unit (bytes or rows)."""

FILE_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
CSV_CELL_LIMIT = 64 * 1024 * 1024
"""Largest CSV cell read (characters). The csv module's own limit, 128 KiB, would cost a row
whose dialogue or pasted text is longer; a larger cell is that row's error."""
_HUB_ID = re.compile(r"^(?:hf://)?[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True, slots=True)
class RawRow:
    where: str
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BadRow:
    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


Row = RawRow | BadRow


@dataclass(frozen=True, slots=True)
class Source:
    """Where rows come from: a file, a `save_to_disk` folder, or a Hugging Face hub id."""

    kind: str  # jsonl | json | csv | parquet | hf-folder | hub
    location: str

    @property
    def label(self) -> str:
        return self.location


def resolve_source(spec: str) -> Source:
    """Decide what `spec` is; a missing or unreadable path is a `BadInputError` naming it."""
    path = Path(spec)
    problem = _stat_problem(path)
    if problem:
        raise BadInputError(f"{spec}: {problem}")
    if path.exists():
        if path.is_dir():
            if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
                return Source("hf-folder", spec)
            raise BadInputError(f"{spec}: is a folder but not a dataset saved with save_to_disk")
        suffix = path.suffix.lower()
        kind = {
            ".jsonl": "jsonl",
            ".ndjson": "jsonl",
            ".json": "json",
            ".csv": "csv",
            ".parquet": "parquet",
        }.get(suffix)
        if kind is None:
            raise BadInputError(
                f"{spec}: unknown file type {suffix or '(none)'!r}; expected one of {', '.join(FILE_SUFFIXES)}"
            )
        try:
            with path.open("rb") as fh:
                fh.read(1)
        except OSError as exc:
            raise BadInputError(f"{spec}: cannot read file ({exc.strerror})") from exc
        return Source(kind, spec)
    if _HUB_ID.match(spec) and not spec.lower().endswith(FILE_SUFFIXES):
        return Source("hub", spec.removeprefix("hf://"))
    raise BadInputError(f"{spec}: no such file")


def _stat_problem(path: Path) -> str:
    """Why an existing name cannot be followed (a symlink loop, a broken link), or "".

    `Path.exists` answers False for both, which would read as "no such file"."""
    try:
        path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return "broken symlink (its target does not exist)" if path.is_symlink() else ""
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop (too many levels of symbolic links)"
        return f"cannot read file ({exc.strerror})"
    return ""


def read_rows(source: Source, progress: Progress | None = None) -> Iterator[Row]:
    readers: dict[str, Callable[[str, Progress | None], Iterator[Row]]] = {
        "jsonl": read_jsonl,
        "json": read_json_array,
        "csv": read_csv,
        "parquet": read_parquet,
        "hf-folder": read_hf_folder,
        "hub": read_hub,
    }
    return readers[source.kind](source.location, progress)


def read_jsonl(path: str, progress: Progress | None = None) -> Iterator[Row]:
    total = Path(path).stat().st_size
    done = 0
    # A 1 MiB buffer: with the default 8 KiB, reading the lines of a CACTUS file (9 KB each)
    # took 3.5x as long (0.15 s against 0.04 s for 285 MB).
    with Path(path).open("rb", buffering=1 << 20) as fh:
        head = fh.read(len(codecs.BOM_UTF8))
        _refuse_utf16(path, head)
        if head != codecs.BOM_UTF8:  # Excel and Notepad write one
            fh.seek(0)
        for number, line in enumerate(fh, start=1):
            done += len(line)
            if progress is not None and number % 2000 == 0:
                progress(done, total)
            if line.isspace():  # (a line read from a file is never empty; strip() would copy it)
                continue
            where = f"{path}:{number}"
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                yield BadRow(where, _json_reason(line, exc))
                continue
            if not isinstance(obj, dict):
                yield BadRow(where, f"expected a JSON object, got {type_name(obj)}")
                continue
            yield RawRow(where, obj)
    if progress is not None:
        progress(total, total)


def read_json_array(path: str, progress: Progress | None = None) -> Iterator[Row]:
    """A JSON array of objects (or one object); each element's line is reported for errors."""
    data = Path(path).read_bytes()
    _refuse_utf16(path, data)
    data = data.removeprefix(codecs.BOM_UTF8)
    # Undecodable bytes become lone surrogates, so one bad element costs only itself.
    text = data.decode("utf-8", errors="surrogateescape")
    decoder = json.JSONDecoder()
    index = _skip_ws(text, 0)
    if index >= len(text):
        return  # an empty file: the importer says so
    if text[index] == "{":
        text = f"[{text}]"
        index = 0
    if text[index] != "[":
        yield BadRow(f"{path}:1", "expected a JSON array of objects")
        return
    index = _skip_ws(text, index + 1)
    count = 0
    while index < len(text) and text[index] != "]":
        line = text.count("\n", 0, index) + 1
        start = index
        try:
            obj, index = decoder.raw_decode(text, index)
        except json.JSONDecodeError as exc:
            yield BadRow(
                f"{path}:{exc.lineno}",
                f"invalid JSON ({exc.msg}); the rest of the file was not read",
            )
            return
        except RecursionError:
            # The decoder recurses once per level; skip the element and go on with the next.
            end = _end_of_container(text, index)
            if end is None:
                yield BadRow(
                    f"{path}:{line}",
                    f"{TOO_DEEP}, and never closed; the rest of the file was not read",
                )
                return
            yield BadRow(f"{path}:{line}", TOO_DEEP)
            index = end
        else:
            element = text[start:index]
            if _has_surrogates(element):
                yield BadRow(f"{path}:{line}", "invalid UTF-8")
            elif _SURROGATE_ESCAPE.search(element) and _has_surrogates(
                json.dumps(obj, ensure_ascii=False)
            ):
                # The stdlib decoder lets "\ud800" through as a lone surrogate, which SQLite
                # cannot store: the whole file's transaction would fail on it.
                yield BadRow(f"{path}:{line}", "invalid text (an unpaired \\uD800-\\uDFFF escape)")
            elif isinstance(obj, dict):
                yield RawRow(f"{path}:{line}", obj)
            else:
                yield BadRow(f"{path}:{line}", f"expected a JSON object, got {type_name(obj)}")
        count += 1
        index = _skip_ws(text, index)
        if index < len(text) and text[index] == ",":
            index = _skip_ws(text, index + 1)
    if progress is not None:
        progress(count, count)


def read_csv(path: str, progress: Progress | None = None) -> Iterator[Row]:
    with Path(path).open("rb") as raw:
        _refuse_utf16(path, raw.read(2))
    # utf-8-sig drops the byte order mark Excel writes, which would otherwise join the first
    # column's name and cost every row its first field.
    with Path(path).open(encoding="utf-8-sig", errors="surrogateescape", newline="") as fh:
        lines = _CountedLines(fh)
        reader = csv.reader(lines)
        # The csv module's limit is process-wide; it is raised only while this file is read.
        previous_limit = csv.field_size_limit(CSV_CELL_LIMIT)
        try:
            header = next(reader, None)
            while header == []:  # blank lines above the header
                header = next(reader, None)
            if header is None:
                return
            width = len(header)
            lines.record.clear()
            while True:
                where = f"{path}:{lines.count + 1}"
                try:
                    cells = next(reader)
                except StopIteration:
                    return
                except csv.Error as exc:
                    lines.skip_rest_of_record()
                    lines.record.clear()
                    yield BadRow(where, _csv_reason(exc))
                    continue
                lines.record.clear()
                if not cells:
                    continue
                if any(_has_surrogates(v) for v in cells):
                    yield BadRow(where, "invalid UTF-8")
                    continue
                if len(cells) > width:
                    yield BadRow(where, "more cells than header columns")
                    continue
                data = dict(zip(header, cells, strict=False))
                if all(v == "" for v in data.values()):
                    continue
                yield RawRow(where, data)
        finally:
            csv.field_size_limit(previous_limit)


class _CountedLines:
    """The lines the csv reader takes, counted (for FILE:LINE) and kept until its record ends,
    so a record the reader gave up on can be skipped to its real end."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self.count = 0
        self.record: list[str] = []

    def __iter__(self) -> _CountedLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.count += 1
        self.record.append(line)
        return line

    def skip_rest_of_record(self) -> None:
        """After a csv error the reader starts afresh on the next line, which may still be
        inside the failed record's quoted cell: an odd number of quotes so far means it is."""
        quotes = sum(line.count('"') for line in self.record)
        while quotes % 2:
            try:
                line = next(self)
            except StopIteration:
                return
            quotes += line.count('"')


def _refuse_utf16(path: str, head: bytes) -> None:
    """A UTF-16 file (Excel's "Unicode text") would read as one undecodable row after another."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise BadInputError(f"{path}: the file is UTF-16; save it as UTF-8 (Excel: CSV UTF-8)")


def _csv_reason(exc: csv.Error) -> str:
    if "field larger than field limit" in str(exc):
        return f"a cell is longer than {CSV_CELL_LIMIT:,} characters"
    return f"invalid CSV ({exc})"


def read_parquet(path: str, progress: Progress | None = None) -> Iterator[Row]:
    import pyarrow.parquet as pq

    try:
        file = pq.ParquetFile(path)
    except Exception as exc:
        raise BadInputError(f"{path}: not a readable parquet file ({exc})") from exc
    total = file.metadata.num_rows
    number = 0
    for batch in file.iter_batches(batch_size=2000):
        for obj in batch.to_pylist():
            number += 1
            yield RawRow(f"{path}:row {number}", obj)
        if progress is not None:
            progress(number, total)


def read_hf_folder(path: str, progress: Progress | None = None) -> Iterator[Row]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        loaded = load_from_disk(path)
    except Exception as exc:
        raise BadInputError(f"{path}: cannot load the saved dataset ({exc})") from exc
    splits: dict[str, Dataset] = dict(loaded) if isinstance(loaded, DatasetDict) else {"": loaded}
    yield from _dataset_rows(path, splits, progress)


def read_hub(dataset_id: str, progress: Progress | None = None) -> Iterator[Row]:
    from datasets import Dataset, DatasetDict, load_dataset

    try:
        loaded = load_dataset(dataset_id)
    except Exception as exc:
        raise BadInputError(
            f"{dataset_id}: could not load this Hugging Face hub dataset "
            f"({type(exc).__name__}: {exc}). Hub ids need a network connection or a copy in the "
            "local datasets cache; offline, import a local file or a folder saved with save_to_disk."
        ) from exc
    splits: dict[str, Dataset] = dict(loaded) if isinstance(loaded, DatasetDict) else {"": loaded}
    yield from _dataset_rows(dataset_id, splits, progress)


def _dataset_rows(label: str, splits: dict[str, Any], progress: Progress | None) -> Iterator[Row]:
    total = sum(len(split) for split in splits.values())
    done = 0
    for name, split in splits.items():
        prefix = f"{label}[{name}]" if name else label
        for number, obj in enumerate(split, start=1):
            done += 1
            yield RawRow(f"{prefix}:row {number}", dict(obj))
            if progress is not None and done % 2000 == 0:
                progress(done, total)
    if progress is not None:
        progress(total, total)


def _json_reason(line: bytes, exc: orjson.JSONDecodeError) -> str:
    try:
        line.decode("utf-8")
    except UnicodeDecodeError as uexc:
        return f"invalid UTF-8 (byte {uexc.start} of the line)"
    return f"invalid JSON ({exc.msg})"


TOO_DEEP = "nested too deeply to read"
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _end_of_container(text: str, index: int) -> int | None:
    """Where the array or object starting at `index` ends (strings skipped), without recursion."""
    depth = 0
    for match in _JSON_TOKEN.finditer(text, index):
        token = match.group()
        if token == "[" or token == "{":
            depth += 1
        elif token == "]" or token == "}":
            depth -= 1
            if depth == 0:
                return match.end()
    return None


def _skip_ws(text: str, index: int) -> int:
    while index < len(text) and text[index] in " \t\r\n":
        index += 1
    return index


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def type_name(value: Any) -> str:
    return {
        dict: "an object",
        list: "an array",
        str: "a string",
        int: "a number",
        float: "a number",
        bool: "true/false",
        type(None): "null",
    }.get(type(value), type(value).__name__)
