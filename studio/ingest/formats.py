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


def detect_format(data: Mapping[str, Any]) -> str:
    """Guess a row's format from its keys (used by `--format auto`, per file, on the first row)."""
    if any(key in data for key in ("dialogue", "intake_form", "cbt_plan", "cbt_technique")):
        return "cactus"
    if "pattern_def" in data or "marked_patterns" in data:
        return "patternreframe"
    reframes = data.get("reframes")
    if isinstance(reframes, list) and reframes and isinstance(reframes[0], dict):
        return "patternreframe"
    return "seeds"


def parse_row(fmt: str, data: Mapping[str, Any], source: str = "") -> Seed | CactusRow:
    return _PARSERS[fmt](data, source)


def parse_seed(data: Mapping[str, Any], source: str = "") -> Seed:
    return Seed(
        persona=_text(data, "persona", required=True),
        thought=_text(data, "thought", required=True),
        patterns=_text_list(data, "patterns", separators=("|", ",")),
        reframes=_text_list(data, "reframes", separators=("|",)),
        source=source,
    )


def parse_patternreframe(data: Mapping[str, Any], source: str = "") -> Seed:
    marked = _text_list(data, "marked_patterns", separators=("|", ","))
    pattern = _text(data, "pattern", required=False)
    patterns = marked or ((pattern,) if pattern.strip() else ())
    raw = data.get("reframes")
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


def parse_cactus(data: Mapping[str, Any], source: str = "") -> CactusRow:
    seed = Seed(
        persona=_text(data, "persona", required=False),
        thought=_text(data, "thought", required=True),
        patterns=_text_list(data, "patterns", separators=("|", ","), required=True),
        reframes=_text_list(data, "reframes", separators=("|",)),
        source=source,
    )
    stages = {stage: _text(data, stage.value, required=False) for stage in Stage}
    attitude = _text(data, "attitude", required=False).strip().lower()
    if attitude and attitude not in {a.value for a in Attitude}:
        raise RowError(
            f"field 'attitude': expected positive, neutral or negative, got {attitude!r}"
        )
    return CactusRow(seed=seed, stages=stages, attitude=attitude)


_PARSERS: dict[str, Callable[[Mapping[str, Any], str], Seed | CactusRow]] = {
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


def _text_list(
    data: Mapping[str, Any], name: str, *, separators: tuple[str, ...], required: bool = False
) -> tuple[str, ...]:
    value = data.get(name)
    if value is None:
        if required:
            raise RowError(f"missing required field '{name}'")
        return ()
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):
            try:
                value = json.loads(stripped)
            except ValueError as exc:
                raise RowError(
                    f"field '{name}': looks like a JSON array but is not valid JSON"
                ) from exc
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
