"""What Start would train on: the accepted records, their examples and token lengths.

Summarized again in a thread whenever the form's base model, context or max length change (after
a pause in the typing: a local model's tokenizer is loaded for it).
"""

from __future__ import annotations

from textual import work
from textual.timer import Timer
from textual.widgets import Static
from textual.worker import Worker, get_current_worker

from studio.store import RecordView, Store
from studio.train.recipes import RECIPES, RunConfig
from studio.tui.messages import DatasetSummarized
from studio.tui.screens.base import report_worker_failure
from studio.tui.store_lane import StoreLane
from studio.tui.training import DatasetSummary, RecipeForm, summarize_dataset
from studio.tui.training_text import summary_text

#: Seconds of quiet typing before the dataset is summarized again.
SUMMARY_DELAY_S = 0.6

SummaryKey = tuple[str, str, int | None]
"""(base model, context, max length): what a summary depends on."""


def accepted_records(store: Store) -> list[RecordView]:
    return list(store.accepted_records())


def summary_key(form: RecipeForm) -> SummaryKey:
    raw = form.values.get("max_length", "").strip()
    max_length = int(raw) if raw.isdigit() and int(raw) > 0 else None
    return (form.base_model.strip(), form.context, max_length)


class DatasetSummaryView(Static):
    """The summary's text; `summary` is the newest one for the form as it is."""

    def __init__(self, lane: StoreLane, *, id: str | None = None) -> None:
        super().__init__("Reading the accepted records…", id=id)
        self.lane = lane
        self.summary: DatasetSummary | None = None
        self.summary_key: SummaryKey | None = None
        """What the summary on screen (or being computed) is for."""
        self._timer: Timer | None = None

    def summarize_soon(self, form: RecipeForm, *, at_once: bool = False) -> None:
        """Summarize the dataset again if what it depends on changed (after a typing pause)."""
        key = summary_key(form)
        if key == self.summary_key:
            return
        self.summary_key = key
        if self._timer is not None:
            self._timer.stop()
        config = RECIPES.get(form.preset, RECIPES["seed"])
        if at_once:
            self.summarize(key, config)
        else:
            self._timer = self.set_timer(SUMMARY_DELAY_S, lambda: self.summarize(key, config))

    def reload(self, form: RecipeForm) -> None:
        """Count the records again (reviewers accept more while the pane is open)."""
        self.summary_key = None
        self.summarize_soon(form, at_once=True)

    @work(
        thread=True,
        group="training-dataset",
        exclusive=True,
        exit_on_error=False,
        description="Summarize the training dataset",
    )
    def summarize(self, key: SummaryKey, config: RunConfig) -> None:
        worker = get_current_worker()
        records = self.lane.submit(accepted_records).result()
        if worker.is_cancelled:
            return
        base_model, context, max_length = key
        summary = summarize_dataset(
            records, base_model=base_model, context=context, max_length=max_length, config=config
        )
        if not worker.is_cancelled:
            self.post_message(DatasetSummarized(key, summary))

    def on_dataset_summarized(self, message: DatasetSummarized) -> None:
        if message.key != self.summary_key:
            return  # the form changed meanwhile; a newer summary is on its way
        self.summary = message.summary
        self.update(summary_text(message.summary, message.key[2]))

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        report_worker_failure(self, event)
