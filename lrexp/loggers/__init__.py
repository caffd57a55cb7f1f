"""Loggers: where a run's record goes besides the files every run writes (lrexp.record).

Chosen by the ``logger`` config group; each selected option is a node ``logger.<name>``. A logger must
never cost a training run: W&B problems become warnings, and the local record is written regardless.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping

from omegaconf import DictConfig

from lrexp.record import Row


class Logger:
    """The interface: every method is optional. Rows arrive at log intervals, never every step."""

    def start(self) -> None:
        """Once the run directory is accepted and the run is built, before the first step.

        A refused re-run (the directory holds another run) or a run that fails to build never gets
        here, so a logger that opens something outside the process (a W&B run) opens it only for a
        run that will train.
        """

    def log_row(self, row: Row) -> None:
        pass

    def summary_fields(self) -> Dict[str, Any]:
        """Fields this logger adds to summary.json (a W&B run's id and path, for instance)."""
        return {}

    def finish(self, summary: Dict[str, Any], run_dir: Path) -> None:
        pass

    def abort(self, error: str) -> None:
        """The run raised instead of finishing: close anything opened in start(), marked as failed."""


class LocalLogger(Logger):
    """Draws plots/*.png from the run directory once the record is complete."""

    def __init__(self, plots: bool = True, dpi: int = 110) -> None:
        self.plots, self.dpi = plots, dpi

    def finish(self, summary: Dict[str, Any], run_dir: Path) -> None:
        if self.plots and summary["status"] != "interrupted":  # preempted jobs have seconds to exit
            from lrexp.plots import draw_run_plots  # matplotlib only where used

            draw_run_plots(run_dir, dpi=self.dpi)


def build_loggers(node: DictConfig, run_info: Mapping[str, Any]) -> List[Logger]:
    """The loggers the config selects, local first (W&B uploads the plots local draws)."""
    loggers: List[Logger] = []
    if "local" in node:
        loggers.append(LocalLogger(**node.local))
    if "wandb" in node:
        from lrexp.loggers.wandb import WandbLogger  # wandb only where used

        loggers.append(WandbLogger(node.wandb, run_info))
    return loggers
