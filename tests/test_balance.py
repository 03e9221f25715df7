"""`studio synth --balance`: a ranked top three, the highest-ranked technique under its share."""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import Any

import pytest
from pydantic import SecretStr

from studio.cbt.techniques import TECHNIQUES
from studio.errors import BadInputError
from studio.ingest.load import add_rows
from studio.model import BackendName, Seed, Stage, StageStatus
from studio.store import Store
from studio.store.balance import technique_choice
from studio.synth import Synthesizer, SynthSettings, make_backend
from studio.synth.balance import TechniqueBalancer, target_shares
from studio.synth.chain import RANKED_NOTE, read_ranking
from tests.chat_server import ChatServer, Reply, cbt_reply, detect_stage

FAVOURITE = "Evidence-Based Questioning"
SEEDS = [
    Seed(f"persona {n}", f"Nobody will ever hire me ({n}).", ("Labeling",), ()) for n in range(24)
]


def prefers_one(body: dict[str, Any]) -> Reply:
    """A server that always ranks Evidence-Based Questioning first (the CACTUS skew); the two
    after it go round the other eleven, by the client's number."""
    if detect_stage(body) != "cbt_technique":
        return cbt_reply(body)
    user = str(body["messages"][-1]["content"])
    if RANKED_NOTE not in user:
        return Reply(content=json.dumps({"technique": FAVOURITE, "rationale": "It fits."}))
    others = [t for t in TECHNIQUES if t != FAVOURITE]
    number = int(re.findall(r"Nobody will ever hire me \((\d+)\)", user)[-1])
    ranking = [FAVOURITE, others[number % 11], others[(number + 1) % 11]]
    answer = dict(zip(("first", "second", "third"), ranking, strict=True))
    return Reply(content=json.dumps({**answer, "rationale": "They fit."}))


async def run(
    store: Store,
    server: ChatServer,
    *,
    balance: bool,
    concurrency: int = 1,
    target: str | None = None,
) -> None:
    """One record at a time by default: the order of choices, and so the spread, is fixed."""
    settings = SynthSettings(
        backend=BackendName.OPENAI,
        model="m",
        base_url=server.openai_base_url,
        api_key=SecretStr("k"),
        concurrency=concurrency,
        max_attempts=2,
        timeout_s=10.0,
        balance=balance,
        balance_target=target,
    ).validate()
    backend = make_backend(settings)
    try:
        await Synthesizer(store, backend, settings).run()
    finally:
        await backend.aclose()


def techniques(store: Store) -> Counter[str]:
    return Counter(r.technique for r in store.records())


async def test_balance_reaches_an_even_spread_on_a_server_that_prefers_one(store: Store) -> None:
    add_rows(store, SEEDS)
    with ChatServer(prefers_one) as server:
        await run(store, server, balance=True)
        body = next(b for b in server.bodies if RANKED_NOTE in b["messages"][-1]["content"])
    counts = techniques(store)
    assert sum(counts.values()) == 24
    # An even share is 2 of 24 per technique, and the run reaches it exactly: the favourite no
    # longer takes the run (it takes every record without --balance, below).
    assert counts == dict.fromkeys(TECHNIQUES, 2)
    assert body["response_format"]["json_schema"]["schema"]["properties"]["first"]["enum"] == list(
        TECHNIQUES
    )
    # The ranking and the choice are stored with the stage.
    record = next(store.records())
    choice = technique_choice(store, record.id)
    assert choice is not None
    ranking, chosen = choice
    assert ranking[0] == FAVOURITE and chosen == record.text(Stage.CBT_TECHNIQUE)
    assert chosen in ranking
    assert record.stages[Stage.CBT_TECHNIQUE].template_version == "cbt_technique@1+ranked"


async def test_without_balance_the_favourite_takes_every_record(store: Store) -> None:
    add_rows(store, SEEDS[:6])
    with ChatServer(prefers_one) as server:
        await run(store, server, balance=False)
    assert techniques(store) == Counter({FAVOURITE: 6})


async def test_an_answer_without_a_ranking_is_invalid_with_the_raw_text(store: Store) -> None:
    add_rows(store, SEEDS[:1])

    def single(body: dict[str, Any]) -> Reply:
        if detect_stage(body) == "cbt_technique":
            return Reply(content=json.dumps({"technique": FAVOURITE, "rationale": "x"}))
        return cbt_reply(body)

    with ChatServer(single) as server:
        await run(store, server, balance=True)
    view = next(store.records()).stages[Stage.CBT_TECHNIQUE]
    assert view.status is StageStatus.INVALID
    assert view.error == "no ranked top three of the twelve techniques"
    assert FAVOURITE in (view.original_text or "")


def test_the_balancer_and_the_ranking_reader() -> None:
    balancer = TechniqueBalancer(dict.fromkeys(TECHNIQUES, 0) | {FAVOURITE: 5})
    assert balancer.choose((FAVOURITE, "Decatastrophizing", "Reality Testing")) == (
        "Decatastrophizing"
    )
    full = TechniqueBalancer(dict.fromkeys(TECHNIQUES, 3))
    # All three at their share: the first is taken.
    assert full.choose((FAVOURITE, "Decatastrophizing", "Reality Testing")) == FAVOURITE
    assert read_ranking('{"first": "decatastrophizing", "second": "Reality Testing",'
                        ' "third": "Behavior Experiment", "rationale": ""}') == (
        "Decatastrophizing", "Reality Testing", "Behavior Experiment")  # fmt: skip
    assert read_ranking('{"first": "Reality Testing", "second": "Reality Testing",'
                        ' "third": "Behavior Experiment"}') is None  # fmt: skip
    assert read_ranking("Reality Testing") is None


def test_balance_from_the_command_line_or_the_config(tmp_path: Any, monkeypatch: Any) -> None:
    from studio.commands import synth as synth_command_module

    seen: list[SynthSettings] = []
    monkeypatch.setattr(synth_command_module, "_synth", lambda db, limit, s: seen.append(s))
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    from click.testing import CliRunner

    from studio.cli import cli

    Store(tmp_path / "s.db").close()  # synth refuses a database that does not exist
    base = ["synth", "--db", str(tmp_path / "s.db"), "--backend", "openai", "--model", "m"]
    config = tmp_path / "studio.toml"
    config.write_text("[synth]\nbalance = true\n")
    for extra in ([], ["--balance"], ["--config", str(config)]):
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == 0, result.output
    assert [s.balance for s in seen] == [False, True, True]


async def test_balance_reaches_a_given_spread_on_a_server_that_prefers_one(store: Store) -> None:
    add_rows(
        store,
        [
            Seed(f"persona {n}", f"Nobody will ever hire me ({n}).", ("Labeling",), ())
            for n in range(50)
        ],
    )
    with ChatServer(prefers_one) as server:
        await run(store, server, balance=True, target=f"{FAVOURITE}=0.3,reality testing=0.1")
    counts = techniques(store)
    # 30% and 10% of 50 records; the other ten share the remaining 60% evenly, 3 each. Each lands
    # within one record of its target (without a target the favourite takes all 50): a technique
    # can only be chosen when the server ranks it, so the last records may tip one over.
    target = dict.fromkeys(TECHNIQUES, 3) | {FAVOURITE: 15, "Reality Testing": 5}
    assert sum(counts.values()) == 50
    assert all(abs(counts[t] - target[t]) <= 1 for t in TECHNIQUES), counts
    assert counts[FAVOURITE] in (15, 16) and counts["Reality Testing"] in (4, 5, 6)


def test_a_balance_target_is_read_strictly() -> None:
    shares = target_shares("Evidence-Based Questioning=0.3, Reality Testing=0.1")
    assert shares is not None
    assert shares[FAVOURITE] == 0.3 and shares["Reality Testing"] == 0.1
    assert shares["Decatastrophizing"] == pytest.approx(0.06)
    assert target_shares("") is None
    for bad, reason in [
        ("Mind Reading=0.2", "one of the twelve techniques"),
        ("Reality Testing", "expected Technique=share"),
        ("Reality Testing=lots", "not a number"),
        ("Reality Testing=1.5", "from 0 to 1"),
        ("Reality Testing=0.6,Decatastrophizing=0.6", "add up to 1.2, more than 1"),
        ("Reality Testing=0.1,reality testing=0.2", "named twice"),
    ]:
        with pytest.raises(BadInputError, match=reason):
            target_shares(bad)


def test_a_balance_target_from_the_command_line_or_the_config(
    tmp_path: Any, monkeypatch: Any
) -> None:
    from click.testing import CliRunner

    from studio.cli import cli
    from studio.commands import synth as synth_command_module

    seen: list[SynthSettings] = []
    monkeypatch.setattr(synth_command_module, "_synth", lambda db, limit, s: seen.append(s))
    monkeypatch.setenv("OPENAI_API_KEY", "k")
    Store(tmp_path / "s.db").close()
    base = ["synth", "--db", str(tmp_path / "s.db"), "--backend", "openai", "--model", "m"]
    config = tmp_path / "studio.toml"
    config.write_text('[synth]\nbalance_target = "Reality Testing=0.5"\n')
    for extra in (["--balance-target", "Reality Testing=0.2"], ["--config", str(config)]):
        result = CliRunner().invoke(cli, [*base, *extra])
        assert result.exit_code == 0, result.output
    # A target turns balance on by itself.
    assert [(s.balance, s.balance_target) for s in seen] == [
        (True, "Reality Testing=0.2"),
        (True, "Reality Testing=0.5"),
    ]
    result = CliRunner().invoke(cli, [*base, "--balance-target", "Mind Reading=0.2"])
    assert result.exit_code != 0
    assert "balance target 'Mind Reading=0.2'" in result.output
