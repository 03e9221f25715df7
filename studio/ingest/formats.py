"""The three input formats, validated field by field into `Seed` and `CactusRow`.

- `patternreframe`: PatternReframe as released with ParlAI (persona, pattern, pattern_def, thought,
  marked_patterns, reframes as a list of {"reframe": …}).
- `seeds`: the simple seed dict (persona, thought, patterns: [str], reframes: [str]).
- `cactus`: CACTUS rows (thought, patterns, intake_form, cbt_technique, cbt_plan, attitude,
  dialogue); optional persona and reframes are kept when present.

In CSV cells, list fields are a JSON array or items separated by `|` (patterns also by `,`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from studio.ingest.readers import type_name
from studio.model import Attitude, CactusRow, Seed, Stage

FORMATS = ("patternreframe", "seeds", "cactus")


class RowError(ValueError):
    """A row is unusable; the message names the field and the problem."""


_STAGE_FIELDS = frozenset({"intake_form", "cbt_technique", "cbt_plan", "attitude", "dialogue"})
_FOREIGN: dict[str, dict[str, tuple[str, ...]]] = {
    "seeds": {
        **dict.fromkeys(_STAGE_FIELDS, ()),
        "pattern": ("patterns",),
        "marked_patterns": ("patterns",),
    },
    "patternreframe": {
        **dict.fromkeys(_STAGE_FIELDS, ()),
        "patterns": ("marked_patterns",),
    },
    "cactus": {"pattern": ("patterns",), "marked_patterns": ("patterns",)},
}
"""Per format, the fields of the other formats that it would drop, each with the fields of its
own that hold the same thing: a row with one of those filled loses nothing by the drop (a seed
with `patterns` and the prompted `pattern`; not the other way round, as one prompted pattern
does not hold a list). Stages have no such field outside CACTUS.
`pattern_def` is not stored by any format, and other keys (ids, splits) are not ours to judge."""
_FOREIGN_KEYS = {fmt: frozenset(fields) for fmt, fields in _FOREIGN.items()}


def detect_format(data: Mapping[str, Any]) -> str:
    """Guess a row's format from its keys (used by `--format auto`, per file, on the first row)."""
    if any(key in data for key in ("dialogue", "intake_form", "cbt_plan", "cbt_technique")):
        return "cactus"
    if "marked_patterns" in data:
        return "patternreframe"
    if ("pattern_def" in data or "pattern" in data) and _is_blank(data.get("patterns")):
        return "patternreframe"
    reframes = data.get("reframes")
    if isinstance(reframes, list) and reframes and isinstance(reframes[0], dict):
        return "patternreframe"
    return "seeds"


Warnings = list[str] | None
"""Where a parser notes what it did to an optional field in an unexpected shape (kept the row);
the importer reports each distinct note once per file."""


def parse_row(
    fmt: str, data: Mapping[str, Any], source: str = "", warnings: Warnings = None
) -> Seed | CactusRow:
    """Parse a row of a known format; a row carrying another format's fields is a `RowError`,
    never imported with those fields dropped."""
    foreign = _FOREIGN_KEYS[fmt].intersection(data)
    if foreign:
        _refuse_foreign_fields(fmt, data, foreign)
    return _PARSERS[fmt](data, source, warnings)


def _refuse_foreign_fields(fmt: str, data: Mapping[str, Any], foreign: frozenset[str]) -> None:
    used = sorted(
        name
        for name in foreign
        # An empty column of a wider CSV header loses nothing.
        if not _is_blank(data[name])
        and all(_is_blank(data.get(own)) for own in _FOREIGN[fmt][name])
    )
    if not used:
        return
    names = ", ".join(f"'{name}'" for name in used)
    guess = detect_format(data)
    looks_like = f"; the row looks like {guess}" if guess != fmt else ""
    raise RowError(
        f"field{'s' if len(used) > 1 else ''} {names} not part of the {fmt} format this file is "
        f"read as{looks_like} (a file's format comes from its first row, or --format)"
    )


def _is_blank(value: Any) -> bool:
    if isinstance(value, str):
        return not value.strip()
    return value is None or (isinstance(value, list | dict | tuple) and not value)


def parse_seed(data: Mapping[str, Any], source: str = "", warnings: Warnings = None) -> Seed:
    return Seed(
        persona=_text(data, "persona", required=True),
        thought=_text(data, "thought", required=True),
        patterns=_text_list(
            data, "patterns", separators=("|", ","), object_keys=True, warnings=warnings
        ),
        reframes=_text_list(data, "reframes", separators=("|",)),
        source=source,
    )


def parse_patternreframe(
    data: Mapping[str, Any], source: str = "", warnings: Warnings = None
) -> Seed:
    pattern = _text(data, "pattern", required=False)
    try:
        marked = _text_list(
            data, "marked_patterns", separators=("|", ","), object_keys=True, warnings=warnings
        )
    except RowError:
        # The marked patterns refine the prompted one, so the row stands on `pattern` alone.
        _warn(
            warnings,
            "field 'marked_patterns' is not a list of pattern names; used 'pattern' instead",
        )
        marked = ()
    patterns = marked or ((pattern,) if pattern.strip() else ())
    raw = data.get("reframes")
    if isinstance(raw, str):
        # A CSV cell: a JSON array of {"reframe": …} or of texts, or texts separated by `|`.
        raw = list(_text_list_or_objects(raw))
    elif isinstance(raw, dict) and "reframe" in raw:
        _warn(warnings, "field 'reframes' is one object, not a list; used it as a list of one")
        raw = [raw]
    if raw is None:
        reframes: tuple[str, ...] = ()
    elif isinstance(raw, list):
        items = []
        for index, item in enumerate(raw):
            if isinstance(item, dict):
                text = item.get("reframe")
                if not isinstance(text, str):
                    raise RowError(
                        f"field 'reframes[{index}].reframe': expected text, got {type_name(text)}"
                    )
                items.append(text)
            elif isinstance(item, str):
                items.append(item)
            else:
                raise RowError(
                    f"field 'reframes[{index}]': expected an object with 'reframe', got {type_name(item)}"
                )
        reframes = tuple(t for t in items if t.strip())
    else:
        raise RowError(f"field 'reframes': expected a list, got {type_name(raw)}")
    return Seed(
        persona=_text(data, "persona", required=True),
        thought=_text(data, "thought", required=True),
        patterns=patterns,
        reframes=reframes,
        source=source,
    )


def parse_cactus(data: Mapping[str, Any], source: str = "", warnings: Warnings = None) -> CactusRow:
    seed = Seed(
        persona=_text(data, "persona", required=False),
        thought=_text(data, "thought", required=True),
        patterns=_text_list(
            data,
            "patterns",
            separators=("|", ","),
            required=True,
            object_keys=True,
            warnings=warnings,
        ),
        reframes=_text_list(data, "reframes", separators=("|",)),
        source=source,
    )
    stages = {stage: _text(data, name, required=False) for stage, name in _STAGE_NAMES}
    attitude = _text(data, "attitude", required=False).strip().lower()
    if attitude and attitude not in _ATTITUDES:
        raise RowError(
            f"field 'attitude': expected positive, neutral or negative, got {attitude!r}"
        )
    return CactusRow(seed=seed, stages=stages, attitude=attitude)


# Enum members and their values looked up once: per row, over 31k rows, the lookups cost 0.3 s.
_STAGE_NAMES: tuple[tuple[Stage, str], ...] = tuple((stage, stage.value) for stage in Stage)
_ATTITUDES = frozenset(a.value for a in Attitude)

_PARSERS: dict[str, Callable[[Mapping[str, Any], str, Warnings], Seed | CactusRow]] = {
    "seeds": parse_seed,
    "patternreframe": parse_patternreframe,
    "cactus": parse_cactus,
}


def _text(data: Mapping[str, Any], name: str, *, required: bool) -> str:
    value = data.get(name)
    if value is None:
        if required:
            raise RowError(f"missing required field '{name}'")
        return ""
    if not isinstance(value, str):
        raise RowError(f"field '{name}': expected text, got {type_name(value)}")
    if required and not value.strip():
        raise RowError(f"field '{name}' is empty")
    return value


def _warn(warnings: Warnings, message: str) -> None:
    if warnings is not None:
        warnings.append(message)


def _text_list_or_objects(value: str) -> tuple[Any, ...]:
    stripped = value.strip()
    if stripped.startswith("["):
        parsed = _json_cell("reframes", stripped)
        return tuple(parsed) if isinstance(parsed, list) else (parsed,)
    return tuple(p.strip() for p in stripped.split("|") if p.strip())


def _json_cell(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except RecursionError as exc:
        raise RowError(f"field '{name}': nested too deeply to read") from exc
    except ValueError as exc:
        raise RowError(f"field '{name}': looks like a JSON array but is not valid JSON") from exc


def _text_list(
    data: Mapping[str, Any],
    name: str,
    *,
    separators: tuple[str, ...],
    required: bool = False,
    object_keys: bool = False,
    warnings: Warnings = None,
) -> tuple[str, ...]:
    """A list of texts. With `object_keys` (pattern fields), an object such as {"labeling": 2}
    gives its keys, noted as a warning instead of costing the row."""
    value = data.get(name)
    if value is None:
        if required:
            raise RowError(f"missing required field '{name}'")
        return ()
    if isinstance(value, dict) and object_keys:
        keys = [key for key in value if isinstance(key, str) and key.strip()]
        if keys:
            _warn(warnings, f"field '{name}' is an object, not a list; used its keys")
            value = keys
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            value = _json_cell(name, stripped)
        else:
            for separator in separators:
                if separator in stripped:
                    return tuple(p.strip() for p in stripped.split(separator) if p.strip())
            return (stripped,) if stripped else ()
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise RowError(f"field '{name}[{index}]': expected text, got {type_name(item)}")
        return tuple(item.strip() for item in value if item.strip())
    raise RowError(f"field '{name}': expected a list of texts, got {type_name(value)}")
