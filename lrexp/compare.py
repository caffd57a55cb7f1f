"""Comparing runs: find run directories, group them by what varies, and compute the numbers a reader needs.

Reads only run directories (lrexp.record's contract and Hydra's ``.hydra/overrides.yaml``); never the
runner. Shared by the local report (lrexp.report) and the W&B report (lrexp.wandb_report).

Vocabulary:
- *varying keys*: the overrides whose values differ across the runs (from each run's overrides.yaml);
- *group*: runs sharing a value of the grouping key (``scheduler`` by default);
- *cell*: runs sharing every varying key except the seed (one schedule at one peak LR, say): the
  statistics are taken over a cell's seeds;
- a group's *best cell* is the cell with the lowest mean final validation loss among cells whose runs all
  completed (any cell if none did): with a LR grid, that is the schedule at its tuned LR.
"""

from __future__ import annotations

import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml

from lrexp.record import METRICS_FILE, SUMMARY_FILE, Row, read_metrics, read_summary

SEED_KEY = "seed"
# Keys that never define what a run *is*; they vary without making runs different experiments.
NEUTRAL_KEYS = ("run.progress", "run.threads", "run.resume", "run.checkpoint_every", "logger")
PRIMARY_METRIC = "final_val_loss"
BASE_VAL_METRICS = ("val_loss", "val_acc")  # every task reports these


@dataclass
class Run:
    dir: Path
    summary: Dict[str, Any]
    rows: List[Row]
    overrides: Dict[str, str]

    @property
    def status(self) -> str:
        return self.summary.get("status", "unknown")

    def value(self, key: str) -> str:
        """The run's value for a key: its override, else what its summary records, else ''."""
        if key in self.overrides:
            return self.overrides[key]
        short = key.rsplit(".", 1)[-1]
        for k in (key, short):
            if self.summary.get(k) is not None:
                return str(self.summary[k])
        return ""


@dataclass
class Cell:
    group: str
    keys: Dict[str, str]  # varying keys other than the group key and the seed
    runs: List[Run] = field(default_factory=list)

    def completed(self) -> List[Run]:
        return [r for r in self.runs if r.status == "completed"]

    def count(self, status: str) -> int:
        return sum(r.status == status for r in self.runs)

    def stat(self, metric: str) -> Tuple[Optional[float], Optional[float]]:
        """Mean and sample std of a summary metric over the completed runs; the std is None for one run
        (one run has no spread, and a 0 would claim it has)."""
        values = [r.summary[metric] for r in self.completed() if _finite(r.summary.get(metric))]
        if not values:
            return None, None
        return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.keys.items())


@dataclass
class Comparison:
    runs: List[Run]
    group_key: str
    varying: List[str]
    cells: List[Cell]
    best: Dict[str, Cell]  # group -> its best cell, in rank order
    table: List[Dict[str, Any]]  # one row per group, in rank order
    extra_metrics: List[str]  # validation metrics a task adds to val_loss and val_acc (tinylm: val_bpb)

    @property
    def groups(self) -> List[str]:
        return list(self.best)


def find_runs(paths: Iterable[Path]) -> List[Run]:
    """Every run directory (one holding summary.json) at or under the given paths, in natural order."""
    dirs: List[Path] = []
    for p in map(Path, paths):
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such directory")
        dirs += [p] if (p / SUMMARY_FILE).is_file() else sorted({s.parent for s in p.rglob(SUMMARY_FILE)}, key=_natural)
    runs = []
    for d in dict.fromkeys(dirs):  # de-duplicated, order kept
        rows = read_metrics(d) if (d / METRICS_FILE).is_file() else []
        runs.append(Run(d, read_summary(d), rows, read_overrides(d)))
    return runs


def read_overrides(run_dir: Path) -> Dict[str, str]:
    """The command-line overrides of a run as ``key -> value`` (from Hydra's .hydra/overrides.yaml)."""
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return {}
    out = {}
    for item in yaml.safe_load(path.read_text()) or []:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = value
    return out


def varying_keys(runs: Sequence[Run]) -> List[str]:
    keys = sorted({k for r in runs for k in r.overrides} | {"scheduler"})
    return [
        k for k in keys
        if not k.startswith(("hydra.", *NEUTRAL_KEYS)) and len({r.value(k) for r in runs}) > 1
    ]


def default_group_key(varying: Sequence[str]) -> str:
    if "scheduler" in varying:
        return "scheduler"
    return next((k for k in varying if k != SEED_KEY), "scheduler")


def compare(runs: Sequence[Run], group_key: Optional[str] = None) -> Comparison:
    if not runs:
        raise ValueError("no runs found (no summary.json under the given directories)")
    varying = varying_keys(runs)
    group_key = group_key or default_group_key(varying)
    cell_keys = [k for k in varying if k not in (group_key, SEED_KEY)]
    cells: Dict[Tuple, Cell] = {}
    for run in runs:
        keys = {k: run.value(k) for k in cell_keys}
        cell = cells.setdefault((run.value(group_key), *keys.values()), Cell(run.value(group_key), keys))
        cell.runs.append(run)

    best: Dict[str, Cell] = {}
    for cell in cells.values():
        current = best.get(cell.group)
        if current is None or _cell_order(cell) < _cell_order(current):
            best[cell.group] = cell
    ranked = sorted(best.values(), key=_cell_order)
    extra = extra_metrics(runs)
    table = [_table_row(rank, cell, group_key, extra) for rank, cell in enumerate(ranked, 1)]
    return Comparison(list(runs), group_key, varying, list(cells.values()), {c.group: c for c in ranked}, table, extra)


def val_metrics(runs: Sequence[Run]) -> List[str]:
    """The validation metrics the runs record (summary.json's ``metrics``), in their order."""
    names = dict.fromkeys(m for r in runs for m in (r.summary.get("metrics") or []))
    return list(names) or list(BASE_VAL_METRICS)


def extra_metrics(runs: Sequence[Run]) -> List[str]:
    """The validation metrics a task adds to val_loss and val_acc (tinylm's val_bpb)."""
    return [m for m in val_metrics(runs) if m not in BASE_VAL_METRICS]


def _cell_order(cell: Cell) -> Tuple:
    """Cells whose runs all completed first, then by mean final validation loss (lower is better)."""
    mean, _ = cell.stat(PRIMARY_METRIC)
    return (cell.count("completed") < len(cell.runs), mean is None, mean if mean is not None else math.inf)


def _table_row(rank: int, cell: Cell, group_key: str, extra: Sequence[str]) -> Dict[str, Any]:
    loss, loss_std = cell.stat(PRIMARY_METRIC)
    acc, acc_std = cell.stat("final_val_acc")
    best_losses = [r.summary["best_val_loss"] for r in cell.completed() if _finite(r.summary.get("best_val_loss"))]
    stalled = [r.summary.get("lr_stalled_fraction") or 0.0 for r in cell.runs]
    extra_stats = {}
    for metric in extra:
        extra_stats[f"final_{metric}_mean"], extra_stats[f"final_{metric}_std"] = cell.stat(f"final_{metric}")
    return {
        "rank": rank if loss is not None else None,
        group_key: cell.group,
        "settings": cell.label(),
        "runs": len(cell.runs),
        "completed": cell.count("completed"),
        "diverged": cell.count("diverged"),
        "failed": cell.count("failed") + cell.count("interrupted") + cell.count("unknown"),
        "final_val_loss_mean": loss,
        "final_val_loss_std": loss_std,
        "final_val_acc_mean": acc,
        "final_val_acc_std": acc_std,
        **extra_stats,
        "best_val_loss": min(best_losses) if best_losses else None,
        "lr_stalled_fraction": max(stalled) if stalled else 0.0,
    }


# --- the verdict in words: shared by the local and the W&B report ---------------------------------


def fmt(mean: Optional[float], std: Optional[float] = None, digits: int = 4) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None else "")


def table_header(comparison: "Comparison") -> List[str]:
    extra = [f"final {m.replace('_', ' ')}" for m in comparison.extra_metrics]
    return ["rank", comparison.group_key, "setting", "runs", "final val loss", "final val acc", *extra, "best val loss", "diverged", "failed"]


def table_cells(row: Dict[str, Any], comparison: "Comparison") -> List[str]:
    extra = [fmt(row[f"final_{m}_mean"], row[f"final_{m}_std"]) for m in comparison.extra_metrics]
    return [
        str(row["rank"] or "-"), str(row[comparison.group_key]), row["settings"] or "-", str(row["runs"]),
        fmt(row["final_val_loss_mean"], row["final_val_loss_std"]), fmt(row["final_val_acc_mean"], row["final_val_acc_std"]),
        *extra, fmt(row["best_val_loss"]), str(row["diverged"]), str(row["failed"]),
    ]


def markdown_table(comparison: "Comparison") -> str:
    head = table_header(comparison)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(table_cells(r, comparison)) + " |" for r in comparison.table]
    return "\n".join(lines)


def headline(comparison: "Comparison") -> str:
    """One sentence: the winner, its margin over the runner-up, and whether the margin beats the spread."""
    ranked = [r for r in comparison.table if r["rank"] is not None]
    key = comparison.group_key
    if not ranked:
        return "No run completed: nothing to rank."
    win = ranked[0]
    text = f"{win[key]} wins with a final validation loss of {fmt(win['final_val_loss_mean'], win['final_val_loss_std'])}"
    text += f" over {win['completed']} run{'s' * (win['completed'] != 1)}"
    if win["settings"]:
        text += f" (at {win['settings']})"
    if len(ranked) > 1:
        second = ranked[1]
        gap = second["final_val_loss_mean"] - win["final_val_loss_mean"]
        rel = gap / second["final_val_loss_mean"] if second["final_val_loss_mean"] else float("nan")
        text += f"; {100 * rel:.1f}% below the runner-up, {second[key]} ({fmt(second['final_val_loss_mean'], second['final_val_loss_std'])})"
        stds = [win["final_val_loss_std"], second["final_val_loss_std"]]
        if None in stds:  # a single run has no spread to weigh the gap against
            text += "; from a single run, so there is no seed spread to weigh the gap against (sweep seed=0,1,2)"
        else:
            spread = max(stds)
            text += ", a gap " + (
                "larger than the seed-to-seed spread" if gap > 2 * spread else
                "within the seed-to-seed spread: not a clear win" if gap <= spread else "comparable to the seed-to-seed spread"
            )
    return text + "."


# --- curves: a group's runs aligned by step --------------------------------------------------------


@dataclass
class Band:
    steps: List[int]
    mean: List[float]
    low: List[float]
    high: List[float]
    n: List[int]


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


def _ema(values: Sequence[float], weight: float) -> List[float]:
    out, last, debias = [], 0.0, 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        debias = weight * debias + (1 - weight)
        out.append(last / debias)
    return out


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def _natural(p: Path) -> List[Any]:
    """Sweep job directories 0, 1, ..., 10 in numeric order, not 0, 1, 10, 2."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(p))]
