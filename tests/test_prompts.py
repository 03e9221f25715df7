"""The prompts ask for what the CACTUS data holds (issue 9, section 5)."""

from __future__ import annotations

import re

from studio.cbt.checks import judge_answer
from studio.model import Stage
from studio.synth.templates import load_template


def test_the_presenting_problem_is_asked_for_in_the_clients_first_person() -> None:
    template = load_template("intake_form")
    system = template.system
    assert "first person" in system
    for aspect in ("when it started", "set it off", "developed since", "how often", "tried"):
        assert aspect in system, aspect
    example = template.user.split("--- EXAMPLE OUTPUT ---")[1].split("--- END OF EXAMPLE ---")[0]
    problem = example.split("2. Presenting Problem")[1].split("3. Reason")[0]
    assert re.match(r"\s*I have been", problem)
    assert judge_answer(Stage.INTAKE_FORM, example).ok  # the one-shot example passes the rule


def test_script_mode_has_the_crisis_guideline_of_the_counselor_agent() -> None:
    script = load_template("dialogue_script").system
    counselor = load_template("counselor_agent").system
    for words in ("harming themselves or others", "emergency services or a crisis line"):
        assert words in script and words in counselor


def test_the_one_shot_examples_pass_the_rule() -> None:
    plan = load_template("cbt_plan").user.split("--- EXAMPLE OUTPUT ---")[1]
    assert judge_answer(Stage.CBT_PLAN, plan.split("--- END OF EXAMPLE ---")[0]).ok
    script = load_template("dialogue_script").user.split("--- EXAMPLE OUTPUT ---")[1]
    dialogue = script.split("--- END OF EXAMPLE ---")[0]
    assert judge_answer(Stage.DIALOGUE, dialogue, min_turns=10).ok
