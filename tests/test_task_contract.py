"""The task contract: a task written only in the tests (tests/sine_task.py, tests/conf/task/sine.yaml)
trains end to end through the real CLI and appears in a sweep report with its own metrics, whose
direction, label and scale come from its declaration; nothing in lrexp names it."""

from __future__ import annotations

import csv
import re
import statistics
from pathlib import Path

import pytest

from lrexp.record import read_metrics
from tests.helpers import TEST_PYTHONPATH, TEST_SEARCHPATH, run_cli, summary_json

ROOT = Path(__file__).resolve().parent.parent
SEARCH = TEST_SEARCHPATH
pytestmark = pytest.mark.slow  # real sweeps through the CLI


@pytest.fixture(scope="module")
def sine_sweep(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("sine")
    out = run_cli(
        [
            "-m",
            "task=sine",
            SEARCH,
            "scheduler=cosine_warmup,constant",
            "seed=0,1",
            "optimizer.lr=3e-3",
            "run.steps=150",
            "run.eval_every=50",
            "run.log_every=10",
            "hydra.sweep.dir=sweep",
        ],
        cwd=cwd,
        PYTHONPATH=TEST_PYTHONPATH,
    )
    assert out.returncode == 0, out.stderr
    return cwd / "sweep"


def test_the_record_declares_the_tasks_metrics_and_best_follows_their_direction(sine_sweep):
    run = sine_sweep / "0"
    s = summary_json(run)
    assert s["status"] == "completed" and s["task"] == "sine"
    assert [m["name"] for m in s["metrics"]] == ["mse", "r2"] and s["metrics"][1]["goal"] == "max"
    rows = [r for r in read_metrics(run) if r["val_mse"] is not None]
    assert list(read_metrics(run)[0]) == [
        "step",
        "lr",
        "momentum",
        "weight_decay",
        "train_loss",
        "grad_norm",
        "val_mse",
        "val_r2",
        "test_mse",
        "test_r2",
        "time_s",
    ]
    assert s["best_val_mse"] == min(r["val_mse"] for r in rows)  # lower is better
    assert s["best_val_r2"] == max(r["val_r2"] for r in rows)  # higher is better: declared, not guessed
    assert rows[-1]["val_r2"] > 0.5, "the model must actually learn the sine"
    for name in ("lr", "loss", "val_r2", "overview"):
        assert (run / "plots" / f"{name}.png").stat().st_size > 5000, name


def test_the_sweep_report_ranks_and_tabulates_by_the_tasks_own_metrics(sine_sweep):
    with open(sine_sweep / "summary.csv", newline="") as f:
        table = {r["scheduler"]: r for r in csv.DictReader(f)}
    val = {}
    for sched in ("cosine_warmup", "constant"):
        jobs = [d for d in sine_sweep.iterdir() if d.name.isdigit() and summary_json(d)["scheduler"] == sched]
        val[sched] = statistics.fmean(summary_json(d)["final_val_mse"] for d in jobs)
        mse = statistics.fmean(summary_json(d)["final_test_mse"] for d in jobs)
        r2 = statistics.fmean(summary_json(d)["final_test_r2"] for d in jobs)
        assert float(table[sched]["final_test_mse_mean"]) == pytest.approx(mse, rel=1e-12)
        assert float(table[sched]["final_test_r2_mean"]) == pytest.approx(r2, rel=1e-12)
    # Ranked by the task's own loss on validation (what chose), lower first: declared, not guessed.
    assert [s for s, r in sorted(table.items(), key=lambda kv: int(kv[1]["rank"]))] == sorted(val, key=val.get)
    md = (sine_sweep / "report.md").read_text()
    assert "| final test mse [95% CI] |" in md and "| final test r2 |" in md and "final test mean squared error" in md
    for figure in ("val_mse", "val_r2", "ranking"):
        assert (sine_sweep / "report" / f"{figure}.png").stat().st_size > 5000, figure


@pytest.mark.parametrize(
    "override, says",
    [("task.points=many", "could not be converted to Integer"), ("task.widht=3", "Key 'widht' not in 'SineTaskConfig'")],
)
def test_a_task_of_ones_own_brings_its_schema_from_its_own_package(tmp_path, override, says):
    """The sine task's schema is registered from the tests' own distribution (an entry point in the group
    lrexp.schemas, tests/plugins), so a wrong type or a mistyped key fails when Hydra composes, before
    anything is written, exactly as for lrexp's own tasks; no file in lrexp/ names the task."""
    out = run_cli(["task=sine", SEARCH, override, "hydra.run.dir=run"], cwd=tmp_path, PYTHONPATH=TEST_PYTHONPATH)
    assert out.returncode != 0 and says in out.stderr and "object_type=SineTaskConfig" in out.stderr, out.stderr
    assert not (tmp_path / "run").exists()
    mentions = [p for p in (ROOT / "lrexp").rglob("*.py") if re.search(r"(?<![a-z])sine(?![a-z])|SineTask", p.read_text())]
    assert mentions == []


def test_a_schema_entry_point_that_fails_to_load_is_one_line_naming_it(tmp_path):
    """Another package's broken schema module stops every command at start-up: one line that names the
    entry point and its distribution, not a traceback."""
    dist = tmp_path / "plugins" / "broken_task-0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-task\nVersion: 0\n")
    (dist / "entry_points.txt").write_text("[lrexp.schemas]\nbroken = no_such_module_anywhere\n")
    out = run_cli(["--help"], cwd=tmp_path, PYTHONPATH=str(tmp_path / "plugins"))
    assert out.returncode != 0 and "Traceback" not in out.stderr, out.stderr
    (line,) = out.stderr.strip().splitlines()
    assert "lrexp.schemas entry point broken = no_such_module_anywhere (from broken-task)" in line and "no_such_module" in line
