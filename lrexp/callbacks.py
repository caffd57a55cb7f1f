"""Hydra callbacks: the comparison report written into the sweep directory when a multirun ends.

Hydra gives ``on_multirun_end`` only the config, not the jobs' results, so every job leaves its record
in its own directory and the report reads the sweep directory back. Hydra turns exceptions raised here
into warnings: a report problem never fails the sweep.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("lrexp")


class ComparisonReport(Callback):
    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from lrexp.report import write_report  # matplotlib only when a sweep has ended

        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            path = write_report([sweep_dir], sweep_dir)
        except ValueError as e:  # no run finished at all: say so, nothing to draw
            log.warning("no comparison report for %s: %s", sweep_dir, e)
            return
        log.info("comparison report: %s", path)
