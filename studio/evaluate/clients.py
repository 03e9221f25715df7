"""The simulated clients of an evaluation: intake forms with an attitude and an opening exchange.

By default a run's held-out records (the seeds its training split kept out, so the counselor never
saw them); or a file in the CACTUS evaluation shape: a JSON list of objects with
`AI_client.intake_form`, `AI_client.attitude` and `AI_client.dialogue_history_init` (nested under
`AI_client`, or flat with dotted keys).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.cbt.dialogue import Role, Turn, parse_dialogue
from studio.errors import BadInputError
from studio.model import Seed, Stage
from studio.store import Store
from studio.store.runs import RunRow
from studio.synth import chain

ATTITUDES = chain.ATTITUDES


@dataclass(frozen=True, slots=True)
class EvalClient:
    key: str
    """Stable within its source: `record:<id>` or `file:<index>`."""
    intake_form: str
    attitude: str
    opening: tuple[Turn, ...]
    """The exchange every session of this client starts from (the counselor speaks first)."""
    thought: str = ""
    technique: str = ""
    plan: str = ""
    record_id: int | None = None


def parse_attitudes(text: str | None) -> tuple[str, ...]:
    if not text:
        return ATTITUDES
    chosen = tuple(dict.fromkeys(a.strip().lower() for a in text.split(",") if a.strip()))
    unknown = [a for a in chosen if a not in ATTITUDES]
    if unknown or not chosen:
        raise BadInputError(
            f"--attitudes: unknown attitude {', '.join(unknown) or '(none)'};"
            f" expected some of {','.join(ATTITUDES)}"
        )
    return chosen


def held_out_clients(
    store: Store, run: RunRow, attitudes: Sequence[str], limit: int | None = None
) -> list[EvalClient]:
    """The run's held-out records (split by seed as `studio train` split them), one client per
    record and attitude."""
    from studio.train.dataset import build_sft_dataset

    config = run.config
    dataset = build_sft_dataset(
        store.accepted_records(),
        context=str(config.get("context", "history")),
        validation_fraction=float(config.get("validation_fraction", 0.1)),
        seed=int(config.get("seed", 42)),
    )
    record_ids = list(dict.fromkeys(e.record_id for e in dataset.validation))
    if not record_ids:
        raise BadInputError(
            f"run {run.id} held out no records (validation_fraction"
            f" {config.get('validation_fraction', 0.1)}); pass --clients FILE"
        )
    clients = []
    for record_id in record_ids[:limit]:
        record = store.record(record_id)
        intake = record.text(Stage.INTAKE_FORM)
        turns = parse_dialogue(record.text(Stage.DIALOGUE)).turns
        opening: tuple[Turn, ...] = tuple(turns[:2])
        if [t.role for t in opening] != [Role.COUNSELOR, Role.CLIENT]:
            inputs = chain.StageInputs(record.seed, {Stage.INTAKE_FORM: intake}, "", 0, 0)
            opening = tuple(chain.opening_exchange(inputs))
        for attitude in attitudes:
            clients.append(
                EvalClient(
                    key=f"record:{record_id}",
                    intake_form=intake,
                    attitude=attitude,
                    opening=opening,
                    thought=record.seed.thought,
                    technique=record.technique or record.text(Stage.CBT_TECHNIQUE),
                    plan=record.text(Stage.CBT_PLAN),
                    record_id=record_id,
                )
            )
    return clients


def _field(entry: dict[str, Any], name: str) -> Any:
    nested = entry.get("AI_client")
    if isinstance(nested, dict) and name in nested:
        return nested[name]
    return entry.get(f"AI_client.{name}")


def _opening(value: Any, where: str) -> tuple[Turn, ...]:
    """`dialogue_history_init`: `Counselor: …\\nClient: …` text, or a list of {role, message}."""
    if isinstance(value, list):
        turns = []
        for n, item in enumerate(value):
            if not isinstance(item, dict):
                raise BadInputError(f"{where}[{n}]: expected an object with role and message")
            role = str(item.get("role", "")).lower()
            text = str(item.get("message", item.get("content", ""))).strip()
            if role not in ("counselor", "client"):
                raise BadInputError(f"{where}[{n}]: role {role!r}; expected counselor or client")
            turns.append(Turn(Role.COUNSELOR if role == "counselor" else Role.CLIENT, text))
        return tuple(turns)
    if isinstance(value, str):
        return tuple(parse_dialogue(value).turns)
    raise BadInputError(f"{where}: expected dialogue text or a list of turns")


def file_clients(
    path: Path, attitudes: Sequence[str] | None = None, limit: int | None = None
) -> list[EvalClient]:
    """Clients from a CACTUS-shaped evaluation file; `attitudes` keeps only those attitudes."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadInputError(f"--clients {path}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"--clients {path}: not JSON ({exc})") from None
    if not isinstance(data, list):
        raise BadInputError(f"--clients {path}: expected a JSON list of clients")
    clients = []
    for index, entry in enumerate(data):
        where = f"--clients {path}: entry {index}"
        if not isinstance(entry, dict):
            raise BadInputError(f"{where}: expected an object")
        intake = _field(entry, "intake_form")
        attitude = str(_field(entry, "attitude") or "").strip().lower()
        if not isinstance(intake, str) or not intake.strip():
            raise BadInputError(f"{where}: AI_client.intake_form is missing or empty")
        if attitude not in ATTITUDES:
            raise BadInputError(
                f"{where}: AI_client.attitude {attitude!r}; expected one of {', '.join(ATTITUDES)}"
            )
        opening = _opening(
            _field(entry, "dialogue_history_init") or "", f"{where}: dialogue_history_init"
        )
        if not opening:
            seed = Seed(persona="", thought="")
            inputs = chain.StageInputs(seed, {Stage.INTAKE_FORM: intake}, attitude, 0, 0)
            opening = tuple(chain.opening_exchange(inputs))[:1]
        if attitudes is not None and attitude not in attitudes:
            continue
        first_client = next((t.text for t in opening if t.role is Role.CLIENT), "")
        clients.append(
            EvalClient(
                key=f"file:{index}",
                intake_form=intake.strip(),
                attitude=attitude,
                opening=opening,
                thought=first_client,
            )
        )
    return clients[:limit] if limit else clients
