"""Multirun sweeps under the real launchers, and the comparison report they leave behind.

Every number the report's table states is recomputed here from the runs' own metrics.csv.
"""

from __future__ import annotations

import csv
import html
import json
import math
import os
import re
import shutil
import statistics
import subprocess
from pathlib import Path

import matplotlib.image
import pytest
import yaml
from scipy import stats as sp

from lrexp.record import read_metrics
from tests.helpers import run_cli, summary_json

# End to end: real training runs and real processes (the fast tier is pytest -m 'not slow').
pytestmark = pytest.mark.slow

SHORT = ["run.steps=40", "run.log_every=5", "run.eval_every=20", "logger.local.plots=false"]


def job_dirs(sweep: Path) -> list[Path]:
    return sorted((p for p in sweep.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))


def overrides(run_dir: Path) -> dict[str, str]:
    return dict(o.split("=", 1) for o in yaml.safe_load((run_dir / ".hydra" / "overrides.yaml").read_text()))


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def basic_sweep(tmp_path_factory) -> Path:
    """2 schedules x 2 peak LRs (one of them diverges) x 3 seeds under Hydra's basic launcher."""
    cwd = tmp_path_factory.mktemp("basic")
    out = run_cli(["-m", "scheduler=exp,cosine", "optimizer.lr=1e-3,1000", "seed=0,1,2", *SHORT, "hydra.sweep.dir=sweep"], cwd=cwd)
    assert out.returncode == 0, out.stderr
    return cwd / "sweep"


def test_basic_sweep_leaves_one_complete_run_per_job_and_one_report(basic_sweep):
    dirs = job_dirs(basic_sweep)
    assert len(dirs) == 12
    for d in dirs:
        assert (d / "metrics.csv").is_file() and (d / ".hydra" / "config.yaml").is_file()
        assert summary_json(d)["status"] == ("diverged" if overrides(d)["optimizer.lr"] == "1000" else "completed")
    for name in ("report.html", "report.md", "summary.csv", "cells.csv"):
        assert (basic_sweep / name).is_file(), name
    for fig in ("ranking", "lr", "train_loss", "val_loss", "val_acc", "sensitivity"):
        assert (basic_sweep / "report" / f"{fig}.png").stat().st_size > 5000, fig


def test_report_table_matches_the_runs_own_metrics(basic_sweep):
    """Each schedule at its best LR, chosen on validation, and ranked on validation; then, on the held-out
    test split: the mean and its 95% t interval, the paired difference from the reference (the best on
    validation) with its interval, seeds won, Holm's p, and the claim the margin allows. Every number
    recomputed here, with scipy, from each run's own metrics.csv."""
    by_cell: dict[tuple, list[Path]] = {}
    for d in job_dirs(basic_sweep):
        o = overrides(d)
        by_cell.setdefault((o["scheduler"], o["optimizer.lr"]), []).append(d)
    test, val = {}, {}  # schedule -> seed -> final test loss, at the LR validation chose; schedule -> mean final val loss
    for sched in {s for s, _ in by_cell}:
        lr = min((lr for s, lr in by_cell if s == sched), key=lambda lr: mean_val(by_cell[(sched, lr)]))
        assert lr == "0.001"  # the diverging LR can never be chosen
        test[sched] = {int(overrides(d)["seed"]): last_row(d)["test_loss"] for d in by_cell[(sched, lr)]}
        val[sched] = mean_val(by_cell[(sched, lr)])
    order = sorted(test, key=lambda s: val[s])
    table = read_csv(basic_sweep / "summary.csv")
    assert [r["scheduler"] for r in table] == order  # ranked by validation, which chose; test only reports
    best = test[order[0]]
    margin = 0.005 * statistics.fmean(best.values())  # report.margin x the reference's loss
    for rank, row in enumerate(table, 1):
        values = list(test[row["scheduler"]].values())
        n, mean, sd = len(values), statistics.fmean(values), statistics.stdev(values)
        half = sp.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
        assert int(row["rank"]) == rank and int(row["runs"]) == 3 and row["settings"] == "optimizer.lr=0.001" and row["split"] == "test"
        assert float(row["final_test_loss_mean"]) == pytest.approx(mean, rel=1e-12)
        assert float(row["final_test_loss_std"]) == pytest.approx(sd, rel=1e-12)
        assert (float(row["final_test_loss_ci_low"]), float(row["final_test_loss_ci_high"])) == pytest.approx(
            (mean - half, mean + half), rel=1e-9
        )
        assert float(row["final_val_loss_mean"]) == pytest.approx(val[row["scheduler"]], rel=1e-12)
        if rank == 1:
            assert row["diff_mean"] == "" and row["p_holm"] == "" and row["claim"] == "reference"
            continue
        diffs = [test[row["scheduler"]][s] - best[s] for s in sorted(best)]
        d_mean, d_half = statistics.fmean(diffs), sp.t.ppf(0.975, 2) * statistics.stdev(diffs) / math.sqrt(3)
        assert float(row["diff_mean"]) == pytest.approx(d_mean, rel=1e-9)
        assert (float(row["diff_ci_low"]), float(row["diff_ci_high"])) == pytest.approx((d_mean - d_half, d_mean + d_half), rel=1e-9)
        assert int(row["wins"]) == sum(d < 0 for d in diffs) and int(row["pairs"]) == 3 and row["paired"] == "True"
        p = sp.ttest_rel(list(test[row["scheduler"]].values()), list(best.values())).pvalue
        assert float(row["p"]) == pytest.approx(p, rel=1e-9) and float(row["p_holm"]) == pytest.approx(p, rel=1e-9)  # one pair
        assert float(row["margin"]) == pytest.approx(margin, rel=1e-12)
        verdict = (basic_sweep / "report.md").read_text()
        won = p < 0.05 and d_mean - d_half > margin
        assert row["claim"] == ("worse" if won else row["claim"]) and (row["claim"] == "worse") == won
        assert (f"{order[0]} (at optimizer.lr=0.001, chosen on validation) wins" in verdict) == won
        assert (f"No winner at 3 seeds: {order[0]} is best on validation" in verdict) == (not won)
    cells = read_csv(basic_sweep / "cells.csv")
    assert sorted((c["scheduler"], c["optimizer.lr"], c["diverged"]) for c in cells) == [
        ("cosine", "0.001", "0"),
        ("cosine", "1000", "3"),
        ("exp", "0.001", "0"),
        ("exp", "1000", "3"),
    ]
    md = (basic_sweep / "report.md").read_text()
    assert "exp at optimizer.lr=1000: 3 of 3 runs diverged (at step" in md and "Grid edge" in md  # 0.001: the lowest LR of this grid
    assert "## Rank robustness" in md


def mean_val(dirs: list[Path]) -> float:
    """A cell's mean final validation loss (inf where a seed diverged: such a cell is never chosen)."""
    rows = [last_row(d) for d in dirs]
    return math.inf if any(summary_json(d)["status"] != "completed" for d in dirs) else statistics.fmean(r["val_loss"] for r in rows)


def last_row(run_dir: Path) -> dict:
    return read_metrics(run_dir)[-1]


def test_the_same_report_comes_back_from_the_cli(basic_sweep, tmp_path):
    copy = tmp_path / "sweep"
    shutil.copytree(basic_sweep, copy)
    for name in ("report.html", "report.md", "summary.csv", "cells.csv"):
        (copy / name).unlink()
    shutil.rmtree(copy / "report")
    out = run_cli([str(copy)], cwd=tmp_path, module="lrexp.report")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(copy / "report.html")
    assert read_csv(copy / "summary.csv") == read_csv(basic_sweep / "summary.csv")
    assert (copy / "report.md").read_text() == (basic_sweep / "report.md").read_text()


def test_report_can_group_by_any_key(basic_sweep, tmp_path):
    out = run_cli([str(basic_sweep), "--group-by", "optimizer.lr", "--out", str(tmp_path / "r")], cwd=tmp_path, module="lrexp.report")
    assert out.returncode == 0, out.stderr
    table = read_csv(tmp_path / "r" / "summary.csv")
    assert [r["optimizer.lr"] for r in table] == ["0.001", "1000"]
    assert table[1]["rank"] == "" and int(table[1]["diverged"]) == 3  # every run at lr=1000 diverged: unranked
    bad = run_cli([str(basic_sweep), "--group-by", "nope", "--out", str(tmp_path / "r2")], cwd=tmp_path, module="lrexp.report")
    assert bad.returncode == 2 and bad.stderr.startswith("lrexp.report: error: --group-by=nope")


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_parallel_and_cluster_launchers_complete_every_job(tmp_path, launcher):
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    out = run_cli(
        ["-m", f"hydra/launcher={launcher}", *extra, "scheduler=step,cosine", "seed=0", *SHORT, "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    dirs = job_dirs(tmp_path / "sweep")
    assert [overrides(d)["scheduler"] for d in dirs] == ["step", "cosine"]
    for d in dirs:
        s = summary_json(d)
        assert s["status"] == "completed" and [r["step"] for r in read_metrics(d)] == [0, 5, 10, 15, 20, 25, 30, 35, 39]
    if launcher == "joblib":  # two parallel jobs split the cores instead of fighting over them
        cores = len(os.sched_getaffinity(0))
        assert {summary_json(d)["threads"] for d in dirs} == {max(1, cores // 2)}
    assert [r["scheduler"] for r in read_csv(tmp_path / "sweep" / "summary.csv")] != []
    assert (tmp_path / "sweep" / "report.html").is_file()


# --- report.html in a real browser -----------------------------------------------------------------

PROBE = """<script>
window.addEventListener("load", () => {
  document.body.dataset.check = JSON.stringify({
    images: [...document.images].map(i => i.complete ? i.naturalWidth : -1),
    rows: document.querySelectorAll("table#summary tbody tr").length,
    headline: document.getElementById("headline").textContent,
    overflow: document.documentElement.scrollWidth - window.innerWidth,
  });
});
</script>"""


def chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("LREXP_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is required here (.ci/run installs Debian's chromium)")
        pytest.skip("no chromium on this machine (apt-get install -y chromium)")
    return exe


def test_report_html_opens_offline_in_a_real_browser_with_every_image_decoded(basic_sweep, tmp_path):
    page = tmp_path / "report.html"
    page.write_text((basic_sweep / "report.html").read_text().replace("</body>", PROBE + "</body>"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1366,900",
        "--virtual-time-budget=10000",
    ]
    out = subprocess.run([chromium(), *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    match = re.search(r'data-check="([^"]*)"', out.stdout)
    assert match, f"the page did not finish loading: {out.stderr[-2000:]}"
    check = json.loads(html.unescape(match.group(1)))
    figures = len(list((basic_sweep / "report").glob("*.png")))
    assert len(check["images"]) == figures and all(w > 0 for w in check["images"]), check["images"]
    assert check["rows"] == 2 and (" wins: " in check["headline"] or check["headline"].startswith("No winner at"))
    assert check["overflow"] <= 0, "the report must fit a laptop screen without horizontal scrolling"
    shot = tmp_path / "shot.png"
    subprocess.run([chromium(), *flags, f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert matplotlib.image.imread(shot).shape[1] == 1366
