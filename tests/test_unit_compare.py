"""Comparison on synthetic runs, in milliseconds: what varies, cells and their best, the table's
statistics, ranking by the declared loss whatever its direction, the verdict's wording, curve bands."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest

from lrexp.compare import Run, band, compare, find_runs, headline, varying_keys
from lrexp.record import Goal, Metric, Status, Summary

LOSS = Metric("loss", Goal.MIN, "loss", "log")
ACC = Metric("acc", Goal.MAX, "accuracy", "linear")


def run(schedule: str, seed: int, loss: float, status: Status = Status.COMPLETED, metrics=(LOSS, ACC), **overrides) -> Run:
    s = Summary(
        status, scheduler=schedule, seed=seed, metrics=list(metrics), final={"val_loss": loss, "val_acc": 1 - loss}, best={"val_loss": loss}
    )
    rows = [{"step": 0, "val_loss": loss + 1.0}, {"step": 10, "val_loss": loss}]
    return Run(Path(f"/runs/{schedule}/{seed}"), s, rows, {"scheduler": schedule, "seed": str(seed), **overrides})


def test_varying_keys_leave_out_neutral_keys_and_keys_that_do_not_vary():
    runs = [
        run("a", 0, 1.0, **{"run.threads": "1", "optimizer.lr": "0.1", "logger": "wandb"}),
        run("b", 1, 1.0, **{"run.threads": "2", "optimizer.lr": "0.1", "hydra.launcher.n_jobs": "3"}),
    ]
    assert varying_keys(runs) == ["scheduler", "seed"]


def test_each_schedule_is_compared_at_its_best_cell_with_mean_and_sample_std():
    runs = [
        run(s, seed, loss, **{"optimizer.lr": lr})
        for s, lr, losses in [("a", "0.1", [0.5, 0.7]), ("a", "0.01", [0.3, 0.4]), ("b", "0.1", [0.2, 0.6]), ("b", "0.01", [0.9, 0.8])]
        for seed, loss in enumerate(losses)
    ]
    c = compare(runs)
    assert c.group_key == "scheduler" and c.groups == ["a", "b"]  # a: 0.35 at lr 0.01 beats b: 0.4 at lr 0.1
    a, b = c.table
    assert (a["settings"], a["final_val_loss_mean"], a["final_val_loss_std"]) == ("optimizer.lr=0.01", 0.35, statistics.stdev([0.3, 0.4]))
    assert (b["settings"], b["rank"], b["final_val_acc_mean"]) == ("optimizer.lr=0.1", 2, pytest.approx(0.6))


def test_a_cell_with_a_diverged_run_never_beats_a_cell_that_completed():
    runs = [
        run("a", 0, 0.1, **{"optimizer.lr": "1"}),
        run("a", 1, 0.1, Status.DIVERGED, **{"optimizer.lr": "1"}),
        run("a", 0, 0.5, **{"optimizer.lr": "0.1"}),
        run("a", 1, 0.5, **{"optimizer.lr": "0.1"}),
        run("b", 0, 0.9),
        run("b", 1, 0.9),
    ]
    row = compare(runs, "scheduler").table[0]
    assert row["settings"] == "optimizer.lr=0.1" and row["final_val_loss_mean"] == 0.5


def test_failed_and_interrupted_runs_count_once_as_without_result():
    runs = [run("a", 0, 0.5), run("a", 1, 0.5, Status.FAILED), run("a", 2, 0.5, Status.INTERRUPTED), run("a", 3, 0.5, Status.DIVERGED)]
    (row,) = compare(runs).table
    assert (row["runs"], row["completed"], row["diverged"], row["failed"]) == (4, 1, 1, 2)
    assert row["final_val_loss_std"] is None  # one completed run: no spread, not a spread of 0


def test_a_higher_is_better_loss_ranks_the_highest_first():
    score = Metric("score", Goal.MAX, "score", "linear")

    def scored(schedule, seed, value):
        s = Summary(Status.COMPLETED, scheduler=schedule, seed=seed, metrics=[score], final={"val_score": value})
        return Run(Path(f"/r/{schedule}{seed}"), s, [], {"scheduler": schedule, "seed": str(seed)})

    c = compare([scored("low", 0, 0.2), scored("low", 1, 0.3), scored("high", 0, 0.8), scored("high", 1, 0.9)])
    assert c.groups == ["high", "low"] and headline(c).startswith("high wins with a final validation score of 0.8500")
    assert "above the runner-up" in headline(c)


def test_the_verdict_weighs_the_gap_against_the_seed_spread():
    clear = compare([run("a", s, v) for s, v in enumerate([0.10, 0.11])] + [run("b", s, v) for s, v in enumerate([0.50, 0.51])])
    assert "larger than the seed-to-seed spread" in headline(clear)
    tied = compare([run("a", s, v) for s, v in enumerate([0.1, 0.5])] + [run("b", s, v) for s, v in enumerate([0.2, 0.45])])
    assert "not a clear win" in headline(tied)
    single = compare([run("a", 0, 0.1), run("b", 0, 0.2)])
    assert "no seed spread to weigh the gap against" in headline(single)


def test_band_aligns_runs_by_step_and_drops_runs_that_stopped():
    def r(points):
        return Run(Path("/r"), Summary(Status.COMPLETED), [{"step": s, "m": v} for s, v in points], {})

    b = band([r([(0, 1.0), (10, 3.0)]), r([(0, 3.0)])], "m")
    assert (b.steps, b.mean, b.low, b.high, b.n) == ([0, 10], [2.0, 3.0], [1.0, 3.0], [3.0, 3.0], [2, 1])
    sd = band([r([(0, 1.0)]), r([(0, 3.0)])], "m", spread="std")
    assert (sd.low, sd.high) == ([2.0 - statistics.stdev([1, 3])], [2.0 + statistics.stdev([1, 3])])
    smooth = band([r([(0, 1.0), (1, 3.0)])], "m", smoothing=0.5)
    assert smooth.mean == [1.0, pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)]  # debiased EMA: no pull towards 0


def test_find_runs_reads_sweep_directories_in_numeric_order(tmp_path):
    for job in (0, 2, 10):
        d = tmp_path / "sweep" / str(job)
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"status": "completed", "seed": job}))
    runs = find_runs([tmp_path / "sweep"])
    assert [r.dir.name for r in runs] == ["0", "2", "10"] and [r.summary.seed for r in runs] == [0, 2, 10]
    with pytest.raises(FileNotFoundError):
        find_runs([tmp_path / "nowhere"])
