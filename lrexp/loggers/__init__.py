"""Loggers: where a run's record goes besides the files every run writes (lrexp.record).

Chosen by the ``logger`` config group; each selected option is a node ``logger.<name>`` with a
``_target_`` (conf/logger/*.yaml) and is instantiated like every other group, with the run's identity
(``RunInfo``) as ``run``. A logger must never cost a training run: its problems become warnings, and
the local record is written regardless.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import DictConfig

from lrexp.errors import ConfigError, describe
from lrexp.record import Row, Summary
from lrexp.targets import call_target, check_signature

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass
class RunInfo:
    """How a run is identified to experiment trackers."""

    run_dir: Path
    config: dict[str, Any]  # the fully resolved composed config
    name: str = ""  # the schedule, the seed and the overrides that vary: "cosine-seed1 optimizer.lr=0.003"
    group: str | None = None  # the sweep directory, the same for every job of a sweep
    job_type: str | None = None  # the schedule
    choices: dict[str, str] = field(default_factory=dict)  # the option names (cosine, adamw, digits)
    tags: list[str] = field(default_factory=list)
    job_num: int | None = None
    concurrent: bool = False  # other runs are open in this process at the same time (hydra/launcher=batched)


class Logger:
    """The interface: every method is optional. Rows arrive at log intervals, never every step."""

    name = "logger"  # in warnings

    def __init__(self, *, run: RunInfo) -> None:
        self.run_info = run
        self.broken: str | None = None  # why this logger stopped sending (the run goes on)

    def guarded(self, what: str, call: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """``call(*args, **kwargs)``, or None: a logger's failure is one warning, then the logger is off."""
        if self.broken is not None:
            return None
        try:
            return call(*args, **kwargs)
        except Exception as e:
            self.broken = describe(e)
            log.warning("%s: %s failed (%s); the run goes on without it (metrics.csv has every row)", self.name, what, self.broken)
            return None

    def start(self, step: int = 0) -> None:
        """Once the run directory is accepted and the run is built, before the first step this launch
        trains (``step``: 0, or where a resumed run continues; rows after it were logged by a launch that
        died, and are logged again).

        A refused re-run (the directory holds another run) or a run that fails to build never gets
        here, so a logger that opens something outside the process (a W&B run) opens it only for a
        run that will train.
        """

    def log_row(self, row: Row) -> None:
        pass

    def summary_fields(self) -> dict[str, Any]:
        """Fields this logger adds to summary.json (a W&B run's id and path, for instance)."""
        return {}

    def finish(self, summary: Summary, run_dir: Path) -> None:
        pass

    def abort(self, error: str) -> None:
        """The run raised instead of finishing: close anything opened in start(), marked as failed."""


def build_loggers(node: DictConfig, run: RunInfo) -> list[Logger]:
    """Every logger the config selects, in composition order (``logger=wandb`` composes ``local``
    first, so the plots exist when W&B uploads them)."""
    loggers = []
    for name, options in node.items():
        group = f"logger.{name!s}"
        check_signature(options, group, bound_positionally=0, supplied=("run",))
        # Options through Hydra, the run's identity as a plain argument: instantiate() would turn a
        # dataclass argument into a config node (and instantiate the _target_s inside its config).
        make = call_target(options, group, _partial_=True, _convert_="all")
        loggers.append(make(run=run))
    return loggers


def unexpected_options(group: str, options: Mapping[str, Any]) -> None:
    """Options a logger does not take (added with ``+logger.NAME.KEY=...``): one ConfigError."""
    if options:
        key = str(sorted(options)[0])
        raise ConfigError(f"logger.{group}.{key}", options[key], f"not an option of logger.{group} (conf/logger/{group}.yaml lists them)")
