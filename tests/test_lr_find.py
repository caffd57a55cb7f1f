"""The LR range test: on synthetic curves, where it puts the steepest point, the minimum and the grid;
for real, through its CLI on digits and tinylm, the plot and the files it writes."""

from __future__ import annotations

import csv
import itertools
import json
import math

import matplotlib.image
import pytest

from lrexp.lr_find import centred_median, grid, suggestions
from tests.helpers import run_cli


def test_suggestions_find_the_steepest_descent_before_the_minimum():
    lrs = [10 ** (-6 + 5 * i / 99) for i in range(100)]  # 1e-6 .. 0.1
    # loss falls fastest at 1e-3 (a logistic in log LR), lowest at ~1e-2, then blows up
    losses = [2 - 1.5 / (1 + math.exp(-3 * (math.log10(lr) + 3))) + max(0.0, math.log10(lr) + 2) ** 2 * 5 for lr in lrs]
    steepest, minimum = suggestions(lrs, losses)
    assert steepest == pytest.approx(1e-3, rel=0.15) and minimum == pytest.approx(1e-2, rel=0.15)
    assert grid(steepest, minimum) == [3e-4, 1e-3, 3e-3, 1e-2]  # half decades from steepest / 3 to the minimum


def test_no_grid_without_a_fall_and_the_median_has_no_lag():
    assert grid(None, None) == [] and grid(1e-2, 1e-3) == []
    step = [1.0] * 10 + [0.0] * 10
    assert centred_median(step, half=3) == step  # a sharp drop stays where it is (a one-way average would lag)


@pytest.mark.slow
@pytest.mark.parametrize(
    "task, extra", [("digits", []), ("tinylm", ["task.n_embd=64", "task.n_head=2", "task.eval_batches=1", "task.test_batches=1"])]
)
def test_lr_find_writes_its_plot_files_and_a_suggested_override(tmp_path, task, extra):
    out = run_cli([f"task={task}", *extra, "--steps", "120", "--out", "found"], cwd=tmp_path, module="lrexp.lr_find")
    assert out.returncode == 0, out.stderr
    found = tmp_path / "found"
    image = matplotlib.image.imread(found / "lr_find.png")
    assert image.shape[0] > 300 and image.std() > 0
    with open(found / "lr_find.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    lrs = [float(r["lr"]) for r in rows]
    assert lrs[0] == pytest.approx(1e-7) and all(b > a for a, b in itertools.pairwise(lrs)) and len(rows) <= 120
    result = json.loads((found / "lr_find.json").read_text())
    assert result["steepest"] < result["minimum"] and result["grid"]
    assert "blew up" in result["stopped"]  # it ran until the loss diverged, well before 10
    line = next(ln for ln in out.stdout.splitlines() if "hydra.sweeper.params.optimizer.lr=" in ln)
    assert line.strip().startswith("python -m lrexp -m +sweep=fair") and ",".join(f"{g:g}" for g in result["grid"]) in line


@pytest.mark.slow
def test_bad_range_settings_are_one_line(tmp_path):
    out = run_cli(["--start", "1", "--end", "0.1"], cwd=tmp_path, module="lrexp.lr_find")
    assert out.returncode == 2 and out.stderr.strip() == "lrexp.lr_find: error: --start=1.0: must be > 0 and below --end (0.1)"


@pytest.mark.slow
def test_the_range_test_is_a_run_of_the_one_loop_so_clipping_applies(tmp_path):
    """Issue 25.6: `optimizer=sgd optimizer.clip_grad_norm=1e-9` cannot train in a run, and so not in the range
    test either (it trained before: lr_find had a loop of its own); without the clip the same test blows up.
    Its run directory is lrexp's own record of the loop: grad_norm every step, the ramp's LRs."""
    from lrexp.record import read_metrics

    clipped = run_cli(
        ["optimizer=sgd", "optimizer.clip_grad_norm=1e-9", "--steps", "100", "--out", "clipped"], cwd=tmp_path, module="lrexp.lr_find"
    )
    free = run_cli(["optimizer=sgd", "--steps", "100", "--out", "free"], cwd=tmp_path, module="lrexp.lr_find")
    assert clipped.returncode == 0 and free.returncode == 0, clipped.stderr + free.stderr
    held, blew = (json.loads((tmp_path / d / "lr_find.json").read_text()) for d in ("clipped", "free"))
    assert held["stopped"] == "reached --end=10" and len(held["lrs"]) == 100
    assert "blew up" in blew["stopped"] or "became" in blew["stopped"]
    rows = read_metrics(tmp_path / "clipped" / "run")
    assert [r["step"] for r in rows] == list(range(100)) and all(r["grad_norm"] is not None for r in rows)
    assert [r["lr"] for r in rows] == pytest.approx(held["lrs"], rel=1e-12)
