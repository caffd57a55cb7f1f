"""Hydra callbacks: the output directory checked before anything is written, and the comparison report
written into the sweep directory when a multirun ends.

Hydra gives ``on_multirun_end`` only the config, not the jobs' results, so every job leaves its record
in its own directory and the report reads the sweep directory back. Hydra turns exceptions raised here
into warnings: a report problem never fails the sweep (SystemExit, which is not an Exception, ends the
command).
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from lrexp.errors import ConfigError

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


class WritableOutput(Callback):
    """A run or sweep directory lrexp cannot write to is refused in one line, before Hydra creates it.

    Otherwise Hydra's mkdir (or the first log file) fails with a traceback, and in a sweep every job
    would fail the same way. The check writes nothing: it creates and removes a temporary file in the
    nearest folder that already exists (permission bits alone do not say it: root ignores them, and a
    read-only file system refuses everyone).
    """

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.check("hydra.sweep.dir", config.hydra.sweep.dir)

    @staticmethod
    def check(key: str, directory: str) -> None:
        problem = unwritable(Path(directory))
        if problem:
            print(f"lrexp: error: {ConfigError(key, directory, problem)}", file=sys.stderr)
            raise SystemExit(2)


def unwritable(directory: Path) -> str | None:
    """Why nothing can be written into ``directory`` (made if missing), or None."""
    existing = directory.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be created: {existing} is a file"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as e:
        return f"cannot be written: {existing}: {e.strerror or e}"
    return None
