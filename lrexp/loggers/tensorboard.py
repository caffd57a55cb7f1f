"""TensorBoard: every row's numbers as scalars at their step, the config as text, the run's hyperparameters
and final metrics in the HPARAMS tab. ``torch.utils.tensorboard`` (needs the ``tensorboard`` package:
``pip install 'lrexp[tensorboard]'``), imported in start() only. Never costs a run: a failure is one
warning and the logger stops (lrexp.loggers.Logger.guarded).

    tensorboard --logdir multirun/DATE/TIME      # every job of a sweep, side by side
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import yaml

from lrexp.loggers import Logger, RunInfo
from lrexp.record import STEP, Row, Status, Summary


class TensorBoardLogger(Logger):
    name = "TensorBoard"

    def __init__(self, *, run: RunInfo, log_dir: str | None) -> None:
        super().__init__(run=run)
        self.log_dir = Path(log_dir) if log_dir else Path(run.run_dir) / "tensorboard"
        self.writer: Any = None

    def start(self, step: int = 0) -> None:
        def open_writer() -> Any:
            from torch.utils.tensorboard import SummaryWriter

            # A resumed run logs the steps after its checkpoint again: purge_step drops the first launch's.
            writer = SummaryWriter(str(self.log_dir), purge_step=step or None)
            if not step:
                writer.add_text("config", "```\n" + yaml.safe_dump(self.run_info.config, sort_keys=False) + "```")
            return writer

        self.writer = self.guarded("opening the event file", open_writer)

    def log_row(self, row: Row) -> None:
        if self.writer is None:
            return

        def add() -> None:
            for key, value in row.items():
                if key != STEP and value is not None and math.isfinite(value):
                    self.writer.add_scalar(key, value, global_step=row[STEP])

        self.guarded("logging a row", add)

    def finish(self, summary: Summary, run_dir: Path) -> None:
        writer, self.writer = self.writer, None
        if writer is None:
            return
        hparams = {**self.run_info.choices, "seed": summary.seed, "peak_lr": summary.peak_lr, "status": summary.status.value}
        finals = {f"final/{k}": v for k, v in summary.final.items() if v is not None and math.isfinite(v)}
        if summary.status is not Status.INTERRUPTED:  # a preempted job has seconds; the resumed run adds them
            self.guarded(
                "writing the hyperparameters", writer.add_hparams, {k: v for k, v in hparams.items() if v is not None}, finals, run_name="."
            )
        self.guarded("closing the event file", writer.close)

    def abort(self, error: str) -> None:
        writer, self.writer = self.writer, None
        if writer is not None:
            self.guarded("closing the event file", writer.close)
