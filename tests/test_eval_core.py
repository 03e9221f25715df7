"""The evaluation's pure parts: PANAS answers, intervals, client files, the counselor's prompt."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from studio.cbt.dialogue import Role, Turn
from studio.errors import BadInputError
from studio.evaluate.clients import EvalClient, file_clients, parse_attitudes
from studio.evaluate.engine import Counselor, counselor_messages
from studio.evaluate.panas import FEELINGS, PanasError, affect, parse_panas
from studio.evaluate.stats import mean_ci
from studio.model import BackendName
from studio.synth.settings import SynthSettings
from studio.train.adapter import AdapterInfo, trained_messages
from studio.train.dataset import SYSTEM_PROMPT


def test_panas_answer_is_read_strictly() -> None:
    ratings = dict.fromkeys(FEELINGS, 3)
    assert parse_panas("```json\n" + json.dumps(ratings) + "\n```") == ratings
    assert affect(ratings) == (30, 30)
    with pytest.raises(PanasError, match="no rating for afraid"):
        parse_panas(json.dumps({k: v for k, v in ratings.items() if k != "afraid"}))
    with pytest.raises(PanasError, match="upset: 6"):
        parse_panas(json.dumps(ratings | {"upset": 6}))
    with pytest.raises(PanasError, match="not JSON"):
        parse_panas("I feel fine.")


def test_mean_ci_uses_students_t() -> None:
    assert mean_ci([]).mean is None
    one = mean_ci([4.0])
    assert (one.mean, one.low, one.n) == (4.0, None, 1)
    two = mean_ci([2.0, 4.0])  # sd √2, se 1, t(1) = 12.706
    assert two.mean == 3.0 and two.low == pytest.approx(3 - 12.706)
    assert two.to_json() == {"mean": 3.0, "ci95": [-9.706, 15.706], "n": 2}


def test_attitudes_and_client_files_say_what_is_wrong(tmp_path: Path) -> None:
    assert parse_attitudes(None) == ("positive", "neutral", "negative")
    assert parse_attitudes("negative, positive") == ("negative", "positive")
    with pytest.raises(BadInputError, match="unknown attitude cheerful"):
        parse_attitudes("positive,cheerful")
    path = tmp_path / "clients.json"
    path.write_text(
        json.dumps([{"AI_client.intake_form": "Name: Ann", "AI_client.attitude": "sad"}])
    )
    with pytest.raises(BadInputError, match=r"entry 0: AI_client.attitude 'sad'"):
        file_clients(path)
    path.write_text("{not json")
    with pytest.raises(BadInputError, match="not JSON"):
        file_clients(path)
    entry = {
        "AI_client": {
            "intake_form": "Name: Ann",
            "attitude": "neutral",
            "dialogue_history_init": [
                {"role": "counselor", "message": "Hello."},
                {"role": "client", "message": "Hi."},
            ],
        }
    }
    path.write_text(json.dumps([entry, entry | {}]))
    (client, _) = file_clients(path)
    assert client.opening == (Turn(Role.COUNSELOR, "Hello."), Turn(Role.CLIENT, "Hi."))
    assert file_clients(path, ("positive",)) == []


def test_an_adapter_counselor_is_prompted_as_it_was_trained() -> None:
    client = EvalClient("file:0", "Name: Ann", "neutral", (), technique="T", plan="1. Step")
    turns = [Turn(Role.COUNSELOR, "Hello."), Turn(Role.CLIENT, "Hi."), Turn(Role.CLIENT, "Um.")]
    settings = SynthSettings(backend=BackendName.LOCAL, model="m", adapter="a")
    history = Counselor(settings, "run 1", "adapter", context="history")
    messages = counselor_messages(history, client, turns)
    # Counselor → assistant, client → user, consecutive turns merged (training's format).
    assert messages[1:] == [
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Hi.\nUm."},
    ]
    info = AdapterInfo(system_prompt="TRAINED", context="history", chat_template="model")
    assert trained_messages(info, messages)[0] == {"role": "system", "content": "TRAINED"}
    plan = Counselor(settings, "run 1", "adapter", context="plan")
    system = trained_messages(
        AdapterInfo("TRAINED", "plan", "model"), counselor_messages(plan, client, turns)
    )[0]["content"]
    assert (
        system.startswith("TRAINED\n\nClient intake:\nName: Ann")
        and "Counseling plan:\n1." in system
    )
    base = Counselor(SynthSettings(backend=BackendName.LOCAL, model="m"), "base", "base")
    assert counselor_messages(base, client, turns)[0]["content"] == SYSTEM_PROMPT


AGENTS = ("--client-backend", "openai", "--client-base-url", "http://127.0.0.1:9/v1",
          "--client-model", "c", "--judge-backend", "openai",
          "--judge-base-url", "http://127.0.0.1:9/v1", "--judge-model", "j")  # fmt: skip


def test_studio_eval_bad_input_is_one_line(run, store) -> None:
    result = run("eval", *AGENTS)
    assert result.exit_code == 2 and "name the counselor: --run N, or --model" in result.output
    result = run("eval", "--run", "7")
    assert result.exit_code == 2 and "the client simulator (--client-backend" in result.output
    assert "no Groq API key" in result.output  # the config's [synth] default: groq
    result = run("eval")
    assert result.exit_code == 2 and "name the counselor: --run N, or --model" in result.output
    result = run("eval", "--run", "7", *AGENTS)
    assert result.exit_code == 2 and "--run 7: no such training run" in result.output
    result = run("eval", "--model", "m", "--attitudes", "happy", *AGENTS)
    assert result.exit_code == 2 and "unknown attitude happy" in result.output
    result = run(
        "eval", "--model", "m", "--backend", "local", *AGENTS
    )  # held-out needs a run's split
    assert result.exit_code == 2 and "--clients held-out needs --run N" in result.output
    result = run("chat", "--run", "3")
    assert result.exit_code == 2 and "--run 3: no such training run" in result.output


def test_agents_on_the_same_model_share_one_rate_limiter(store) -> None:
    from studio.evaluate.engine import EvalPlan, Evaluator
    from studio.evaluate.storage import find_or_create_evaluation
    from studio.synth.backends import ChatRequest, ChatResponse

    class Idle:
        name = BackendName.OPENAI
        model = "m"
        supports_json_schema = False

        async def complete(self, request: ChatRequest) -> ChatResponse:
            raise AssertionError("no call is made")

        async def aclose(self) -> None:
            return None

    def agent(model: str) -> SynthSettings:
        return SynthSettings(
            backend=BackendName.OPENAI, model=model, base_url="http://127.0.0.1:9/v1"
        )

    evaluation = find_or_create_evaluation(
        store, key="k", run_id=None, label="x", counselor={}, settings={}
    )
    counselor = Counselor(agent("teacher"), "teacher", "api")
    backends = (Idle(), Idle(), Idle())
    same = Evaluator(store, evaluation, EvalPlan(()), counselor, backends, (agent("a"), agent("a")))
    assert same.client.limiter is same.judge.limiter
    assert same.speaker.limiter is not same.client.limiter
    teacher = Evaluator(
        store, evaluation, EvalPlan(()), counselor, backends, (agent("teacher"), agent("b"))
    )
    assert teacher.client.limiter is teacher.speaker.limiter
    assert teacher.judge.limiter is not teacher.client.limiter


def test_an_api_counselor_is_evaluated_the_same_way(run, tmp_path: Path) -> None:
    """The teacher (any chat-completions model) as the counselor: no torch needed."""
    from studio.store import Store
    from tests.chat_server import ChatServer
    from tests.test_eval import EvalResponder, clients_file

    Store(tmp_path / "studio.db").close()
    responder = EvalResponder()
    with ChatServer(responder) as server:
        url = server.openai_base_url
        result = run(
            "eval", "--backend", "openai", "--base-url", url, "--model", "teacher",
            "--clients", str(clients_file(tmp_path / "clients.json")), "--attitudes", "negative",
            "--max-exchanges", "2", "--min-turns", "2", "--client-backend", "openai",
            "--client-base-url", url, "--client-model", "c", "--judge-backend", "openai",
            "--judge-base-url", url, "--judge-model", "j", "--json",
        )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["label"] == "openai:teacher" and summary["run"] is None
    assert summary["counselor"]["kind"] == "api" and summary["sessions"] == 2
    assert list(summary["per_attitude"]) == ["negative"]
    # The counselor got training's format: the system prompt, then the dialogue as chat turns.
    counselor = [b for b in server.bodies if b["model"] == "teacher"]
    assert len(counselor) == 2 * 2
    assert counselor[0]["messages"][0] == {"role": "system", "content": SYSTEM_PROMPT}
    assert [m["role"] for m in counselor[0]["messages"][1:]] == ["assistant", "user"]


def test_each_evaluated_run_has_a_one_line_summary(store) -> None:
    from studio.evaluate.report import run_summaries
    from studio.evaluate.storage import (
        FINISHED,
        SessionRow,
        find_or_create_evaluation,
        save_session,
    )
    from studio.store.runs import create_run

    run_id = create_run(
        store, config={}, dataset_hash="h", n_records=1, n_examples=1, reviewers=[], output_dir="x"
    )
    evaluation = find_or_create_evaluation(
        store, key="k", run_id=run_id, label="run", counselor={"kind": "adapter"}, settings={}
    )
    for n, score in enumerate((3.0, 5.0)):
        save_session(
            store,
            SessionRow(evaluation.id, f"file:{n}", "neutral", FINISHED, ctrs_mean=score,
                       positive_change=2.0, negative_change=-4.0),
        )  # fmt: skip
    assert run_summaries(store) == {
        run_id: "CTRS 4.00 [-8.71, 16.71] · PANAS +2.0 / -4.0 · 2 sessions"
    }
