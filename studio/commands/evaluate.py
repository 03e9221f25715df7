"""`studio eval`: simulated sessions against a trained counselor (CACTUS), scored and stored."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import click

from studio.commands.common import BACKEND_CHOICE, db_option, handle_errors, open_store
from studio.errors import BadInputError, StudioError
from studio.model import BackendName


@click.command("eval")
@db_option
@click.option("--run", "run_id", type=int, help="Evaluate this training run's adapter.")
@click.option("--model", help="Counselor model: a local folder / hub id, or an API model id.")
@click.option("--adapter", type=click.Path(file_okay=False), help="LoRA adapter on --model.")
@click.option("--backend", type=BACKEND_CHOICE, help="Counselor backend [local].")
@click.option("--base-url", help="Counselor server URL (openai-compatible …/v1).")
@click.option("--clients", "clients_source", default="held-out", show_default=True,
              help="held-out (the run's held-out records) or a CACTUS-shaped JSON file.")  # fmt: skip
@click.option("--sessions", type=click.IntRange(min=1), help="At most this many clients.")
@click.option("--attitudes", help="Comma-separated: positive,neutral,negative [all].")
@click.option("--max-exchanges", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--min-turns", type=click.IntRange(min=0), default=20, show_default=True,
              help="The client may end ([/END]) only after this many turns.")  # fmt: skip
@click.option("--client-backend", type=BACKEND_CHOICE, help="Client simulator backend.")
@click.option("--client-model", help="Client simulator model.")
@click.option("--client-base-url", help="Client simulator server URL.")
@click.option("--judge-backend", type=BACKEND_CHOICE, help="Judge backend.")
@click.option("--judge-model", help="Judge model.")
@click.option("--judge-base-url", help="Judge server URL.")
@click.option("--concurrency", type=click.IntRange(min=1), default=8, show_default=True,
              help="Sessions in flight at once.")  # fmt: skip
@click.option("--temperature", type=float, default=0.7, show_default=True,
              help="The counselor's sampling temperature.")  # fmt: skip
@click.option("--batch/--no-batch", default=None,
              help="A local counselor generates for all waiting sessions in one batch"
              " [on a GPU: batch; on a CPU: one at a time].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the summary as one JSON object.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STUDIO_CONFIG",
    help="TOML config file ([synth] is the default for client and judge).",
)
@handle_errors
def eval_command(
    db: Path,
    run_id: int | None,
    model: str | None,
    adapter: str | None,
    backend: str | None,
    base_url: str | None,
    clients_source: str,
    sessions: int | None,
    attitudes: str | None,
    max_exchanges: int,
    min_turns: int,
    concurrency: int,
    temperature: float,
    batch: bool | None,
    as_json: bool,
    config_path: Path | None,
    **agents: Any,
) -> None:
    """Evaluate a counselor the way CACTUS did: an LLM plays each client (an intake form with an
    attitude) against the counselor under test, the judge scores each session (six CTRS items,
    safety flags) and rates the client's PANAS feelings before and after. `--run N` evaluates a
    run's adapter in its trained prompt format; `--model` (with `--run N` for its held-out
    clients) a base model or, with `--backend openai`, an API model. Running the same evaluation
    again resumes it: finished sessions are kept, calls already answered come from the cache.
    """
    from studio.commands.synth import one_run_per_database
    from studio.evaluate.clients import parse_attitudes
    from studio.evaluate.engine import EvalPlan
    from studio.evaluate.launch import (
        COUNSELOR_MAX_TOKENS,
        choose_clients,
        find_run,
        model_counselor,
        prepare,
        run_counselor,
    )
    from studio.evaluate.report import summarize
    from studio.evaluate.storage import sessions as stored_sessions
    from studio.synth import SynthSettings

    if run_id is None and model is None:
        raise BadInputError("name the counselor: --run N, or --model PATH_OR_ID")
    if adapter and not model:
        raise BadInputError("--adapter goes on a --model")
    if backend and backend != BackendName.LOCAL and adapter:
        raise BadInputError("--adapter needs the local backend")
    chosen = parse_attitudes(attitudes)
    client = _agent_settings(config_path, "client", agents)
    judge = _agent_settings(config_path, "judge", agents)
    if not db.is_file():
        raise BadInputError(f"{db}: no such database (train a run first, or try `studio demo`)")
    with one_run_per_database(db, "eval"), open_store(db, must_exist=True) as store:
        run = find_run(store, run_id) if run_id is not None else None
        if model is None:
            assert run is not None
            counselor = run_counselor(run, temperature=temperature, max_tokens=COUNSELOR_MAX_TOKENS)
        else:
            settings = SynthSettings.load(
                None,
                backend=backend or BackendName.LOCAL,
                model=model,
                base_url=base_url,
                adapter=adapter,
                temperature=temperature,
                max_tokens=COUNSELOR_MAX_TOKENS,
                token_budgets=False,
            ).validate()
            counselor = model_counselor(settings, run=run, adapter=adapter)
        clients = choose_clients(store, clients_source, run, chosen, sessions)
        plan = EvalPlan(clients, max_exchanges, min_turns, source=clients_source)
        prepared = prepare(store, counselor, plan, client, judge)
        if not as_json:  # the first line says how many (the review app shows it as progress)
            click.echo(
                f"evaluation {prepared.evaluation.id} of {counselor.label}: {len(clients)} sessions",
                err=True,
            )
        from studio.evaluate.launch import run_evaluation

        def echo(session: Any) -> None:
            if not as_json:
                mark = "ok" if session.status == "finished" else f"failed: {session.error}"
                click.echo(
                    f"  {session.client_key} {session.attitude}: {session.turns} turns, {mark}",
                    err=True,
                )

        try:
            progress = run_evaluation(
                store, prepared, concurrency=concurrency, on_session=echo, batch=batch
            )
        except KeyboardInterrupt:
            click.echo("interrupted — finished sessions are saved; run the same command to go on")
            sys.exit(130)
        summary = summarize(prepared.evaluation, stored_sessions(store, prepared.evaluation.id))
    summary["progress"] = {
        "ran": progress.done,
        "resumed_from": progress.skipped,
        "calls": progress.calls,
        "cache_hits": progress.cache_hits,
        "elapsed_s": round(progress.elapsed_s, 3),
    }
    if as_json:
        click.echo(json.dumps(summary))
    else:
        _print(summary)
    if summary["failed"]:
        raise StudioError(
            f"{summary['failed']} session{'s' * (summary['failed'] > 1)} failed"
            f" ({'; '.join(summary['errors'])}); run the same command again to retry them"
        )


def _agent_settings(config_path: Path | None, role: str, options: dict[str, Any]) -> Any:
    """The client simulator's or the judge's settings: `--ROLE-backend/-model/-base-url` over the
    config's [synth]; a problem names the role and its options."""
    from studio.synth import SynthSettings

    try:
        return SynthSettings.load(
            config_path,
            backend=options[f"{role}_backend"],
            model=options[f"{role}_model"],
            base_url=options[f"{role}_base_url"],
        ).validate()
    except BadInputError as exc:
        who = "the client simulator" if role == "client" else "the judge"
        raise BadInputError(
            f"{who} (--{role}-backend/--{role}-model/--{role}-base-url): {exc}"
        ) from exc


def _fmt(stat: dict[str, Any]) -> str:
    if stat["mean"] is None:
        return "—"
    low, high = stat["ci95"]
    return f"{stat['mean']:.2f}" + (f" [{low:.2f}, {high:.2f}]" if low is not None else "")


def _print(summary: dict[str, Any]) -> None:
    click.echo(
        f"evaluation {summary['evaluation']} ({summary['label']}): {summary['sessions']} sessions"
        f" scored, {summary['failed']} failed, {summary['flagged']} flagged"
    )
    for item, stat in summary["items"].items():
        click.echo(f"  {item:<28} {_fmt(stat)}")
    click.echo(f"  {'CTRS mean':<28} {_fmt(summary['ctrs_mean'])}")
    panas = summary["panas"]
    click.echo(
        f"  PANAS change: positive {_fmt(panas['positive_change'])},"
        f" negative {_fmt(panas['negative_change'])}"
    )
    for attitude, part in summary["per_attitude"].items():
        click.echo(
            f"  {attitude:<9} CTRS {_fmt(part['ctrs_mean'])}, PANAS +{_fmt(part['panas']['positive_change'])}"
            f" / -{_fmt(part['panas']['negative_change'])} ({part['sessions']} sessions)"
        )


@click.command("chat")
@db_option
@click.option("--run", "run_id", type=int, required=True, help="Talk to this run's adapter.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--temperature", type=float, default=0.7, show_default=True)
@click.option("--save/--no-save", default=True, show_default=True,
              help="Keep the conversation as a session of the run's chat evaluation.")  # fmt: skip
@click.option("--judge", "judged", is_flag=True, help="Score the saved conversation (CTRS, flags).")
@click.option("--judge-backend", type=BACKEND_CHOICE, help="Judge backend.")
@click.option("--judge-model", help="Judge model.")
@click.option("--judge-base-url", help="Judge server URL.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="STUDIO_CONFIG",
    help="TOML config file ([synth] is the default judge).",
)
@handle_errors
def chat_command(
    db: Path,
    run_id: int,
    max_tokens: int,
    temperature: float,
    save: bool,
    judged: bool,
    config_path: Path | None,
    **judge_options: Any,
) -> None:
    """Talk to a trained counselor: you write as the client, the run's adapter answers as the
    counselor in the format it was trained on, token by token. An empty line or /end ends the
    session; it is then saved as a session of the run's chat evaluation (scored with --judge).
    """
    from studio.evaluate.chat import ChatSession, save_chat
    from studio.evaluate.launch import find_run, run_counselor

    judge = None
    if judged:
        judge = _agent_settings(config_path, "judge", judge_options)
    with open_store(db, must_exist=True) as store:
        run = find_run(store, run_id)
    counselor = run_counselor(run, temperature=temperature, max_tokens=max_tokens)
    session = ChatSession(counselor)
    click.echo(f"Talking to {counselor.label}. An empty line or /end ends the session.")
    click.echo(f"Counselor: {session.turns[0].text}")
    while True:
        try:
            line = click.prompt("Client", default="", show_default=False, prompt_suffix=": ")
        except (EOFError, click.Abort):
            line = ""
        if not line.strip() or line.strip() == "/end":
            break
        session.say(line)
        click.echo("Counselor: ", nl=False)
        for piece in session.reply(max_tokens=max_tokens):
            click.echo(piece, nl=False)
        click.echo()
    if not save or len(session.turns) < 2:
        click.echo("not saved")
        return
    ctrs, flags = _judge_chat(db, judge, session.transcript) if judge else ({}, [])
    with open_store(db, must_exist=True) as store:
        evaluation_id = save_chat(store, session, ctrs=ctrs, flags=flags)
    scored = f", CTRS mean {sum(v['score'] for v in ctrs.values()) / len(ctrs):.2f}" if ctrs else ""
    click.echo(
        f"saved as a session of evaluation {evaluation_id} ({len(session.turns)} turns{scored})"
    )


def _judge_chat(db: Path, judge: Any, transcript: str) -> tuple[dict[str, Any], list[Any]]:
    import asyncio

    from studio.evaluate.clients import EvalClient
    from studio.evaluate.engine import score_transcript
    from studio.judge.answer import AnswerError
    from studio.synth.backends import make_backend
    from studio.synth.engine import CallFailed, Synthesizer, _Usage

    judge = replace(judge, temperature=0.0)  # a judge reads, it does not write
    backend = make_backend(judge)
    with open_store(db, must_exist=True) as store:
        engine = Synthesizer(store, backend, judge)

        async def go() -> tuple[dict[str, Any], list[Any]]:
            try:
                client = EvalClient("chat", "", "clinician", ())
                return await score_transcript(engine, client, transcript, _Usage())
            finally:
                await backend.aclose()

        try:
            return asyncio.run(go())
        except (CallFailed, AnswerError) as exc:
            click.echo(f"not scored: the judge failed ({exc})", err=True)
            return {}, []
