"""Comparing runs: find run directories, group them by what varies, and compute the numbers a reader needs.

Reads only run directories (lrexp.record's contract and Hydra's ``.hydra/overrides.yaml``); never the
runner. Shared by the local report (lrexp.report) and the W&B report (lrexp.wandb_report).

Vocabulary:
- *varying keys*: the overrides whose values differ across the runs (from each run's overrides.yaml);
- *group*: runs sharing a value of the grouping key (``scheduler`` by default);
- *cell*: runs sharing every varying key except the seed (one schedule at one peak LR, say): the
  statistics are taken over a cell's seeds;
- a group's *best cell* is the cell with the best mean final validation loss among cells whose runs all
  completed (any cell if none did): with a LR grid, that is the schedule at its tuned LR.

Which metrics exist, which way is better and how to label them is what each run's summary.json
declares (``metrics``, from its task): nothing here knows a task by name.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lrexp.record import METRICS_FILE, SUMMARY_FILE, Goal, Metric, Row, Status, Summary, is_neutral, read_metrics, read_summary

SEED_KEY = "seed"
LOSS = Metric("loss", Goal.MIN, "loss", "log")  # what runs that declare no metrics (failed early) are ranked by


@dataclass
class Run:
    dir: Path
    summary: Summary
    rows: list[Row]
    overrides: dict[str, str]

    @property
    def status(self) -> Status:
        return self.summary.status

    def value(self, key: str) -> str:
        """The run's value for a key: its override, else what its summary records, else ''."""
        if key in self.overrides:
            return self.overrides[key]
        for k in (key, key.rsplit(".", 1)[-1]):
            recorded = getattr(self.summary, k, None)
            if recorded is not None and not isinstance(recorded, (dict, list)):
                return str(recorded)
        return ""


@dataclass
class Cell:
    group: str
    keys: dict[str, str]  # varying keys other than the group key and the seed
    runs: list[Run] = field(default_factory=list)

    def completed(self) -> list[Run]:
        return [r for r in self.runs if r.status is Status.COMPLETED]

    def count(self, status: Status) -> int:
        return sum(r.status is status for r in self.runs)

    def without_result(self) -> int:
        """Runs that say nothing about their settings (failed, or interrupted and not resumed yet)."""
        return sum(not r.status.has_result for r in self.runs)

    def stat(self, column: str) -> tuple[float | None, float | None]:
        """Mean and sample std of a column's final value over the completed runs; the std is None for one
        run (one run has no spread, and a 0 would claim it has)."""
        values = [r.summary.final[column] for r in self.completed() if _finite(r.summary.final.get(column))]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.keys.items())


@dataclass
class Comparison:
    runs: list[Run]
    group_key: str
    varying: list[str]
    cells: list[Cell]
    best: dict[str, Cell]  # group -> its best cell, in rank order
    table: list[dict[str, Any]]  # one row per group, in rank order
    metrics: list[Metric]  # what the runs' task declares; the first is its loss

    @property
    def groups(self) -> list[str]:
        return list(self.best)

    @property
    def loss(self) -> Metric:
        return self.metrics[0]


def find_runs(paths: Iterable[Path]) -> list[Run]:
    """Every run directory (one holding summary.json) at or under the given paths, in natural order."""
    dirs: list[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such directory")
        dirs += [p] if (p / SUMMARY_FILE).is_file() else sorted({s.parent for s in p.rglob(SUMMARY_FILE)}, key=_natural)
    runs = []
    for d in dict.fromkeys(dirs):  # de-duplicated, order kept
        rows = read_metrics(d) if (d / METRICS_FILE).is_file() else []
        runs.append(Run(d, read_summary(d), rows, read_overrides(d)))
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


def varying_keys(runs: Sequence[Run]) -> list[str]:
    keys = sorted({k for r in runs for k in r.overrides} | {"scheduler"})
    return [k for k in keys if not is_neutral(k) and len({r.value(k) for r in runs}) > 1]


def default_group_key(varying: Sequence[str]) -> str:
    if "scheduler" in varying:
        return "scheduler"
    return next((k for k in varying if k != SEED_KEY), "scheduler")


def compare(runs: Sequence[Run], group_key: str | None = None) -> Comparison:
    if not runs:
        raise ValueError("no runs found (no summary.json under the given directories)")
    varying = varying_keys(runs)
    group_key = group_key or default_group_key(varying)
    metrics = declared_metrics(runs)
    cell_keys = [k for k in varying if k not in (group_key, SEED_KEY)]
    cells: dict[tuple, Cell] = {}
    for run in runs:
        keys = {k: run.value(k) for k in cell_keys}
        cell = cells.setdefault((run.value(group_key), *keys.values()), Cell(run.value(group_key), keys))
        cell.runs.append(run)

    best: dict[str, Cell] = {}
    order = cell_order(metrics[0])
    for cell in cells.values():
        current = best.get(cell.group)
        if current is None or order(cell) < order(current):
            best[cell.group] = cell
    ranked = sorted(best.values(), key=order)
    table = [_table_row(rank, cell, group_key, metrics) for rank, cell in enumerate(ranked, 1)]
    return Comparison(list(runs), group_key, varying, list(cells.values()), {c.group: c for c in ranked}, table, metrics)


def declared_metrics(runs: Sequence[Run]) -> list[Metric]:
    """The metrics the runs' task declares (summary.json's ``metrics``), in its order: the loss first."""
    declared = next((r.summary.metrics for r in runs if r.summary.metrics), None)
    return list(declared) if declared else [LOSS]


def signed(metric: Metric, value: float) -> float:
    """``value`` oriented so that lower is better, whatever the metric's goal."""
    return value if metric.goal is Goal.MIN else -value


def cell_order(loss: Metric) -> Any:
    """Cells whose runs all completed first, then by the mean final validation loss."""

    def key(cell: Cell) -> tuple:
        mean, _ = cell.stat(loss.column("val"))
        return (len(cell.completed()) < len(cell.runs), mean is None, signed(loss, mean) if mean is not None else math.inf)

    return key


def _table_row(rank: int, cell: Cell, group_key: str, metrics: Sequence[Metric]) -> dict[str, Any]:
    loss = metrics[0].column("val")
    stats: dict[str, Any] = {}
    for metric in metrics:
        column = metric.column("val")
        stats[f"final_{column}_mean"], stats[f"final_{column}_std"] = cell.stat(column)
    best = [r.summary.best[loss] for r in cell.completed() if _finite(r.summary.best.get(loss))]
    stalled = [r.summary.lr_stalled_fraction or 0.0 for r in cell.runs]
    return {
        "rank": rank if stats[f"final_{loss}_mean"] is not None else None,
        group_key: cell.group,
        "settings": cell.label(),
        "runs": len(cell.runs),
        "completed": cell.count(Status.COMPLETED),
        "diverged": cell.count(Status.DIVERGED),
        "failed": cell.without_result(),
        **stats,
        f"best_{loss}": (min if metrics[0].goal is Goal.MIN else max)(best) if best else None,
        "lr_stalled_fraction": max(stalled) if stalled else 0.0,
    }


# --- the verdict in words: shared by the local and the W&B report ---------------------------------


def fmt(mean: float | None, std: float | None = None, digits: int = 4) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def table_header(comparison: Comparison) -> list[str]:
    finals = [f"final val {m.name}" for m in comparison.metrics]
    return ["rank", comparison.group_key, "setting", "runs", *finals, f"best val {comparison.loss.name}", "diverged", "failed"]


def table_cells(row: dict[str, Any], comparison: Comparison) -> list[str]:
    finals = [fmt(row[f"final_val_{m.name}_mean"], row[f"final_val_{m.name}_std"]) for m in comparison.metrics]
    return [
        str(row["rank"] or "-"),
        str(row[comparison.group_key]),
        row["settings"] or "-",
        str(row["runs"]),
        *finals,
        fmt(row[f"best_{comparison.loss.column('val')}"]),
        str(row["diverged"]),
        str(row["failed"]),
    ]


def markdown_table(comparison: Comparison) -> str:
    head = table_header(comparison)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(table_cells(r, comparison)) + " |" for r in comparison.table]
    return "\n".join(lines)


def headline(comparison: Comparison) -> str:
    """One sentence: the winner, its margin over the runner-up, and whether the margin beats the spread."""
    ranked = [r for r in comparison.table if r["rank"] is not None]
    key, loss = comparison.group_key, comparison.loss
    mean, std = f"final_{loss.column('val')}_mean", f"final_{loss.column('val')}_std"
    if not ranked:
        return "No run completed: nothing to rank."
    win = ranked[0]
    text = f"{win[key]} wins with a final {loss.title('val')} of {fmt(win[mean], win[std])}"
    text += f" over {win['completed']} run{'s' * (win['completed'] != 1)}"
    if win["settings"]:
        text += f" (at {win['settings']})"
    if len(ranked) > 1:
        second = ranked[1]
        gap = signed(loss, second[mean] - win[mean])
        rel = gap / abs(second[mean]) if second[mean] else float("nan")
        text += f"; {100 * rel:.1f}% {'below' if loss.goal is Goal.MIN else 'above'} the runner-up, {second[key]} ({fmt(second[mean], second[std])})"
        stds = [win[std], second[std]]
        if None in stds:  # a single run has no spread to weigh the gap against
            text += "; from a single run, so there is no seed spread to weigh the gap against (sweep seed=0,1,2)"
        else:
            spread = max(stds)
            text += ", a gap " + (
                "larger than the seed-to-seed spread"
                if gap > 2 * spread
                else "within the seed-to-seed spread: not a clear win"
                if gap <= spread
                else "comparable to the seed-to-seed spread"
            )
    return text + "."


# --- curves: a group's runs aligned by step --------------------------------------------------------


@dataclass
class Band:
    steps: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    n: list[int]


def band(runs: Sequence[Run], metric: str, spread: str = "minmax", smoothing: float = 0.0) -> Band:
    """Mean over runs at every step any run logged ``metric``, with a min-max or +-std band.

    Runs that stopped early (diverged) simply drop out of later steps; ``n`` says how many remain.
    ``smoothing`` (0..1) is an exponential moving average applied per run before averaging, debiased
    like TensorBoard's so that the first points are not dragged towards zero.
    """
    per_run = []
    for r in runs:
        steps = [row["step"] for row in r.rows if row.get(metric) is not None]
        values = [row[metric] for row in r.rows if row.get(metric) is not None]
        per_run.append(dict(zip(steps, _ema(values, smoothing) if smoothing else values)))
    all_steps = sorted({s for d in per_run for s in d})
    out = Band([], [], [], [], [])
    for s in all_steps:
        vals = [d[s] for d in per_run if s in d and _finite(d[s])]
        if not vals:
            continue
        mean = statistics.fmean(vals)
        if spread == "std":
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            low, high = mean - sd, mean + sd
        else:
            low, high = min(vals), max(vals)
        out.steps.append(s)
        out.mean.append(mean)
        out.low.append(low)
        out.high.append(high)
        out.n.append(len(vals))
    return out


def _ema(values: Sequence[float], weight: float) -> list[float]:
    out, last, debias = [], 0.0, 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        debias = weight * debias + (1 - weight)
        out.append(last / debias)
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _natural(p: Path) -> list[Any]:
    """Sweep job directories 0, 1, ..., 10 in numeric order, not 0, 1, 10, 2."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]
