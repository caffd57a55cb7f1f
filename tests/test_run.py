"""`python -m lrexp` end to end: the whole output contract, determinism, plots that decode, and training that works."""

from __future__ import annotations

import csv
import json
import math

import matplotlib.image
import pytest

from lrexp.record import read_metrics
from lrexp.tasks.digits import DigitsTask
from tests.helpers import run_cli, summary_json, table_without_time, train_in_process

# End to end: real training runs and real processes (the fast tier is pytest -m 'not slow').
pytestmark = pytest.mark.slow

CONTRACT_COLUMNS = [
    "step", "lr", "momentum", "weight_decay", "train_loss", "grad_norm", "val_loss", "val_acc", "test_loss", "test_acc", "time_s"
]  # fmt: skip
PLOTS = ["lr.png", "loss.png", "val_acc.png", "overview.png"]  # one figure per metric the task declares beyond its loss


def test_cli_run_leaves_the_whole_output_contract(tmp_path):
    run_dir = tmp_path / "run"
    out = run_cli(
        ["scheduler=multistep", "run.steps=45", "run.log_every=4", "run.eval_every=20", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr

    # metrics.csv: header, then rows at every log interval, every eval and the last step.
    with open(run_dir / "metrics.csv", newline="") as f:
        reader = csv.reader(f)
        header = next(reader)
        raw = list(reader)
    assert header == CONTRACT_COLUMNS
    rows = read_metrics(run_dir)
    logged = [r["step"] for r in rows]
    assert logged == sorted(set(range(0, 45, 4)) | {0, 20, 40, 44})
    evaluated = [r["step"] for r in rows if r["val_loss"] is not None]
    assert evaluated == [0, 20, 40, 44]
    for r, cells in zip(rows, raw):
        assert (r["val_loss"] is None) == (cells[6] == "") == (cells[7] == "")  # empty where not evaluated
        assert (r["step"] != 44) == (cells[8] == "") == (cells[9] == "")  # the test split: at the last step only
        assert (r["momentum"], r["weight_decay"]) == (0.9, 0.1)  # AdamW's beta1 and weight decay, as applied
        assert r["lr"] > 0 and r["train_loss"] > 0 and r["time_s"] >= 0
        assert 0 < r["grad_norm"] < math.inf  # the gradient norm of the row's own step
    assert [r["time_s"] for r in rows] == sorted(r["time_s"] for r in rows)
    assert rows[0]["lr"] == 1e-3 and rows[-1]["lr"] == pytest.approx(1e-5)  # milestones 15 and 30 at 45 steps

    # summary.json
    s = summary_json(run_dir)
    assert s["status"] == "completed"
    assert (s["scheduler"], s["optimizer"], s["task"], s["seed"], s["steps"]) == ("multistep", "adamw", "digits", 0, 45)
    assert s["final_val_loss"] == rows[-1]["val_loss"] and s["final_val_acc"] == rows[-1]["val_acc"]
    assert s["best_val_loss"] == min(r["val_loss"] for r in rows if r["val_loss"] is not None)
    assert s["best_val_acc"] == max(r["val_acc"] for r in rows if r["val_acc"] is not None)
    assert (s["final_test_loss"], s["final_test_acc"]) == (rows[-1]["test_loss"], rows[-1]["test_acc"])
    assert rows[-1]["test_loss"] != rows[-1]["val_loss"] and "best_test_loss" not in s  # nothing is chosen on test
    assert s["wall_time_s"] > 0 and s["steps_per_s"] > 0
    assert s["lr_markers"] == [{"step": 15, "label": "milestone"}, {"step": 30, "label": "milestone"}]

    # plots/ decode as real images; Hydra's own files are there.
    for name in PLOTS:
        image = matplotlib.image.imread(run_dir / "plots" / name)
        assert image.ndim == 3 and image.shape[0] > 200 and image.shape[1] > 300 and image.std() > 0
    for name in ("config.yaml", "hydra.yaml", "overrides.yaml"):
        assert (run_dir / ".hydra" / name).is_file()
    assert (run_dir / "lrexp.log").is_file() and (run_dir / "checkpoint.pt").is_file()


def test_default_output_dir_is_under_the_working_directory(tmp_path):
    out = run_cli(["run.steps=6", "run.log_every=2", "run.eval_every=3", "logger.local.plots=false"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    (run_dir,) = list((tmp_path / "outputs").glob("*/*"))
    assert summary_json(run_dir)["status"] == "completed"


def test_same_config_and_seed_give_identical_metrics(tmp_path, quick):
    a = train_in_process(tmp_path / "a", *quick, "seed=3")
    b = train_in_process(tmp_path / "b", *quick, "seed=3")
    assert table_without_time(read_metrics(tmp_path / "a")) == table_without_time(read_metrics(tmp_path / "b"))
    keep = lambda s: {k: v for k, v in s.items() if not k.endswith(("_s", "per_s"))}  # noqa: E731 - timings differ
    assert keep(a) == keep(b)
    train_in_process(tmp_path / "c", *quick, "seed=4")
    assert table_without_time(read_metrics(tmp_path / "c")) != table_without_time(read_metrics(tmp_path / "a"))


def test_the_default_run_trains_well(tmp_path):
    """The default peak LR suits the default task: digits reaches high accuracy well before 3000 steps."""
    s = train_in_process(tmp_path, "run.steps=600", "scheduler.T_max=600")
    assert s["final_val_acc"] > 0.95 and s["final_val_loss"] < 0.2


def test_exponential_decay_stall_is_reported(tmp_path):
    """ExponentialLR(0.99) per step: the LR is < 1e-3 x peak from step ~688 on; the summary says so."""
    s = train_in_process(tmp_path, "scheduler=exp", "run.steps=1000", "run.log_every=1", "task.hidden=[16]")
    assert s["lr_stalled_from_step"] == 688  # 0.99**688 < 1e-3 <= 0.99**687
    assert s["lr_stalled_fraction"] == pytest.approx(312 / 1000)


class TwoGroups(DigitsTask):
    """Digits with weights and biases in separate, named parameter groups (the second at half the LR)."""

    def param_groups(self):
        weights = [p for p in self.model.parameters() if p.ndim == 2]
        biases = [p for p in self.model.parameters() if p.ndim == 1]
        return [{"params": weights, "name": "weights"}, {"params": biases, "name": "biases", "lr": 5e-4}]


def test_several_param_groups_get_one_lr_column_each(tmp_path, quick):
    """Groups named by the task get lr_<name> columns; `lr` stays the first group's."""
    train_in_process(tmp_path, *quick, "task._target_=tests.test_run.TwoGroups", "scheduler=constant")
    rows = read_metrics(tmp_path)
    assert list(rows[0]) == [
        "step", "lr", "lr_weights", "lr_biases", "momentum", "momentum_weights", "momentum_biases",
        "weight_decay", "weight_decay_weights", "weight_decay_biases", "train_loss", "grad_norm", "val_loss", "val_acc", "test_loss", "test_acc",
            "time_s",
    ]  # fmt: skip
    assert all(r["lr"] == r["lr_weights"] == 1e-3 and r["lr_biases"] == 5e-4 for r in rows)
    assert json.loads((tmp_path / "summary.json").read_text())["lr_columns"] == ["lr", "lr_weights", "lr_biases"]
