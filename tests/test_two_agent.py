"""Two-agent mode the CACTUS way (coding-groot/cactus `src/inference.py`): a fixed opening
exchange, the client ending the session with `[/END]` (not before a minimum number of turns), a
turn limit, and unusable agent turns asked again with a nudge, never answered from the cache."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import pytest

from studio.cbt.dialogue import Role, parse_dialogue
from studio.ingest.load import add_rows
from studio.model import Seed, Stage, StageStatus
from studio.store import Store
from studio.synth import SynthSettings
from studio.synth.chain import intake_summary
from tests.chat_server import ChatServer, Reply, _last_data, cbt_reply, detect_stage
from tests.test_synth import settings_for, synthesize

SEED = Seed("A teacher.", "My class will fall apart if I take a day off.", ("Catastrophizing",))
#: A hang guard, not a timing assertion: the old loop spun forever on an empty answer.
HANG_GUARD_S = 300


async def run_two_agent(store: Store, server: ChatServer, **settings: Any) -> Any:
    values = {"mode": "two-agent"} | settings
    return await asyncio.wait_for(
        synthesize(store, settings_for(server, **values)), timeout=HANG_GUARD_S
    )


def agent_bodies(server: ChatServer, agent: str) -> list[dict[str, Any]]:
    return [b for b in server.bodies if detect_stage(b) == agent]


async def test_a_session_runs_the_cactus_protocol(store: Store) -> None:
    add_rows(store, [SEED])
    with ChatServer() as server:
        await run_two_agent(store, server)
    record = store.record(1)
    view = record.stages[Stage.DIALOGUE]
    assert view.status is StageStatus.GENERATED, view.error
    turns = parse_dialogue(record.text(Stage.DIALOGUE)).turns
    # The fixed opening exchange: the counselor greets the client by name, the client answers
    # with the seed's thought.
    assert turns[0].text.startswith("Hello Alex, thank you for coming in today.")
    assert turns[1].role is Role.CLIENT and SEED.thought in turns[1].text
    # The client ended with [/END] (the chat server's client does so after 9 client turns), not
    # before the default minimum of 20; the counselor closed the session in one more turn.
    assert len(turns) == 21
    assert turns[-2].text == "I think I can look at it differently now."
    assert turns[-1].role is Role.COUNSELOR and "Thank you for today" in turns[-1].text
    assert "[/END]" not in record.text(Stage.DIALOGUE)
    client = agent_bodies(server, "client_agent")[0]["messages"]
    system, user = client[0]["content"], client[-1]["content"]
    assert "<intake_form>" in system and "Presenting Problem" in system
    assert "<client_attitude>" in system and "[/END]" in system and "at least 20 turns" in system
    assert "<dialogue_history>" in user
    counselor = agent_bodies(server, "counselor_agent")[0]["messages"][0]["content"]
    summary = _last_data(counselor, "intake_summary")
    assert "Name: Alex Morgan" in summary and "Reason for Seeking Counseling" in summary
    assert "Presenting Problem" not in summary and "Past History" not in summary
    assert "<cbt_plan>" in counselor


async def test_the_client_cannot_end_before_the_minimum(store: Store) -> None:
    add_rows(store, [SEED])

    def respond(body: dict[str, Any]) -> Reply:
        if detect_stage(body) == "client_agent":
            return Reply(content="I am done already. [/END]")
        return cbt_reply(body)

    with ChatServer(respond) as server:
        await run_two_agent(store, server, agent_min_turns=8, min_turns=4)
    turns = parse_dialogue(store.record(1).text(Stage.DIALOGUE)).turns
    # opening 2 + (counselor, client) x3 = 8 turns once the client may end, then the closing turn
    assert len(turns) == 9
    assert store.stage(1, Stage.DIALOGUE).status is StageStatus.GENERATED


async def test_a_session_stops_at_the_turn_limit_with_a_closing_turn(store: Store) -> None:
    add_rows(store, [SEED])

    def respond(body: dict[str, Any]) -> Reply:
        if detect_stage(body) == "client_agent":
            return Reply(content="Tell me more.")  # never ends
        return cbt_reply(body)

    with ChatServer(respond) as server:
        await run_two_agent(store, server, max_turns=12)
    turns = parse_dialogue(store.record(1).text(Stage.DIALOGUE)).turns
    assert len(turns) == 11 and turns[-1].role is Role.COUNSELOR
    assert "Thank you for today" in turns[-1].text


def flaky_agents(every: int = 3) -> Any:
    """Every `every`-th agent answer is unusable, cycling through the broken shapes."""
    count = itertools.count(1)
    broken = itertools.cycle(
        [
            "",
            "[END]",
            "Client:",
            "Counselor:",
            "Sure, I can do that.\nClient: Fine.",
            "Yes. Counselor: And you?",
        ]
    )

    def respond(body: dict[str, Any]) -> Reply:
        if detect_stage(body).endswith("_agent") and next(count) % every == 0:
            return Reply(content=next(broken))
        return cbt_reply(body)

    return respond


async def test_a_server_that_sometimes_answers_empty_still_finishes(store: Store) -> None:
    add_rows(store, [SEED, Seed("A nurse.", "I will make a fatal mistake.", ())])
    with ChatServer(flaky_agents()) as server:
        summary = await run_two_agent(store, server)
        nudged = [
            b
            for b in server.bodies
            if "Your previous answer could not be used" in b["messages"][-1]["content"]
        ]
    for record_id in (1, 2):
        view = store.stage(record_id, Stage.DIALOGUE)
        assert view.status is StageStatus.GENERATED, view.error
        text = view.original_text or ""
        assert "[END]" not in text and "\nCounselor: \n" not in text
    assert nudged and summary.stages == {"generated": 8}
    # Unusable answers never reach the cache, so nothing can replay them.
    cached = [r for (r,) in store.conn.execute("SELECT response FROM llm_cache")]
    assert "" not in cached and "[END]" not in cached and "Client:" not in cached


async def test_an_agent_that_never_answers_fails_the_stage_with_the_reason(store: Store) -> None:
    add_rows(store, [SEED])

    def empty_client(body: dict[str, Any]) -> Reply:
        return Reply(content="") if detect_stage(body) == "client_agent" else cbt_reply(body)

    with ChatServer(empty_client) as server:
        await run_two_agent(store, server)
        asked = len(agent_bodies(server, "client_agent"))
    view = store.stage(1, Stage.DIALOGUE)
    assert view.status is StageStatus.FAILED
    assert view.error.startswith("the client agent gave no usable turn after 3 tries")
    assert "empty Client turn" in view.error
    assert asked == 3
    # The next run asks again (a failed prompt is never answered from the cache) and finishes.
    with ChatServer() as server:
        await run_two_agent(store, server)
        assert agent_bodies(server, "client_agent")
    assert store.stage(1, Stage.DIALOGUE).status is StageStatus.GENERATED


async def test_the_client_may_use_another_model_and_backend(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GROQ_API_KEY", "client-key")
    add_rows(store, [SEED])
    with ChatServer() as server:
        await run_two_agent(
            store,
            server,
            client_backend="groq",
            client_model="client-model",
            client_base_url=server.groq_base_url,
        )
        models = {detect_stage(b): b["model"] for b in server.bodies}
    assert models["client_agent"] == "client-model"
    assert models["counselor_agent"] == "test-model" and models["intake_form"] == "test-model"
    assert store.stage(1, Stage.DIALOGUE).status is StageStatus.GENERATED


def test_client_settings_come_from_studio_toml_and_flags(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "studio.toml"
    config.write_text(
        '[synth]\nbackend = "openai"\nmodel = "counselor"\nbase_url = "http://x/v1"\n'
        'mode = "two-agent"\nclient_model = "client"\nagent_min_turns = 12\n',
        encoding="utf-8",
    )
    settings = SynthSettings.load(config).validate()
    client = settings.client_settings()
    assert (client.backend, client.model_id, client.base_url) == ("openai", "client", "http://x/v1")
    assert settings.agent_min_turns == 12
    monkeypatch.delenv("GROQ_API_KEY", raising=False)
    flags = SynthSettings.load(config, client_backend="groq", client_model=None)
    with pytest.raises(Exception, match="client agent: no Groq API key"):
        flags.validate()


def test_the_cli_takes_client_options(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from studio.cli import cli

    result = CliRunner().invoke(cli, ["synth", "--help"])
    assert "--client-model" in result.output and "--client-backend" in result.output


def test_the_counselor_sees_basic_information_and_reason_only() -> None:
    form = (
        "Name: Laura\nAge: 45\n\n2. Presenting Problem\nP\n\n3. Reason for Seeking Counseling\n"
        "R\n\n4. Past History\nH"
    )
    assert intake_summary(form) == "Name: Laura\nAge: 45\n\n3. Reason for Seeking Counseling\nR"
