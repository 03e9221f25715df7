"""Build an evaluation from what the command line names: the counselor, the clients, the models."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.errors import BadInputError
from studio.evaluate.clients import EvalClient, file_clients, held_out_clients
from studio.evaluate.engine import Counselor, EvalPlan, EvalProgress, Evaluator, evaluation_key
from studio.evaluate.storage import EvaluationRow, find_or_create_evaluation
from studio.model import BackendName
from studio.store import Store
from studio.store.runs import RunRow, get_run
from studio.synth.settings import SynthSettings

#: Completion tokens for one counselor turn (a turn is one to four sentences).
COUNSELOR_MAX_TOKENS = 256


def find_run(store: Store, run_id: int) -> RunRow:
    try:
        return get_run(store, run_id)
    except (KeyError, LookupError, ValueError) as exc:
        raise BadInputError(
            f"--run {run_id}: no such training run (see `studio train --list`)"
        ) from exc


def run_counselor(run: RunRow, *, temperature: float, max_tokens: int) -> Counselor:
    """A run's adapter, prompted as it was trained (its folder says how)."""
    from studio.train.adapter import AdapterInfo

    folder = Path(run.output_dir)
    if not (folder / "adapter_config.json").is_file():
        raise BadInputError(f"--run {run.id}: no adapter in {folder} (the run saved none)")
    info = AdapterInfo.load(folder)
    base = (info.base_model if info and info.base_model else "") or str(
        run.config.get("base_model", "")
    )
    if not base:
        raise BadInputError(f"--run {run.id}: its config names no base model")
    settings = SynthSettings(
        backend=BackendName.LOCAL,
        model=base,
        adapter=str(folder),
        temperature=temperature,
        max_tokens=max_tokens,
        token_budgets=False,
    )
    return Counselor(
        settings=settings,
        label=f"run {run.id} (adapter)",
        kind="adapter",
        context=info.context if info else str(run.config.get("context", "history")),
        system_prompt=info.system_prompt if info else "",
        run_id=run.id,
    )


def model_counselor(
    settings: SynthSettings, *, run: RunRow | None, adapter: str | None
) -> Counselor:
    """A local model (with or without an adapter) or an API model."""
    if settings.backend is BackendName.LOCAL:
        kind = "adapter" if adapter else "base"
        label = f"{Path(settings.model_id).name or settings.model_id}" + (
            " + adapter" if adapter else ""
        )
    else:
        kind = "api"
        label = f"{settings.backend}:{settings.model_id}"
    context = "history"
    system_prompt = ""
    if adapter:
        from studio.train.adapter import AdapterInfo

        info = AdapterInfo.load(Path(adapter))
        if info is not None:
            context, system_prompt = info.context, info.system_prompt
    return Counselor(
        settings=settings,
        label=label,
        kind=kind,
        context=context,
        system_prompt=system_prompt,
        run_id=run.id if run else None,
    )


def choose_clients(
    store: Store,
    source: str,
    run: RunRow | None,
    attitudes: tuple[str, ...],
    limit: int | None,
) -> tuple[EvalClient, ...]:
    if source == "held-out":
        if run is None:
            raise BadInputError("--clients held-out needs --run N (whose split held them out)")
        return tuple(held_out_clients(store, run, attitudes, limit))
    path = Path(source)
    clients = file_clients(path, attitudes, limit)
    if not clients:
        raise BadInputError(f"--clients {path}: no client with attitude {','.join(attitudes)}")
    return tuple(clients)


@dataclass(frozen=True, slots=True)
class Prepared:
    evaluation: EvaluationRow
    plan: EvalPlan
    counselor: Counselor
    client: SynthSettings
    judge: SynthSettings


def prepare(
    store: Store,
    counselor: Counselor,
    plan: EvalPlan,
    client: SynthSettings,
    judge: SynthSettings,
) -> Prepared:
    """Find (to resume) or create the evaluation these choices make."""
    settings = plan.describe(client, judge)
    key = evaluation_key(counselor, plan, settings)
    evaluation = find_or_create_evaluation(
        store,
        key=key,
        run_id=counselor.run_id,
        label=counselor.label,
        counselor=counselor.describe(),
        settings=settings,
    )
    return Prepared(evaluation, plan, counselor, client, judge)


def run_evaluation(
    store: Store,
    prepared: Prepared,
    *,
    concurrency: int,
    on_session: Any = None,
    batch: bool | None = None,
) -> EvalProgress:
    """Run (or resume) the evaluation. A local counselor generates for the sessions waiting on
    it in one batch (`batch`), else one answer at a time. None: batched on a GPU only; on a CPU a
    batch runs until its longest answer ends and costs in proportion to its size, which measured
    3.5x slower than one at a time (docs/benchmarks.md, Evaluation)."""
    from studio.evaluate.batching import BatchedLocalBackend
    from studio.synth.backends import Backend, make_backend

    local = prepared.counselor.settings.backend is BackendName.LOCAL
    if batch is None and local:
        import torch

        batch = torch.cuda.is_available()
    counselor_backend: Backend
    if batch and local:
        counselor_backend = BatchedLocalBackend(prepared.counselor.settings, max_batch=concurrency)
    else:
        counselor_backend = make_backend(prepared.counselor.settings)
    client_backend = make_backend(prepared.client)
    judge_backend = make_backend(prepared.judge)
    evaluator = Evaluator(
        store,
        prepared.evaluation,
        prepared.plan,
        prepared.counselor,
        (counselor_backend, client_backend, judge_backend),
        (prepared.client, prepared.judge),
        concurrency=concurrency,
        on_session=on_session,
    )

    async def go() -> EvalProgress:
        try:
            return await evaluator.run()
        finally:
            await evaluator.aclose()
            for backend in (counselor_backend, client_backend, judge_backend):
                await backend.aclose()

    return asyncio.run(go())
