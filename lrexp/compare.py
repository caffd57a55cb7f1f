"""Comparing runs: find run directories, group them by what varies, choose, rank and compare.

Reads only run directories (lrexp.record's contract and Hydra's ``.hydra/overrides.yaml``); never the
runner. Shared by the local report (lrexp.report) and the W&B report (lrexp.wandb_report).

Vocabulary:
- *varying keys*: the overrides whose values differ across the runs (from each run's overrides.yaml);
- *group*: runs sharing a value of the grouping key (``scheduler`` by default);
- *cell*: runs sharing every varying key except the seed (one schedule at one peak LR, say);
- a group's *chosen cell*: its best cell by the mean final **validation** loss among cells whose runs all
  completed (any cell if none did). With an LR grid, that is the schedule at its tuned LR.

The protocol: validation chooses (each group's cell), the held-out **test** split reports (the table,
the ranking and the verdict), so the numbers a report states are not the numbers it tuned on. Each group
is compared with the best one seed by seed (lrexp.stats), with Holm's correction over the comparisons.
Which metrics exist, which way is better and how to label them is what each run's summary.json
declares: nothing here knows a task by name.
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

from lrexp import stats
from lrexp.diagnostics import Flag, GroupDiagnosis, diagnose
from lrexp.record import METRICS_FILE, SUMMARY_FILE, Goal, Metric, Row, Status, Summary, is_neutral, read_metrics, read_summary

SEED_KEY = "seed"
LR_KEY = "optimizer.lr"
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

    def values(self, column: str) -> dict[int, float]:
        """seed -> the column's final value, over the completed runs that recorded it (finite)."""
        out = {}
        for i, r in enumerate(self.completed()):
            v = r.summary.final.get(column)
            if v is not None and _finite(v):
                out[r.seed if r.seed is not None else -1 - i] = float(v)
        return out

    def stat(self, column: str) -> tuple[float | None, float | None]:
        """Mean and sample std of a column's final value over the completed runs; the std is None for one
        run (one run has no spread, and a 0 would claim it has)."""
        values = list(self.values(column).values())
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.keys.items())

    @property
    def lr(self) -> float | None:
        """The cell's peak LR where the sweep varies it (None where this cell did not set one)."""
        try:
            return float(self.keys[LR_KEY])
        except (KeyError, ValueError):
            return None


@dataclass
class Result:
    """One group at its chosen cell: what the table, the ranking figure and the verdict say about it."""

    group: str
    cell: Cell
    rank: int | None  # None: no completed run to rank
    values: dict[int, float]  # seed -> the reported loss (final, on the reported split)
    mean: float | None
    std: float | None
    low: float  # 95% interval of the mean (nan below two seeds)
    high: float
    chosen_by: float | None  # the chosen cell's mean final validation loss: what chose it
    diff: stats.Difference | None = None  # vs the best group (None for the best itself)
    p_holm: float = math.nan
    seeds_needed: int | None = None
    diagnosis: GroupDiagnosis = field(default_factory=GroupDiagnosis)


@dataclass
class Robustness:
    """The ranking at each single peak LR next to the tuned one (each group at its own best LR)."""

    tuned: list[str]
    per_lr: list[tuple[str, list[str], float]]  # (lr, ranking at that lr, Kendall's tau vs the tuned ranking)


@dataclass
class Comparison:
    runs: list[Run]
    group_key: str
    varying: list[str]
    cells: list[Cell]
    metrics: list[Metric]  # what the runs' task declares; the first is its loss
    split: str  # the split the report compares: "test", or "val" where no run recorded a test split
    results: list[Result]  # in rank order, unranked last
    flags: list[Flag] = field(default_factory=list)
    robustness: Robustness | None = None

    @property
    def best(self) -> dict[str, Cell]:
        """group -> its chosen cell, in rank order."""
        return {r.group: r.cell for r in self.results}

    @property
    def groups(self) -> list[str]:
        return [r.group for r in self.results]

    @property
    def loss(self) -> Metric:
        return self.metrics[0]

    @property
    def ranked(self) -> list[Result]:
        return [r for r in self.results if r.rank is not None]

    @property
    def paired(self) -> bool:
        return all(r.diff.paired for r in self.ranked[1:] if r.diff)


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
    loss = metrics[0]
    cell_keys = [k for k in varying if k not in (group_key, SEED_KEY)]
    cells: dict[tuple, Cell] = {}
    for run in runs:
        keys = {k: run.value(k) for k in cell_keys}
        cell = cells.setdefault((run.value(group_key), *keys.values()), Cell(run.value(group_key), keys))
        cell.runs.append(run)

    # Validation chooses each group's cell.
    chosen: dict[str, Cell] = {}
    by_val = cell_order(loss, "val")
    for cell in cells.values():
        if cell.group not in chosen or by_val(cell) < by_val(chosen[cell.group]):
            chosen[cell.group] = cell
    # The held-out split reports, where every chosen run recorded it.
    completed = [r for cell in chosen.values() for r in cell.completed()]
    split = "test" if completed and all(_finite(r.summary.final.get(loss.column("test"))) for r in completed) else "val"
    order = cell_order(loss, split)
    results = [_result(cell, loss, split) for cell in sorted(chosen.values(), key=order)]
    rank = 0
    for r in results:
        if r.mean is not None and len(r.cell.completed()) == len(r.cell.runs):
            rank += 1
            r.rank = rank
    results.sort(key=lambda r: (r.rank is None, r.rank or 0))
    _differences(results, loss)

    c = Comparison(list(runs), group_key, varying, list(cells.values()), metrics, split, results)
    diagnosis, c.flags = diagnose(c)
    for r in results:
        r.diagnosis = diagnosis.get(r.group, GroupDiagnosis())
    c.robustness = robustness(c)
    return c


def declared_metrics(runs: Sequence[Run]) -> list[Metric]:
    """The metrics the runs' task declares (summary.json's ``metrics``), in its order: the loss first."""
    declared = next((r.summary.metrics for r in runs if r.summary.metrics), None)
    return list(declared) if declared else [LOSS]


def signed(metric: Metric, value: float) -> float:
    """``value`` oriented so that lower is better, whatever the metric's goal."""
    return value if metric.goal is Goal.MIN else -value


def cell_order(loss: Metric, split: str) -> Any:
    """Cells whose runs all completed first, then by the mean final loss on ``split``."""

    def key(cell: Cell) -> tuple:
        mean, _ = cell.stat(loss.column(split))
        return (len(cell.completed()) < len(cell.runs), mean is None, signed(loss, mean) if mean is not None else math.inf)

    return key


def _result(cell: Cell, loss: Metric, split: str) -> Result:
    values = cell.values(loss.column(split))
    mean, low, high = stats.mean_interval(list(values.values())) if values else (None, math.nan, math.nan)
    _, std = cell.stat(loss.column(split))
    return Result(cell.group, cell, None, values, mean, std, low, high, chosen_by=cell.stat(loss.column("val"))[0])


def _differences(results: list[Result], loss: Metric) -> None:
    """Each ranked group against the best, seed by seed; Holm over the comparisons; seeds to resolve."""
    ranked = [r for r in results if r.rank is not None]
    if len(ranked) < 2:
        return
    best = {s: signed(loss, v) for s, v in ranked[0].values.items()}
    for r in ranked[1:]:
        r.diff = stats.difference({s: signed(loss, v) for s, v in r.values.items()}, best)
    others = ranked[1:]
    for r, p in zip(others, stats.holm([r.diff.p for r in others if r.diff])):
        r.p_holm = p
        r.seeds_needed = stats.seeds_needed(r.diff, comparisons=len(others)) if r.diff else None


def robustness(c: Comparison) -> Robustness | None:
    """When the sweep varies the peak LR: the ranking at each single LR, and Kendall's tau between it and
    the tuned ranking (every group at its own best LR), over the groups both rank."""
    if LR_KEY not in c.varying or c.group_key == LR_KEY:
        return None
    tuned = [r.group for r in c.ranked]
    column = c.loss.column(c.split)
    per_lr = []
    for lr in sorted({cell.keys[LR_KEY] for cell in c.cells if cell.lr is not None}, key=float):
        at_lr = [cell for cell in c.cells if cell.keys.get(LR_KEY) == lr and cell.completed() and len(cell.completed()) == len(cell.runs)]
        # With other varying keys, a group may have several cells at this LR: its best one (by validation).
        best: dict[str, Cell] = {}
        for cell in sorted(at_lr, key=cell_order(c.loss, "val")):
            best.setdefault(cell.group, cell)
        ranking = sorted(best, key=lambda g: signed(c.loss, best[g].stat(column)[0] or math.inf))
        per_lr.append((lr, ranking, stats.kendall_tau(ranking, tuned)))
    return Robustness(tuned, per_lr)


def table(c: Comparison) -> list[dict[str, Any]]:
    """One row per group, in rank order: summary.csv (and every table a report shows)."""
    loss, split = c.loss, c.split
    rows = []
    for r in c.results:
        cell, d = r.cell, r.diff
        row: dict[str, Any] = {
            "rank": r.rank,
            c.group_key: r.group,
            "settings": cell.label(),
            "runs": len(cell.runs),
            "completed": cell.count(Status.COMPLETED),
            "diverged": cell.count(Status.DIVERGED),
            "failed": cell.without_result(),
            "split": split,
        }
        for metric in c.metrics:
            column = metric.column(split)
            row[f"final_{column}_mean"], row[f"final_{column}_std"] = cell.stat(column)
            if metric is loss:
                row[f"final_{column}_ci_low"], row[f"final_{column}_ci_high"] = _num(r.low), _num(r.high)
        row[f"final_{loss.column('val')}_mean"] = r.chosen_by  # what chose the cell
        row.update(
            diff_mean=_num(d.mean) if d else None,
            diff_ci_low=_num(d.low) if d else None,
            diff_ci_high=_num(d.high) if d else None,
            pairs=d.n if d else None,
            paired=d.paired if d else None,
            wins=d.wins if d else None,
            p=_num(d.p) if d else None,
            p_holm=_num(r.p_holm),
            seeds_needed=r.seeds_needed,
            lr_stalled_fraction=max((x.summary.lr_stalled_fraction or 0.0) for x in cell.runs),
            val_rise=_num(r.diagnosis.rise),
            late_drop=_num(r.diagnosis.late_drop),
            late_lr=_num(r.diagnosis.late_lr),
            flags=";".join(r.diagnosis.flags),
        )
        rows.append(row)
    return rows


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
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _num(v: float | None) -> float | None:
    """nan -> None, so that a CSV cell is empty rather than 'nan' where a number cannot exist."""
    return v if v is not None and math.isfinite(v) else None


def _natural(p: Path) -> list[Any]:
    """Sweep job directories 0, 1, ..., 10 in numeric order, not 0, 1, 10, 2."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]
