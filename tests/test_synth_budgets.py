"""Per-stage completion budgets, the retry of a cut answer, and Groq's model rules, through the
real SDKs against the loopback server."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from pydantic import SecretStr

from studio.ingest.load import add_rows
from studio.model import BackendName, Stage
from studio.store import Store
from studio.synth import Synthesizer, SynthSettings, make_backend
from studio.synth.backends import BackendConfigError, check_groq_model
from studio.synth.engine import _Usage
from tests.chat_server import CHARS_PER_TOKEN, ChatServer, Reply, cbt_reply, cbt_text, detect_stage
from tests.test_synth import SEEDS, settings_for, synthesize


def long_dialogue(tokens: int) -> Any:
    """A server whose dialogues are `tokens` long (real ones run to thousands)."""

    def respond(body: dict[str, Any]) -> Reply:
        if detect_stage(body) != "dialogue_script":
            return cbt_reply(body)
        text = cbt_text(body)
        lines = text.splitlines()
        filler = " That is how it goes." * (tokens * CHARS_PER_TOKEN // 21 // len(lines))
        return Reply(content="\n".join(line + filler for line in lines))

    return respond


async def test_each_stage_asks_for_a_budget_learned_from_its_answers(store: Store) -> None:
    add_rows(store, SEEDS)
    with ChatServer() as server:
        summary = await synthesize(store, settings_for(server, concurrency=1))
    assert summary.stages == {"generated": 24}
    asked = {
        stage: [b["max_tokens"] for b in server.bodies if detect_stage(b) == stage]
        for stage in ("intake_form", "cbt_technique", "cbt_plan", "dialogue_script")
    }
    assert all(first == 1024 for first, *_ in asked.values())  # nothing seen yet
    # Then the technique (a short JSON) asks for a few tokens, never the 8,192 maximum.
    assert max(asked["cbt_technique"][1:]) <= 100
    assert max(asked["dialogue_script"][1:]) < 1024


async def test_an_answer_cut_by_a_small_budget_is_asked_again_with_more(store: Store) -> None:
    add_rows(store, SEEDS[:2])
    with ChatServer(long_dialogue(2000)) as server:
        summary = await synthesize(store, settings_for(server, concurrency=1))
    assert summary.stages == {"generated": 8}
    dialogue_budgets = [
        b["max_tokens"] for b in server.bodies if detect_stage(b) == "dialogue_script"
    ]
    # Cut at 1,024, asked again with 4,096; the next record asks for enough at once.
    assert dialogue_budgets[:2] == [1024, 4096]
    assert len(dialogue_budgets) == 3 and dialogue_budgets[2] >= 2048
    assert summary.retries == 1
    text = store.record(1).text(Stage.DIALOGUE)
    assert "Let's stop here" in text  # the whole answer (its last turn), not the cut one


async def test_a_cut_at_the_stage_maximum_is_passed_on_and_never_cached(store: Store) -> None:
    with ChatServer(long_dialogue(2000)) as server:
        settings = settings_for(server, max_tokens=600)
        backend = make_backend(settings)
        synthesizer = Synthesizer(store, backend, settings)
        usage = _Usage()
        prompt = "<cbt_plan>1. Step</cbt_plan> <client_attitude>neutral</client_attitude>"
        for _ in range(2):
            await synthesizer.call(
                [{"role": "user", "content": prompt}], kind="dialogue", schema=None, usage=usage
            )
        await backend.aclose()
    assert [b["max_tokens"] for b in server.bodies] == [600, 600]  # no retry; no cache hit
    assert usage.finish_reason == "length"
    assert synthesizer.summary.cache_hits == 0


async def test_without_budgets_every_call_asks_for_the_maximum(store: Store) -> None:
    add_rows(store, SEEDS[:1])
    with ChatServer() as server:
        await synthesize(store, settings_for(server, token_budgets=False))
    assert {b["max_tokens"] for b in server.bodies} == {8192}


async def test_groq_gpt_oss_gets_strict_structured_output_others_best_effort(
    store: Store,
) -> None:
    add_rows(store, SEEDS[:2])
    with ChatServer() as server:
        await synthesize(store, settings_for(server, "groq", model="openai/gpt-oss-120b"), limit=1)
        await synthesize(store, settings_for(server, "groq", model="qwen/qwen3-32b"), limit=1)
    strict = [
        b["response_format"]["json_schema"]["strict"]
        for b in server.bodies
        if detect_stage(b) == "cbt_technique"
    ]
    assert strict == [True, False]
    schema = server.bodies[1]["response_format"]["json_schema"]["schema"]
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == set(schema["properties"])


@pytest.mark.parametrize(
    ("model", "replacement", "date"),
    [
        ("llama3-70b-8192", "openai/gpt-oss-120b", "2025-08-30"),
        ("llama-3.3-70b-versatile", "openai/gpt-oss-120b", "2026-08-16"),
        ("llama-3.1-8b-instant", "openai/gpt-oss-20b", "2026-08-16"),
    ],
)
def test_retired_groq_models_name_their_replacement(
    model: str, replacement: str, date: str
) -> None:
    settings = SynthSettings(backend=BackendName.GROQ, model=model, api_key=SecretStr("k"))
    with pytest.raises(BackendConfigError, match=f"shut down {model} on {date}.*{replacement}"):
        make_backend(settings)
    check_groq_model(model, today=datetime.date(2025, 1, 1))  # before the shutdown: fine


def test_the_default_groq_model_is_gpt_oss_120b() -> None:
    assert SynthSettings(backend=BackendName.GROQ).model_id == "openai/gpt-oss-120b"


def test_the_loopback_server_enforces_a_short_bucket_charging_max_tokens() -> None:
    """The benchmarks' provider: prompt + `max_tokens` charged, a bucket of `bucket_s` seconds."""
    import openai

    with ChatServer(tpm=6000, bucket_s=10.0, charge_max_tokens=True) as server:
        client = openai.OpenAI(api_key="x", base_url=server.openai_base_url, max_retries=0)
        messages = [{"role": "user", "content": "hello"}]
        client.chat.completions.create(model="m", messages=messages, max_tokens=600)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError) as refused:
            client.chat.completions.create(model="m", messages=messages, max_tokens=600)  # type: ignore[arg-type]
        client.close()
    assert server.admitted[0][1] == 1 + 600  # "hello" is one token, plus the reserve
    headers = refused.value.response.headers
    assert int(headers["x-ratelimit-remaining-tokens"]) < 600
    assert float(headers["retry-after"]) > 0
