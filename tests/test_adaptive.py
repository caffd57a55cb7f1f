"""hydra/sweeper=adaptive on real runs: a sweep through the parallel launcher decides in rounds, drops what
diverged, reports after every round and at the end, and a second start trains nothing twice; a sweep killed
mid-round (SIGTERM, as SLURM preempts) continues from disk; bad settings are one line; and on real null runs
(tests/data/pools, a snapshot of real digits runs) its false-claim rate over every look stays at or below 5%
while a fixed test read after every round does not. The SLURM sweep is in tests/test_slurm.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from lrexp.protocol import SEQUENTIAL_PROTOCOL
from tests.helpers import cli_env, run_cli, summary_json

ROOT = Path(__file__).resolve().parent.parent
POOLS = ROOT / "tests" / "data" / "pools"
# 2 schedules x 2 LRs; lr=1000 diverges on every seed, far from any edge: it is dropped after round 1.
SWEEP = [
    "-m", "hydra/sweeper=adaptive", "scheduler=cosine_full,exp", "optimizer.lr=1e-3,1000", "run.steps=150", "run.eval_every=50",
    "logger.local.plots=false", "hydra.sweeper.seeds.max=4", "hydra.sweep.dir=sweep",
]  # fmt: skip


def jobs(sweep: Path) -> Counter:
    """How many job directories each (overrides without run.resume) has."""
    out: Counter = Counter()
    for f in sweep.glob("*/.hydra/overrides.yaml"):
        out[tuple(sorted(o for o in yaml.safe_load(f.read_text()) if not o.startswith("run.resume=")))] += 1
    return out


@pytest.mark.slow
def test_an_adaptive_sweep_decides_in_rounds_reports_and_trains_nothing_twice(tmp_path):
    done = run_cli([*SWEEP, "hydra/launcher=parallel"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "sweep"
    log = done.stdout + done.stderr
    assert "adaptive sweep: round 1: 8 runs, seeds 0-1 of 4 cells" in log and "after round 1:" in log
    counts = jobs(sweep)
    assert set(counts.values()) == {1}  # one directory per (cell, seed)
    seeds_of = Counter(dict(o.split("=", 1) for o in key)["optimizer.lr"] for key in counts)
    assert seeds_of["1000"] == 4  # 2 seeds x 2 schedules, then dropped
    design = json.loads((sweep / "adaptive.json").read_text())
    assert design["design"]["seeds"] == {"min": 2, "max": 4, "step": 1} and len(design["cells"]) == 4
    md = (sweep / "report.md").read_text()
    assert "## Adaptive design" in md and "| round | seeds | runs | launched for | decided after it | dropped |" in md
    assert "- optimizer.lr=1000 of cosine_full dropped after round 1: diverged on seed 0" in md
    assert " ".join(SEQUENTIAL_PROTOCOL.split()) in " ".join(md.split())
    assert f"against 16 runs and {16 * 150:,} steps for the fixed design" in md and "Not finished" not in md
    assert (sweep / "report.html").is_file() and (sweep / "summary.csv").is_file()

    before = {p: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json")}
    again = run_cli([*SWEEP, "hydra/launcher=parallel"], cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json")} == before  # found on disk, nothing retrained
    assert "adaptive sweep: stopped after" in again.stdout + again.stderr


@pytest.mark.slow
def test_a_sweep_killed_mid_round_continues_with_the_same_command(tmp_path):
    """SIGTERM (what SLURM sends the sweeper job on preemption) while a round trains: the run in training
    writes its checkpoint and the sweep stops; the same command resumes that run and finishes the sweep."""
    args = [*SWEEP, "run.steps=600", "hydra.sweeper.seeds.max=5", "run.checkpoint_every=50"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrexp", *args], cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + 300
    while "round 2:" not in seen and time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen += line
    assert "round 2:" in seen, seen[-3000:]
    sweep = tmp_path / "sweep"

    def training() -> bool:  # a round-2 run between two checkpoints: it has one, and no record yet
        return any(not (c.parent / "summary.json").exists() for c in sweep.glob("*/checkpoint.pt"))

    while not training() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert training(), "no run was seen training"
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    assert proc.returncode != 0, (seen + rest)[-3000:]
    finished = {p: p.stat().st_mtime_ns for p in sweep.glob("*/summary.json") if summary_json(p.parent)["status"] == "completed"}
    assert "Not finished: round 2 needs seed 2 of 2 cells." in (sweep / "report.md").read_text()  # where it stood

    done = run_cli(args, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(jobs(sweep).values()) == {1}  # every (cell, seed) in one directory: resumed there, not again elsewhere
    assert all(p.stat().st_mtime_ns == t for p, t in finished.items())  # finished runs kept as they were
    statuses = Counter(summary_json(p.parent)["status"] for p in sweep.glob("*/summary.json"))
    assert statuses["interrupted"] == 0 and statuses["diverged"] == 4 and statuses["completed"] >= 6  # lr=1000, then rounds 1 and 2
    resumed = [f.parent.parent for f in sweep.glob("*/.hydra/overrides.yaml") if "run.resume=true" in f.read_text()]
    assert len(resumed) == 1 and summary_json(resumed[0])["status"] == "completed"  # the run SIGTERM stopped, continued
    assert "stopped after" in done.stdout + done.stderr and "## Adaptive design" in (sweep / "report.md").read_text()
    assert "Not finished" not in (sweep / "report.md").read_text()


@pytest.mark.parametrize(
    ("overrides", "first_words"),
    [
        (["hydra.sweeper.seeds.min=1"], "hydra.sweeper.seeds.min=1: must be an integer >= 2"),
        (["hydra.sweeper.seeds.max=1"], "hydra.sweeper.seeds.max=1: must be an integer >= seeds.min (2)"),
        (["hydra.sweeper.spending=linear"], "hydra.sweeper.spending='linear': allowed: pocock, obrien_fleming"),
        (["hydra.sweeper.max_runs=3"], "hydra.sweeper.max_runs=3: the first round alone needs 4 runs"),
        (["scheduler=cosine"], "scheduler='cosine': an adaptive sweep compares schedules"),
        (["seed=0,1"], "seed='0,1': the adaptive sweeper owns the seed"),
        (["optimizer.lr=interval(0.001,0.1)"], "optimizer.lr='interval(0.001,0.1)': the adaptive sweeper sweeps lists"),
        (["run.threads=1,2"], "run.threads='1,2': does not change a run's numbers"),
    ],
)
def test_a_bad_sweeper_setting_is_one_line_and_writes_nothing(tmp_path, overrides, first_words):
    base = ["-m", "hydra/sweeper=adaptive", "scheduler=cosine_full,linear", "hydra.sweep.dir=sweep"]
    if overrides == ["scheduler=cosine"]:
        base = [a for a in base if not a.startswith("scheduler=")]
    done = run_cli([*base, *overrides], cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"lrexp: error: {first_words}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "sweep").exists()


# --- validity on real null runs ----------------------------------------------------------------------------


def replay(*args: str) -> dict:
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "replay_sweeper.py"), *args], env=cli_env(), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


@pytest.mark.slow
@pytest.mark.parametrize("arms", [3, 4])
def test_on_real_null_runs_the_sequential_design_claims_no_more_than_five_percent(arms):
    """One schedule's 96 real digits runs (2 LRs x 48 seeds) dealt 3000 times into arms that share no run: any
    claim of a difference, at any look, is false. 3000 deals: the rate of this pool, converged (the deals reuse
    its runs: 500 of them gave 5.4% with 3 arms, all 3000 4.9%; docs/adaptive.md gives every figure). The fixed test
    read after every round is the contrast: five times as many false claims."""
    result = replay("--null", str(POOLS / "digits_null"), "--arms", str(arms), "--replays", "3000", "--peeking", "100")
    assert result["replays"] == 3000 and result["looks"]["max"] == 11
    assert result["false_claim"]["rate"] <= 0.05, result["false_claim"]
    assert result["false_peeking"]["rate"] >= 3 * max(result["false_claim"]["rate"], 0.02), result["false_peeking"]


@pytest.mark.slow
def test_on_a_real_pool_the_design_agrees_with_the_fixed_one_for_under_40_percent_of_its_compute():
    """The issue's goal on the kept digits pool (4 schedules x 5 LRs x 16 seeds of real runs), 200 seeded deals
    of 12 seeds: no decision contrary to the fixed design at 12 seeds (every cell, every seed), its verdict in
    at least 90% of deals, at most 40% of its optimizer steps, and pairs decided that 3 seeds leave open.
    docs/adaptive.md gives the 500-deal figures (39%, 100%, 1.73 pairs)."""
    result = replay(str(POOLS / "digits"), "--replays", "200")
    assert result["replays"] == 200 and result["contradicts"]["max"] == 0
    assert result["agrees"]["rate"] >= 0.9 and result["steps"]["mean"] <= 0.4, (result["agrees"], result["steps"])
    assert result["decided_where_few_cannot"]["mean"] >= 1.0


@pytest.mark.slow
def test_the_report_compares_only_the_runs_the_design_used(tmp_path):
    """Runs in an adaptive sweep's directory that its design never asked for (added by hand, or made by another
    version of it) are named and left out, so the table, the verdict and the intervals rest on the same seeds."""
    from lrexp.report import write_report

    sweep = tmp_path / "sweep"
    done = run_cli([*SWEEP, "hydra.sweeper.seeds.max=2"], cwd=tmp_path, timeout=600)  # one round: seeds 0 and 1
    assert done.returncode == 0, done.stderr[-3000:]
    extra = run_cli(["scheduler=exp", "optimizer.lr=1e-3", "run.steps=150", "run.eval_every=50", "logger.local.plots=false", "seed=7",
                     f"hydra.run.dir={sweep / 'by_hand'}"], cwd=tmp_path)  # fmt: skip
    assert extra.returncode == 0, extra.stderr[-3000:]
    write_report([sweep], sweep)
    md = (sweep / "report.md").read_text()
    assert "1 runs of the directory lie beyond the design's looks (seeds it did not ask for): not compared." in md
    assert "by_hand" not in md.split("## Runs")[0] and "paired over 2 seeds" in md
