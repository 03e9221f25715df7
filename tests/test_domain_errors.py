"""The domain's refusals are `StudioError`s: the CLI's `handle_errors` is the one place that turns
each into one line and its exit code."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from studio.commands.common import handle_errors
from studio.errors import (
    CallFailed,
    ConflictError,
    EditConflict,
    FormInvalid,
    InvalidStage,
    NoBackend,
    RatingChanged,
    StageChanged,
    StudioError,
    UndoConflict,
)
from studio.store import EditConflict as StoreEditConflict
from studio.store.judging import RatingChanged as JudgingRatingChanged
from studio.store.review import InvalidStage as ReviewInvalidStage
from studio.store.review import UndoConflict as ReviewUndoConflict
from studio.store.synthesis import StageChanged as SynthesisStageChanged
from studio.synth.engine import CallFailed as EngineCallFailed
from studio.tui.regenerate import NoBackend as RegenerateNoBackend
from studio.tui.training import FormInvalid as TrainingFormInvalid

CASES: list[tuple[type[StudioError], int]] = [
    (EditConflict, 1),
    (UndoConflict, 1),
    (StageChanged, 1),
    (RatingChanged, 1),
    (InvalidStage, 2),
    (NoBackend, 2),
    (CallFailed, 1),
    (FormInvalid, 2),
]


@pytest.mark.parametrize(("error", "code"), CASES, ids=[e.__name__ for e, _ in CASES])
def test_each_domain_error_is_one_line_and_its_exit_code(
    error: type[StudioError], code: int
) -> None:
    @click.command()
    @handle_errors
    def command() -> None:
        if error is FormInvalid:  # one message per problem
            raise FormInvalid(["record 3: what happened"])
        raise error("record 3: what happened")

    result = CliRunner().invoke(command)
    assert result.exit_code == code
    assert result.output == "error: record 3: what happened\n"
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_the_old_homes_name_the_same_classes() -> None:
    assert StoreEditConflict is EditConflict
    assert ReviewUndoConflict is UndoConflict
    assert ReviewInvalidStage is InvalidStage
    assert SynthesisStageChanged is StageChanged
    assert JudgingRatingChanged is RatingChanged
    assert RegenerateNoBackend is NoBackend
    assert EngineCallFailed is CallFailed
    assert TrainingFormInvalid is FormInvalid


def test_conflicts_share_a_base_and_an_edit_conflict_is_still_a_value_error() -> None:
    assert all(
        issubclass(e, ConflictError) for e, code in CASES if code == 1 and e is not CallFailed
    )
    assert issubclass(EditConflict, ValueError)


def test_call_failed_keeps_its_reason_and_form_invalid_its_problems() -> None:
    assert CallFailed("429 after 6 tries", reason="rate_limit").reason == "rate_limit"
    assert CallFailed("boom").reason == "other"
    invalid = FormInvalid(["Base model: required", "Epochs: not a number"])
    assert invalid.problems == ["Base model: required", "Epochs: not a number"]
    assert str(invalid) == "Base model: required; Epochs: not a number"
    assert isinstance(invalid, ValueError)  # as it was before it joined the family
