"""Answers from fewer runs, on real runs (issue 21): schedule-loss laws fitted to three runs predict the
others (python -m lrexp.predict, and finding 7 of the replication suite at CI's scale), the law-optimal
schedule is a config that trains, the report shows the prediction and the tuning budget, and
performance profiles span several sweeps."""

from __future__ import annotations

import csv
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lrexp.compare import compare
from lrexp.record import read_metrics
from lrexp.runs import find_runs
from tests.helpers import cli_env, run_cli, summary_json

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def laws_sweep(tmp_path_factory) -> Path:
    """Finding 7's sweep at CI's scale (scripts/replicate.py --reduced): tinylm_small, 80 steps, 5
    schedules x 2 seeds, analysed into replication.json. One process (the basic launcher): under
    pytest-xdist the cores are taken, and worker processes would only add start-ups."""
    out = tmp_path_factory.mktemp("laws")
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "replicate.py"), "--reduced", "--finding", "7", "--launcher", "basic", "--out", str(out)],
        cwd=out, env=cli_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_finding_7_scores_both_laws_on_the_schedules_they_did_not_see(laws_sweep):
    outcomes = {o["finding"]: o for o in json.loads((laws_sweep / "replication.json").read_text())}
    for finding in ("7a", "7b"):
        o = outcomes[finding]
        assert o["n"] == 2 and o["low"] <= o["mean"] <= o["high"] and o["verdict"] in ("reproduced", "not reproduced", "inconclusive")
        assert "linear" in o["detail"] and "wsd" in o["detail"]  # the two unseen schedules


def test_predict_writes_its_files_and_its_errors_are_the_runs_own(laws_sweep):
    sweep = laws_sweep / "schedule_laws"
    out = run_cli([str(sweep)], cwd=laws_sweep, module="lrexp.predict")
    assert out.returncode == 0, out.stderr
    folder = sweep / "predict"
    for name in ("prediction.json", "prediction.md", "curves.csv", "prediction.png", "ranking.png", "conf/scheduler/law_optimal.yaml"):
        assert (folder / name).stat().st_size > 100, name
    prediction = json.loads((folder / "prediction.json").read_text())
    assert prediction["fit"] == ["constant", "cosine_full", "two_stage"] and set(prediction["laws"]) == {"mpl", "momentum"}
    assert {"linear", "wsd", "exp", "cosine_warmup", "inverse_sqrt"} <= set(prediction["predicted"])  # run or not
    assert "schedule_free" in prediction["skipped"] and "plateau" in prediction["skipped"]
    # The measured curve is the mean over seeds of each run's own validation loss, and each error is
    # |predicted - measured| / measured over the points from 10% of the run on.
    with open(folder / "curves.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["schedule"] == "wsd"]
    dirs = [d for d in sweep.iterdir() if d.name.isdigit() and summary_json(d)["scheduler"] == "wsd"]
    for r in rows:
        values = [next(x["val_loss"] for x in read_metrics(d) if x["step"] == int(r["step"])) for d in dirs]
        assert float(r["measured_mean"]) == pytest.approx(statistics.fmean(values), rel=1e-12)
    scored = [r for r in rows if int(r["step"]) >= 0.1 * 80]
    errors = [abs(float(r["predicted_mpl"]) - float(r["measured_mean"])) / float(r["measured_mean"]) for r in scored]
    (wsd,) = [m for m in prediction["measured"] if m["schedule"] == "wsd"]
    assert wsd["accuracy"]["mpl"]["mean_relative"] == pytest.approx(statistics.fmean(errors), rel=1e-9)
    assert wsd["accuracy"]["mpl"]["worst_relative"] == pytest.approx(max(errors), rel=1e-9)
    # The report of the sweep now shows the prediction, with its figures.
    md = (sweep / "report.md").read_text()
    assert "## Predicted from 3 runs" in md and "law-optimal schedule" in md


def test_the_law_optimal_schedule_runs_as_written(laws_sweep, tmp_path):
    sweep = laws_sweep / "schedule_laws"
    if not (sweep / "predict" / "conf").is_dir():
        assert run_cli([str(sweep)], cwd=laws_sweep, module="lrexp.predict").returncode == 0
    conf = sweep / "predict" / "conf"
    out = run_cli(
        ["experiment=tinylm_small", "run.steps=80", "run.eval_every=10", f"hydra.searchpath=[file://{conf}]", "scheduler=law_optimal",
         "logger.local.plots=false", f"hydra.run.dir={tmp_path / 'run'}"],
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    prediction = json.loads((sweep / "predict" / "prediction.json").read_text())
    knots, factors = prediction["optimal"]["knots"], prediction["optimal"]["factors"]
    rows = read_metrics(tmp_path / "run")
    peak = summary_json(tmp_path / "run")["peak_lr"]
    for row in rows:  # the LR a step applies is the peak times the factor at that step, linear between knots
        assert row["lr"] == pytest.approx(peak * float(np.interp(row["step"], knots, factors)), rel=1e-12, abs=1e-18)
    assert summary_json(tmp_path / "run")["status"] == "completed"


def test_the_report_shows_each_schedules_tuning_budget_and_profiles_span_sweeps(tmp_path):
    """A small LR grid on digits (one LR diverges): best-of-k per schedule in the report, and the
    performance profiles of two sweeps (this grid, and the same at another run length)."""
    for name, steps, report in (("a", 40, []), ("b", 80, ["~hydra.callbacks.comparison_report"])):  # b's report is not read
        out = run_cli(
            ["-m", "scheduler=cosine_full,constant", "optimizer.lr=1e-3,1e-2,10", "seed=0,1", f"run.steps={steps}", "run.eval_every=20",
             "logger.local.plots=false", "hydra/launcher=batched", f"hydra.sweep.dir={name}", *report],
            cwd=tmp_path,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
    md = (tmp_path / "a" / "report.md").read_text()
    assert "## Tuning budget" in md and "| k = 1 | k = 2 | k = 3 |" in md and (tmp_path / "a" / "report" / "budget.png").is_file()
    out = run_cli([str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path / "p")], cwd=tmp_path, module="lrexp.budget")
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "p" / "profiles.csv", newline="") as f:
        profile = {r["schedule"]: r for r in csv.DictReader(f)}
    # Each sweep's score is the tuned one (the report's table); the best of each sweep has ratio 1.
    scores = [{r.group: r.mean for r in compare(find_runs([tmp_path / n])).results} for n in ("a", "b")]
    for schedule, row in profile.items():
        wins = sum(s[schedule] == min(s.values()) for s in scores)
        assert float(row["best (tau = 1)"]) == pytest.approx(wins / 2)
        assert [float(row[f"sweep {i}"]) for i in range(2)] == pytest.approx([s[schedule] for s in scores], rel=1e-12)
    assert sum(float(r["best (tau = 1)"]) for r in profile.values()) == pytest.approx(1.0)
    assert (tmp_path / "p" / "profiles.png").stat().st_size > 5000 and math.isfinite(scores[0]["cosine_full"])
