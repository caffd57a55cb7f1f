"""A logger that kills its own process with SIGKILL, as the OOM killer would: the worker dies mid-step,
with no chance to clean up. Through the logger contract, so that the run under it is a real lrexp run.
How often it has killed a job is kept in that job's directory (``kills``), which survives the process."""

from __future__ import annotations

import os
import signal
from collections.abc import Sequence

from lrexp.loggers import Logger, RunInfo
from lrexp.record import STEP, Row

KILLS_FILE = "kills"


class KillerLogger(Logger):
    def __init__(self, step: int, once: Sequence[int], always: Sequence[int], *, run: RunInfo) -> None:
        super().__init__(run=run)
        self.step = step
        self.times = 1 if run.job_num in once else 1_000 if run.job_num in always else 0

    def log_row(self, row: Row) -> None:
        if row[STEP] < self.step:
            return
        path = self.run_info.run_dir / KILLS_FILE
        kills = int(path.read_text()) if path.exists() else 0
        if kills < self.times:
            path.write_text(str(kills + 1))
            os.kill(os.getpid(), signal.SIGKILL)
