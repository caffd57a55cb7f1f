"""The run record: the files every run leaves in its output directory, and the functions that read them.

This is the output contract (README, "Outputs"). The training loop writes it; plots, the comparison
report and the W&B report read it. No torch here: readers must stay cheap.

- ``metrics.csv``: header, then a row per logged step, appended and flushed row by row, so a killed
  run keeps every row up to the last flush. Floats are written in their shortest exact form.
- ``summary.json``: status and the run's headline numbers (see ``summarize``).
- ``checkpoint.pt``: everything to resume exactly (lrexp.checkpoint).
- ``plots/``: PNG figures (lrexp.plots).
"""

from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
PLOTS_DIR = "plots"
ERROR_FILE = "error.txt"

# LR below this fraction of the run's peak: the optimizer barely moves, training has effectively stopped.
STALL_RATIO = 1e-3
# A run that spends more than this share of its steps stalled gets a warning and a shaded plot region.
STALL_NOTABLE = 0.1

Row = Dict[str, Optional[float]]


def metric_columns(lr_columns: Sequence[str], val_metrics: Sequence[str]) -> List[str]:
    return ["step", *lr_columns, "train_loss", *val_metrics, "time_s"]


def holds_run(run_dir: Path) -> bool:
    return any((run_dir / f).exists() for f in (METRICS_FILE, SUMMARY_FILE, CHECKPOINT_FILE))


class MetricsWriter:
    """Appends rows to metrics.csv, flushing each one to the OS so that ``kill -9`` loses nothing logged."""

    def __init__(self, path: Path, columns: Sequence[str], rows: Iterable[Row] = ()) -> None:
        # (Re)write the header and any rows carried over from a checkpoint in one atomic step: a resumed
        # run drops the rows its killed predecessor logged after its last checkpoint.
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
        self._file = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._file, columns)

    def append(self, row: Row) -> None:
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "MetricsWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_json(path: Path, obj: Any) -> None:
    """Atomically: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=True) + "\n")
    os.replace(tmp, path)


def read_metrics(run_dir: Path) -> List[Row]:
    """metrics.csv as dicts of floats (``step`` as int), None where a cell is empty."""
    with open(run_dir / METRICS_FILE, newline="") as f:
        return [
            {k: (int(v) if k == "step" else float(v)) if v != "" else None for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def read_summary(run_dir: Path) -> Dict[str, Any]:
    return json.loads((run_dir / SUMMARY_FILE).read_text())


def column(rows: Sequence[Row], name: str) -> tuple:
    """(steps, values) of the rows where ``name`` is set."""
    pairs = [(r["step"], r[name]) for r in rows if r.get(name) is not None]
    return tuple(zip(*pairs)) if pairs else ((), ())


def summarize(rows: Sequence[Row], val_metrics: Sequence[str]) -> Dict[str, Any]:
    """Headline numbers derived from the rows: final and best validation metrics, LR diagnostics."""
    out: Dict[str, Any] = {}
    if rows:
        out["final_train_loss"] = rows[-1]["train_loss"]
    for name in val_metrics:
        steps, values = column(rows, name)
        if not values:
            continue
        out[f"final_{name}"] = values[-1]
        finite = [(v, s) for s, v in zip(steps, values) if math.isfinite(v)]
        if finite:
            lower_is_better = "loss" in name or "bpb" in name
            best_v, best_s = (min if lower_is_better else max)(finite, key=lambda vs: vs[0])
            out[f"best_{name}"], out[f"best_{name}_step"] = best_v, best_s
    out.update(lr_diagnostics(rows))
    return out


def lr_diagnostics(rows: Sequence[Row]) -> Dict[str, Any]:
    """Peak, final and minimum LR, and where the LR fell below STALL_RATIO x peak for good.

    ``lr_stalled_from_step`` is the first logged step from which every later LR is below the threshold;
    ``lr_stalled_fraction`` the share of the run from there on. ExponentialLR(0.99) per step stalls at
    step ~690 of 3000 (77% of the run wasted); a schedule that decays to zero stalls only at its end.
    """
    steps, lrs = column(rows, "lr")
    if not lrs:
        return {}
    peak = max(lrs)
    stalled_from = None
    for s, lr in zip(reversed(steps), reversed(lrs)):
        if lr >= STALL_RATIO * peak:
            break
        stalled_from = s
    done = steps[-1] + 1
    return {
        "lr_peak": peak,
        "lr_final": lrs[-1],
        "lr_min": min(lrs),
        "lr_stalled_from_step": stalled_from,
        "lr_stalled_fraction": (done - stalled_from) / done if stalled_from is not None else 0.0,
    }
