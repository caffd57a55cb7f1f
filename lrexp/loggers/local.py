"""The local logger: plots/*.png drawn from the run directory once the record is complete."""

from __future__ import annotations

from pathlib import Path

from lrexp.loggers import Logger, RunInfo
from lrexp.record import Status, Summary


class LocalLogger(Logger):
    def __init__(self, *, run: RunInfo, plots: bool, dpi: int) -> None:
        super().__init__(run=run)
        self.plots, self.dpi = plots, dpi

    def finish(self, summary: Summary, run_dir: Path) -> None:
        if self.plots and summary.status is not Status.INTERRUPTED:  # preempted jobs have seconds to exit
            from lrexp.plots import draw_run_plots  # matplotlib only where used

            draw_run_plots(run_dir, dpi=self.dpi)
