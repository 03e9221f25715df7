"""Prompt templates from `prompts/*.md`, rendered safely for any user text.

A template is front matter (`stage`, `version`, `description`) and two blocks, `=== system ===`
and `=== user ===`, with `{{name}}` placeholders. Rendering is one regex pass that inserts values
verbatim: no `str.format`, so braces, quotes and `{{…}}` inside seed text stay as they are. Data
goes inside XML-like tags in the templates; a value that contains one of the template's own tags
has it defanged (`<` → `‹`), so seed text cannot close its tag and pose as instructions. Models
read `</CLIENT_THOUGHT>`, `</ client_thought >` and `<client_thought id="x">` as the same tag, so
the match ignores case, whitespace and attributes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import orjson
import xxhash

from studio.errors import BadInputError
from studio.resources import prompts_dir

_PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)\s*\}\}")
_TAG = re.compile(r"</?([a-z_]+)>")
#: Anything in a value that a model could take for one of the template's tags.
_TAG_LIKE = re.compile(r"<(\s*/?\s*)([a-z_]+)(?![\w-])([^<>]*)(>?)", re.IGNORECASE)
_BLOCK = re.compile(r"^=== (system|user) ===[ \t]*$", re.MULTILINE)

Messages = list[dict[str, str]]


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    version: str
    description: str
    system: str
    user: str
    path: Path

    @property
    def placeholders(self) -> frozenset[str]:
        return frozenset(_PLACEHOLDER.findall(self.system + self.user))

    @property
    def label(self) -> str:
        """`name@version`, stored with every generated stage."""
        return f"{self.name}@{self.version}"

    def render(self, values: Mapping[str, str]) -> Messages:
        missing = self.placeholders - values.keys()
        if missing:
            raise KeyError(f"template {self.name} needs values for {', '.join(sorted(missing))}")
        tags = frozenset(_TAG.findall(self.system + self.user))
        safe = {key: _defang(str(value), tags) for key, value in values.items()}

        def fill(text: str) -> str:
            return _PLACEHOLDER.sub(lambda m: safe[m[1]], text)

        return [
            {"role": "system", "content": fill(self.system)},
            {"role": "user", "content": fill(self.user)},
        ]


def _defang(value: str, tags: frozenset[str]) -> str:
    if "<" not in value:
        return value

    def defang(m: re.Match[str]) -> str:
        if m[2].lower() not in tags:
            return m[0]
        return "‹" + m[1] + m[2] + m[3] + ("›" if m[4] else "")

    return _TAG_LIKE.sub(defang, value)


def parse_template(text: str, path: Path) -> Template:
    if not text.startswith("---\n"):
        raise BadInputError(f"{path}:1: a template starts with '---' front matter")
    end = text.find("\n---\n", 4)
    if end < 0:
        raise BadInputError(f"{path}: the front matter is not closed with '---'")
    meta: dict[str, str] = {}
    for number, line in enumerate(text[4:end].splitlines(), start=2):
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            raise BadInputError(f"{path}:{number}: expected 'key: value' in the front matter")
        meta[key.strip()] = value.strip()
    for key in ("stage", "version"):
        if key not in meta:
            raise BadInputError(f"{path}: front matter needs '{key}'")
    body = text[end + 5 :]
    blocks = list(_BLOCK.finditer(body))
    names = [m[1] for m in blocks]
    if names != ["system", "user"]:
        raise BadInputError(f"{path}: expected one '=== system ===' then one '=== user ===' block")
    system = body[blocks[0].end() : blocks[1].start()].strip()
    user = body[blocks[1].end() :].strip()
    return Template(meta["stage"], meta["version"], meta.get("description", ""), system, user, path)


@cache
def _load(path: Path, mtime_ns: int, size: int) -> Template:
    """Parsed once per version of the file: (mtime, size) changes with every save."""
    return parse_template(path.read_text(encoding="utf-8"), path)


@cache
def _shipped_prompts() -> Path:
    """The shipped `prompts/` folder, looked up once (the lookup probes two folders)."""
    return prompts_dir()


def load_template(name: str, folder: Path | None = None) -> Template:
    """Load `prompts/<name>.md`. Parsed once and kept; one `stat` per call re-reads the file
    when it changed, so a clinician's edit applies to the next call of a running synthesis."""
    path = (folder or _shipped_prompts()) / f"{name}.md"
    try:
        found = path.stat()
    except FileNotFoundError as exc:
        raise BadInputError(f"{path}: prompt template not found") from exc
    return _load(path, found.st_mtime_ns, found.st_size)


def prompt_hash(messages: Messages) -> str:
    """The hash of a rendered prompt, stored with each stage."""
    return xxhash.xxh3_128_hexdigest(orjson.dumps(messages))
