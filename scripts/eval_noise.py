"""How precise is a run's test number? The evaluation noise of tinylm's held-out test split, measured.

    python scripts/eval_noise.py SWEEP_OR_RUN_DIR [...]

For every finished tinylm run found (its checkpoint.pt and .hydra/config.yaml), the model is rebuilt
and evaluated batch by batch on the fixed test windows. The standard error of the test loss is the
spread of the per-batch losses over sqrt(batches); for two runs on the same windows, the paired
standard error of their difference is the spread of the per-batch differences over sqrt(batches). Both
are set against what a comparison must resolve: the seed-to-seed spread within a schedule and the
gaps between schedules (from the runs' summary.json). docs/own-model.md, "Tasks", quotes the result.
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

from lrexp import checkpoint
from lrexp.record import Status
from lrexp.runs import find_runs
from lrexp.tasks import build_task


def batch_losses(run_dir: Path) -> list[float]:
    """The test loss of each batch of fixed test windows, for the model in the run's checkpoint."""
    cfg = OmegaConf.load(run_dir / ".hydra" / "config.yaml")
    task = build_task(cfg.task, torch.device("cpu"), int(cfg.seed))
    task.model.load_state_dict(checkpoint.load(run_dir / "checkpoint.pt")["model"])
    task.model.eval()
    xs, ys = task.splits["test"]  # type: ignore[attr-defined]
    losses = []
    for x, y in zip(xs, ys):
        task.splits["one"] = ((x,), (y,))  # type: ignore[attr-defined]
        losses.append(float(task.evaluate(task.model, "one")["loss"]))
    return losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path)
    a = p.parse_args()
    runs = [
        r for r in find_runs(a.dirs) if r.summary.task == "tinylm" and r.status is Status.COMPLETED and (r.dir / "checkpoint.pt").exists()
    ]
    if not runs:
        sys.exit("no finished tinylm run with a checkpoint under the given directories")
    per_run = {r.dir: batch_losses(r.dir) for r in runs}
    n = len(next(iter(per_run.values())))
    se = [statistics.stdev(v) / math.sqrt(n) for v in per_run.values()]
    paired = [
        statistics.stdev([x - y for x, y in zip(per_run[a.dir], per_run[b.dir])]) / math.sqrt(n) for a, b in itertools.combinations(runs, 2)
    ]
    cells: dict[tuple, list[float]] = {}
    for r in runs:
        cells.setdefault((r.summary.scheduler, r.overrides.get("optimizer.lr")), []).append(r.summary.final["test_loss"])
    seed_sd = [statistics.stdev(v) for v in cells.values() if len(v) > 1]
    means = sorted(statistics.fmean(v) for v in cells.values())
    gaps = [b - a for a, b in itertools.pairwise(means)]
    windows = OmegaConf.load(runs[0].dir / ".hydra" / "config.yaml").task.batch_size
    print(f"{len(runs)} runs; the test split: {n} batches of {windows} fixed windows")
    print(f"standard error of one run's test loss      median {statistics.median(se):.4f}  max {max(se):.4f}")
    if paired:
        print(f"paired standard error of a difference      median {statistics.median(paired):.4f}  max {max(paired):.4f}")
    if seed_sd:
        print(f"seed-to-seed std of the test loss          median {statistics.median(seed_sd):.4f}  (over {len(seed_sd)} cells)")
    if gaps:
        print(f"gaps between neighbouring cells' means     median {statistics.median(gaps):.4f}  min {min(gaps):.4f}")


if __name__ == "__main__":
    main()
