"""The run record on synthetic rows, in milliseconds: summary.json's typed round trip, final and best
values by each metric's declared direction, LR stall diagnostics, the neutral keys, metrics.csv."""

from __future__ import annotations

import math

import pytest

from lrexp.record import (
    TRAIN_LOSS,
    Goal,
    Metric,
    MetricsWriter,
    Status,
    Summary,
    is_neutral,
    metric_columns,
    metric_of,
    read_metrics,
    read_summary,
    summarize,
    write_summary,
)

LOSS = Metric("loss", Goal.MIN, "loss", "log")
ACC = Metric("acc", Goal.MAX, "accuracy", "linear")


def rows_of(lrs, losses=None, val=None, acc=None):
    """metrics.csv-like rows: one per step, with val columns where given (None elsewhere)."""
    out = []
    for s, lr in enumerate(lrs):
        row = {"step": s, "lr": lr, "train_loss": (losses or [1.0] * len(lrs))[s]}
        row["val_loss"] = (val or {}).get(s)
        row["val_acc"] = (acc or {}).get(s)
        out.append(row)
    return out


def test_best_follows_each_metrics_declared_direction():
    rows = rows_of([1.0] * 5, val={0: 2.0, 2: 0.5, 4: 0.7}, acc={0: 0.1, 2: 0.9, 4: 0.8})
    s = Summary(Status.COMPLETED)
    summarize(rows, [LOSS, ACC], s)
    assert s.final == {"train_loss": 1.0, "val_loss": 0.7, "val_acc": 0.8}
    assert (s.best["val_loss"], s.best_step["val_loss"]) == (0.5, 2)
    assert (s.best["val_acc"], s.best_step["val_acc"]) == (0.9, 2)  # the maximum: declared, not guessed


def test_best_ignores_non_finite_values_and_the_final_keeps_them():
    rows = rows_of([1.0] * 3, val={0: 2.0, 1: 1.0, 2: math.nan})
    s = Summary(Status.DIVERGED)
    summarize(rows, [LOSS], s)
    assert s.best["val_loss"] == 1.0 and math.isnan(s.final["val_loss"])


def test_exponential_decay_stalls_where_the_lr_drops_below_a_thousandth_of_its_peak():
    lrs = [0.99**t for t in range(1000)]
    s = Summary(Status.COMPLETED)
    summarize(rows_of(lrs), [LOSS], s)
    assert s.lr_stalled_from_step == 688  # 0.99**688 < 1e-3 <= 0.99**687
    assert s.lr_stalled_fraction == pytest.approx(312 / 1000)
    assert (s.lr_peak, s.lr_final, s.lr_min) == (1.0, lrs[-1], lrs[-1])


@pytest.mark.parametrize(
    "lrs, stalled_from",
    [([1.0] * 10, None), ([1.0 - t / 10 for t in range(10)], None), ([1.0] * 9 + [0.0], 9), ([1.0, 1e-4, 1.0, 1e-4], 3)],
)
def test_a_stall_counts_only_when_the_lr_stays_low_to_the_end(lrs, stalled_from):
    s = Summary(Status.COMPLETED)
    summarize(rows_of(lrs), [LOSS], s)
    assert s.lr_stalled_from_step == stalled_from
    assert s.lr_stalled_fraction == (0.0 if stalled_from is None else (len(lrs) - stalled_from) / len(lrs))


def test_summary_round_trips_through_json_with_flat_metric_keys(tmp_path):
    s = Summary(Status.DIVERGED, task="digits", seed=3, metrics=[LOSS, ACC], diverged_at_step=7, extra={"wandb": {"id": "x"}})
    summarize(rows_of([1.0, 0.5], val={0: 2.0, 1: 1.5}, acc={0: 0.2, 1: 0.3}), [LOSS, ACC], s)
    write_summary(tmp_path, s)
    raw = (tmp_path / "summary.json").read_text()
    for key in ('"status": "diverged"', '"final_val_loss": 1.5', '"best_val_acc": 0.3', '"best_val_acc_step": 1', '"wandb"'):
        assert key in raw, key
    assert read_summary(tmp_path) == s


def test_a_record_lrexp_cannot_read_a_status_from_counts_as_failed():
    assert Status.of("completed") is Status.COMPLETED and Status.of("exploded") is None
    assert Summary.from_json({"status": "exploded"}).status is Status.FAILED
    assert [s.has_result for s in Status] == [True, True, False, False]


@pytest.mark.parametrize(
    "key",
    [
        "run.progress",
        "run.threads",
        "run.resume",
        "run.checkpoint_every",
        "logger",
        "logger.wandb.mode",
        "+logger.wandb.tags",
        "hydra.launcher.n_jobs",
        "hydra/launcher",
    ],
)
def test_neutral_keys_never_change_a_runs_numbers(key):
    assert is_neutral(key)


@pytest.mark.parametrize("key", ["run.steps", "run.progressive", "optimizer.lr", "seed", "scheduler", "loggers.x", "hydrae"])
def test_everything_else_is_part_of_what_a_run_is(key):
    assert not is_neutral(key)


def test_columns_and_their_metrics():
    assert metric_columns(["lr"], [LOSS, ACC]) == [
        "step",
        "lr",
        "train_loss",
        "grad_norm",
        "val_loss",
        "val_acc",
        "test_loss",
        "test_acc",
        "time_s",
    ]
    assert metric_of("val_acc", [LOSS, ACC]) is ACC and metric_of("train_loss", [LOSS]) is TRAIN_LOSS
    assert metric_of("lr", [LOSS]) is None and metric_of("val_bpb", [LOSS]) is None
    assert ACC.title("val") == "validation accuracy" and ACC.better(0.9, 0.8) and LOSS.better(0.8, 0.9)


def test_metrics_csv_round_trips_floats_exactly_and_empty_cells_as_none(tmp_path):
    rows = [
        {"step": 0, "lr": 0.1 + 0.2, "train_loss": 1 / 3, "val_loss": None, "time_s": 0.5},
        {"step": 1, "lr": 1e-300, "train_loss": math.pi, "val_loss": 2.0, "time_s": 1.0},
    ]
    columns = ["step", "lr", "train_loss", "val_loss", "time_s"]
    with MetricsWriter(tmp_path / "metrics.csv", columns, rows[:1]) as w:
        w.append(rows[1])
    assert read_metrics(tmp_path) == rows
