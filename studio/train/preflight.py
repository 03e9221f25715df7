"""Checks that run before anything heavy is imported, shared by `studio train` and the runner.

Each failure is a `BadInputError` (exit 2) whose message says what to do about it.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from studio.errors import BadInputError
from studio.store import Store
from studio.store.runs import CONSOLE_LOG_NAME, accepted_record_count

# owner/name, as the Hugging Face hub spells repository ids.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
RUNS_DIR = Path("runs")


@dataclass(frozen=True, slots=True)
class ModelLocation:
    name: str
    """What the user passed: a folder or a hub id."""
    local_dir: Path | None
    """The folder to load from, when the model is on this machine."""
    needs_download: bool = False
    """A hub id that is not in the local cache: loading it downloads it (if the hub is reachable)."""


TRAINING_PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate")


def check_training_installed() -> None:
    """Training needs the `train` extra; a reviewer's install (no torch) says how to get it."""
    import importlib.util

    missing = [name for name in TRAINING_PACKAGES if importlib.util.find_spec(name) is None]
    if missing:
        raise BadInputError(
            f"training needs {', '.join(missing)}: install the train extra with "
            '`pip install -e ".[train]"` (on a machine without a GPU, install torch==2.13.0 '
            "first so pip does not fetch the CUDA build)"
        )


def check_accepted_records(store: Store) -> int:
    """The number of accepted records; exit 2 with how to get some when there are none."""
    total, accepted = accepted_record_count(store)
    if accepted == 0:
        raise BadInputError(
            f"nothing to train on: {store.path} has {total} records and none is accepted. "
            "Accept records in the review app (every stage accepted or edited), or import "
            "reviewed rows with `studio import FILE --status accepted --reviewer NAME`."
        )
    return accepted


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on")


def locate_base_model(name: str) -> ModelLocation:
    """Find `--base-model`: a local folder, or a hub id in the cache, or one to download."""
    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise BadInputError(f"--base-model {name}: the folder has no config.json (not a model)")
        return ModelLocation(name, path)
    if not _HUB_ID.match(name) or name.startswith((".", "/", "~")):
        raise BadInputError(f"--base-model {name}: no such model folder")
    cached = _cached_snapshot(name)
    if cached is not None:
        return ModelLocation(name, cached)
    if hub_offline():
        raise BadInputError(
            f"--base-model {name}: this hub id is not in the local Hugging Face cache, and hub ids "
            "need a download (HF_HUB_OFFLINE is set). Download it where there is network "
            f"(`hf download {name}`) or pass a local model folder."
        )
    return ModelLocation(name, None, needs_download=True)


def _cached_snapshot(repo_id: str) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return Path(found).parent if isinstance(found, str) else None


def download_failed(name: str, exc: BaseException) -> BadInputError:
    return BadInputError(
        f"--base-model {name}: not in the local Hugging Face cache, and hub ids need a download, "
        f"which failed ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}). "
        f"Download it where there is network (`hf download {name}`) or pass a local model folder."
    )


def default_output_dir(recipe: str, *, now: datetime | None = None) -> Path:
    """`runs/<UTC time>-<recipe>` in the current folder (git-ignored), never an existing one."""
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%d-%H%M%S")
    candidate = RUNS_DIR / f"{stamp}-{recipe}"
    suffix = 2
    while candidate.exists():
        candidate = RUNS_DIR / f"{stamp}-{recipe}-{suffix}"
        suffix += 1
    return candidate


def check_output_dir(path: Path) -> None:
    """A run never writes into a folder that already holds something (another run's adapter)."""
    # The launcher creates the folder with the runner's console log in it before the runner
    # starts: that much is still an unused folder.
    if path.exists() and (
        not path.is_dir() or any(p.name != CONSOLE_LOG_NAME for p in path.iterdir())
    ):
        raise BadInputError(
            f"--output {path}: already exists and is not an empty folder; "
            "choose a new folder (each run gets its own)"
        )


def model_context_length(model_dir: Path) -> int | None:
    """The longest sequence the model was built for (`max_position_embeddings`), if it says."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        value = section.get("max_position_embeddings") if isinstance(section, dict) else None
        if isinstance(value, int) and value > 0:
            return value
    return None
