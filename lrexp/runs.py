"""Runs read back from their directories: what every report, study and sweeper starts from.

Reads only what a run leaves (lrexp.record's contract and Hydra's ``.hydra/overrides.yaml``); never the
runner. A run's *varying keys* are the overrides whose values differ across the runs read together (from
each run's overrides.yaml, or from the overrides a run recorded elsewhere wrote into summary.json).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lrexp.record import METRICS_FILE, SUMMARY_FILE, Goal, Metric, Row, Status, Summary, is_neutral, read_metrics, read_summary

SEED_KEY = "seed"
LR_KEY = "optimizer.lr"
LOSS = Metric("loss", Goal.MIN, "loss", "log")  # what runs that declare no metrics (failed early) are ranked by


@dataclass
class RunRecord:
    """A finished (or failed, or interrupted) run as its directory records it."""

    dir: Path
    summary: Summary
    rows: list[Row]
    overrides: dict[str, str]

    @property
    def status(self) -> Status:
        return self.summary.status

    @property
    def seed(self) -> int | None:
        seed = self.summary.seed if self.summary.seed is not None else self.overrides.get(SEED_KEY)
        return int(seed) if seed is not None else None

    def value(self, key: str) -> str:
        """The run's value for a key: its override, else what its summary records, else ''."""
        if key in self.overrides:
            return self.overrides[key]
        for k in (key, key.rsplit(".", 1)[-1]):
            recorded = getattr(self.summary, k, None)
            if recorded is not None and not isinstance(recorded, (dict, list)):
                return str(recorded)
        return ""


def find_runs(paths: Iterable[Path]) -> list[RunRecord]:
    """Every run directory (one holding summary.json) at or under the given paths, in natural order."""
    dirs: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such directory")
        dirs += [p] if (p / SUMMARY_FILE).is_file() else sorted({s.parent for s in p.rglob(SUMMARY_FILE)}, key=_natural)
    runs = []
    for d in dict.fromkeys(dirs):  # de-duplicated, order kept
        rows = read_metrics(d) if (d / METRICS_FILE).is_file() else []
        summary = read_summary(d)
        runs.append(RunRecord(d, summary, rows, read_overrides(d) or dict(summary.settings)))
    return runs


def read_overrides(run_dir: Path) -> dict[str, str]:
    """The command-line overrides of a run as ``key -> value`` (from Hydra's .hydra/overrides.yaml)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def varying_keys(runs: Sequence[RunRecord]) -> list[str]:
    keys = sorted({k for r in runs for k in r.overrides} | {"scheduler"})
    return [k for k in keys if not is_neutral(k) and len({r.value(k) for r in runs}) > 1]


def default_group_key(varying: Sequence[str]) -> str:
    if "scheduler" in varying:
        return "scheduler"
    return next((k for k in varying if k != SEED_KEY), "scheduler")


def declared_metrics(runs: Sequence[RunRecord]) -> list[Metric]:
    """The metrics the runs' task declares (summary.json's ``metrics``), in its order: the loss first."""
    declared = next((r.summary.metrics for r in runs if r.summary.metrics), None)
    return list(declared) if declared else [LOSS]


def signed(metric: Metric, value: float) -> float:
    """``value`` oriented so that lower is better, whatever the metric's goal."""
    return value if metric.goal is Goal.MIN else -value


def _natural(p: Path) -> list[Any]:
    """Sweep job directories 0, 1, ..., 10 in numeric order, not 0, 1, 10, 2."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]
