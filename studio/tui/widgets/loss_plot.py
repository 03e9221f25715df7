"""A live loss plot: training loss per step, evaluation loss as points (textual-plotext)."""

from __future__ import annotations

from collections.abc import Iterable

from textual_plotext import PlotextPlot


class LossPlot(PlotextPlot):
    """Keeps its series in lists; new points only mark it stale, and a timer re-plots at most
    every `interval` seconds (a step event per optimizer step would otherwise re-plot per step).
    """

    DEFAULT_CSS = """
    LossPlot { min-height: 8; }
    """

    def __init__(self, *, interval: float = 0.5, id: str | None = None) -> None:
        super().__init__(id=id)
        self.interval = interval
        self.steps: list[int] = []
        """Steps with a training loss (the x of the line)."""
        self.losses: list[float] = []
        self.eval_steps: list[int] = []
        """Steps with an evaluation loss (the x of the points)."""
        self.eval_losses: list[float] = []
        self._stale = True

    def on_mount(self) -> None:
        super().on_mount()
        self.set_interval(self.interval, self._replot_if_stale)
        self.replot()

    def add(
        self,
        train: Iterable[tuple[int, float]] = (),
        evaluation: Iterable[tuple[int, float]] = (),
    ) -> None:
        """Append points; they are drawn on the next tick."""
        for step, loss in train:
            self.steps.append(step)
            self.losses.append(loss)
            self._stale = True
        for step, loss in evaluation:
            self.eval_steps.append(step)
            self.eval_losses.append(loss)
            self._stale = True

    def reset(
        self,
        train: Iterable[tuple[int, float]] = (),
        evaluation: Iterable[tuple[int, float]] = (),
    ) -> None:
        """Replace every point (another run is on screen) and draw at once."""
        self.steps.clear()
        self.losses.clear()
        self.eval_steps.clear()
        self.eval_losses.clear()
        self.add(train, evaluation)
        if self.is_mounted:
            self.replot()

    def _replot_if_stale(self) -> None:
        if self._stale:
            self.replot()

    def replot(self) -> None:
        self._stale = False
        plt = self.plt
        plt.clear_data()
        plt.title("Loss")
        plt.xlabel("step")
        if self.steps:
            plt.plot(self.steps, self.losses, label="train", marker="braille")
        if self.eval_steps:
            plt.scatter(self.eval_steps, self.eval_losses, label="eval", marker="dot")
        self.refresh()
