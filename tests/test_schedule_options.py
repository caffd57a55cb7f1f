"""Warm-up and floor on any schedule, schedule-free optimizers, momentum and weight decay in the record:
real training runs, through the real CLI where the issue names a command."""

from __future__ import annotations

import csv
import signal
import subprocess
import sys
import time
from pathlib import Path

import matplotlib.image
import pytest
import torch
from torch.optim import lr_scheduler as S

from lrexp.record import read_metrics
from tests.helpers import cli_env, run_cli, summary_json, table_without_time, train_in_process

pytestmark = pytest.mark.slow
PEAK = 1e-3


def test_step_with_warm_up_and_floor_from_the_cli_follows_the_definition_at_every_step(tmp_path):
    """The issue's command: lr_t = peak * (t / W) during warm-up, then 0.01 * peak + 0.99 * StepLR's LR."""
    out = run_cli(
        ["scheduler=step", "scheduler.warmup=${steps:1/20}", "scheduler.floor=0.01", "run.log_every=1", "hydra.run.dir=run"], cwd=tmp_path
    )
    assert out.returncode == 0, out.stderr
    lrs = [r["lr"] for r in read_metrics(tmp_path / "run")]
    steps, warmup = 600, 30  # digits' run length; 1/20 of it
    o = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)
    inner = S.StepLR(o, step_size=95, gamma=0.1)  # ${steps:1/6} of the 570 steps after warm-up
    expected = [PEAK * (t / warmup) for t in range(warmup)]
    for _ in range(steps - warmup):
        expected.append(0.01 * PEAK + 0.99 * o.param_groups[0]["lr"])
        o.step()
        inner.step()
    assert lrs == expected
    s = summary_json(tmp_path / "run")
    assert s["status"] == "completed" and s["lr_markers"][0] == {"step": 30, "label": "warm-up end"}
    assert [m["step"] for m in s["lr_markers"] if m["label"] == "milestone"] == []  # StepLR has no named milestones
    assert matplotlib.image.imread(tmp_path / "run" / "plots" / "lr.png").std() > 0


def test_plateau_with_warm_up(tmp_path):
    train_in_process(
        tmp_path, "scheduler=plateau", "scheduler.warmup=100", "optimizer.lr=3e-3", "run.steps=1500", "run.eval_every=25", "run.log_every=1",
        "task.hidden=[16]",
    )  # fmt: skip
    rows = read_metrics(tmp_path)
    o = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
    reference = S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=2, threshold=1e-3, min_lr=0.0)
    for row in rows:
        t = row["step"]
        assert row["lr"] == (3e-3 * (t / 100) if t < 100 else o.param_groups[0]["lr"]), f"step {t}"
        if row["val_loss"] is not None and t + 1 >= 100:  # it sees the evaluations from the end of warm-up on
            reference.step(row["val_loss"])
    assert min(r["lr"] for r in rows[100:]) < 3e-3, "the plateau must have reduced the LR after warm-up"


def crash_then_resume(tmp_path: Path, *overrides: str) -> None:
    """Kill a real run mid-way (SIGKILL, after a checkpoint), resume it, and compare with an uninterrupted twin."""
    common = [*overrides, "run.log_every=1", "run.checkpoint_every=100", "logger.local.plots=false"]
    whole = run_cli([*common, "hydra.run.dir=whole"], cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrexp", *common, "hydra.run.dir=cut"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    metrics = tmp_path / "cut" / "metrics.csv"
    while not (metrics.exists() and metrics.read_text().count("\n") > 250):
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resumed = run_cli([*common, "hydra.run.dir=cut", "run.resume=true"], cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert table_without_time(read_metrics(tmp_path / "cut")) == table_without_time(read_metrics(tmp_path / "whole"))
    timings = ("wall_time_s", "steps_per_s", "time_to_first_step_s")
    strip = lambda s: {k: v for k, v in s.items() if k not in timings}  # noqa: E731
    assert strip(summary_json(tmp_path / "cut")) == strip(summary_json(tmp_path / "whole"))


def test_a_run_with_warm_up_and_floor_resumes_bit_for_bit_after_kill_9(tmp_path):
    crash_then_resume(tmp_path, "scheduler=cosine_full", "scheduler.warmup=${steps:1/10}", "scheduler.floor=0.1")


def test_schedule_free_adamw_trains_and_resumes_bit_for_bit_after_kill_9(tmp_path):
    crash_then_resume(tmp_path, "scheduler=schedule_free")
    s = summary_json(tmp_path / "whole")
    assert s["optimizer"] == "sf_adamw" and s["optimizer_target"] == "schedulefree.AdamWScheduleFree"
    assert s["final_test_acc"] > 0.95  # it learns


def test_schedule_free_evaluates_at_the_average_and_never_moves_the_trajectory(tmp_path):
    """Evaluating (optimizer.eval(), then .train()) must not change training: runs that evaluate every step
    and every 100 steps log the same training loss at every step."""
    common = ["optimizer=sf_adamw", "scheduler=constant", "run.steps=200", "run.log_every=1", "task.hidden=[32]"]
    often = train_in_process(tmp_path / "often", *common, "run.eval_every=1")
    rarely = train_in_process(tmp_path / "rarely", *common, "run.eval_every=100")
    train = lambda d: [r["train_loss"] for r in read_metrics(d)]  # noqa: E731
    assert train(tmp_path / "often") == train(tmp_path / "rarely")
    assert often["final_val_loss"] == rarely["final_val_loss"]


def test_the_schedule_free_baseline_appears_in_a_sweep_report(tmp_path):
    out = run_cli(
        ["-m", "scheduler=schedule_free,cosine_full", "seed=0,1,2", "run.steps=200", "logger.local.plots=false", "hydra.sweep.dir=s"],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "s" / "summary.csv", newline="") as f:
        table = {r["scheduler"]: r for r in csv.DictReader(f)}
    assert set(table) == {"schedule_free", "cosine_full"} and all(r["completed"] == "3" for r in table.values())
    assert "schedule_free" in (tmp_path / "s" / "report.md").read_text().split("\n\n")[1]  # named in the verdict


def test_momentum_and_weight_decay_are_logged_with_the_lr_as_the_optimizer_applies_them(tmp_path):
    train_in_process(tmp_path, "scheduler=onecycle", "run.steps=300", "run.log_every=1", "task.hidden=[16]", plots=True)
    rows = read_metrics(tmp_path)
    assert list(rows[0])[:4] == ["step", "lr", "momentum", "weight_decay"]
    o = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=PEAK, weight_decay=0.1)
    ref = S.OneCycleLR(o, max_lr=PEAK, total_steps=300, pct_start=0.3, div_factor=25.0, final_div_factor=1e4)
    for row in rows:
        assert (row["lr"], row["momentum"], row["weight_decay"]) == (o.param_groups[0]["lr"], o.param_groups[0]["betas"][0], 0.1)
        o.step()
        ref.step()
    assert len({r["momentum"] for r in rows}) > 100  # OneCycle cycles Adam's beta1
    assert summary_json(tmp_path)["setting_columns"] == ["momentum", "weight_decay"]
    assert matplotlib.image.imread(tmp_path / "plots" / "optimizer.png").std() > 0
