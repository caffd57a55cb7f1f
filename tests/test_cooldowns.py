"""hydra/sweeper=cooldowns on real runs: trunks, then branches, through real launchers; every branch equal to its
twin trained from step 0; the report's loss-vs-budget section and compute; a second run of the same command
trains nothing; bad settings are one line."""

from __future__ import annotations

import pytest

from lrexp.record import read_metrics
from tests.helpers import run_cli, summary_json, table_without_time

# Budgets 60 and 120 steps, cooldowns of 25% and 50%, two shapes, two seeds: per seed one trunk of 120
# steps and 8 branches (the 8 twins from step 0 with from_scratch).
SWEEP = [
    "-m", "hydra/sweeper=cooldowns", "hydra.sweeper.budgets=[60,120]", "hydra.sweeper.cooldowns=[0.25,0.5]",
    "hydra.sweeper.shapes=[linear,1-sqrt]", "hydra.sweeper.warmup_steps=6", "seed=0,1", "logger.local.plots=false",
    "hydra.sweep.dir=sweep",
]  # fmt: skip
# Per seed: the trunk's 120 steps and the branches' cooldowns (2 shapes x (15 + 30 + 30 + 60)) against the
# branches from step 0 (2 shapes x 2 cooldowns x (60 + 120)).
TRAINED, FROM_SCRATCH = 2 * (120 + 2 * (15 + 30 + 30 + 60)), 2 * (2 * 2 * (60 + 120))


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["parallel", "batched"])
def test_a_cooldown_sweep_branches_every_budget_from_one_trunk_equal_to_runs_from_step_0(tmp_path, launcher):
    done = run_cli([*SWEEP, f"hydra/launcher={launcher}", "hydra.sweeper.from_scratch=true"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    sweep = tmp_path / "sweep"
    summaries = {p.parent: summary_json(p.parent) for p in sweep.glob("*/summary.json")}
    assert len(summaries) == 2 + 16 + 16 and all(s["status"] == "completed" for s in summaries.values())
    trunks = {d for d, s in summaries.items() if s["scheduler"] == "wsd_trunk"}
    for t in trunks:
        assert sorted(p.name for p in (t / "checkpoints").iterdir()) == ["step-30.pt", "step-45.pt", "step-60.pt", "step-90.pt"]
    branches = {d: s for d, s in summaries.items() if s["branch_step"] is not None}
    assert len(branches) == 16 and {s["branch_from"] for s in branches.values()} == {str(t.resolve()) for t in trunks}
    # Each branch against its twin from step 0: the same overrides but where it started.
    twins = {}
    for d, s in summaries.items():
        if s["scheduler"] == "wsd":
            given = sorted(o for o in (d / ".hydra/overrides.yaml").read_text().splitlines() if "branch_" not in o)
            twins.setdefault(str(given), []).append(d)
    assert len(twins) == 16 and all(len(pair) == 2 for pair in twins.values())
    for a, b in twins.values():
        if launcher == "parallel":  # each run alone: bit for bit
            assert table_without_time(read_metrics(a)) == table_without_time(read_metrics(b))
        else:  # the batched engine is equal to a run alone up to float rounding (docs/clusters.md, Batched sweeps)
            assert summaries[a]["final_test_loss"] == pytest.approx(summaries[b]["final_test_loss"], rel=1e-5)
    md = (sweep / "report.md").read_text()
    assert "## Loss vs budget: cooldowns from one trunk" in md and "![budgets](report/budgets.png)" in md
    assert f"Compute: {TRAINED} optimizer steps for the trunks and the branches' cooldowns, against {FROM_SCRATCH}" in md
    assert f"{TRAINED / FROM_SCRATCH:.1%}" in md
    if launcher == "parallel":
        assert "the largest difference in final test loss is 0 (bit for bit)" in md
    rows = [line for line in md.splitlines() if line.startswith(("| 60 |", "| 120 |"))]
    assert len(rows) == 8 + 1  # every cooldown at both budgets, and the trunks at 120 steps
    assert "at 120 steps validation chose" in md and (sweep / "report" / "budgets.png").stat().st_size > 10_000

    # The same command again: every job is found finished on disk, none is trained again.
    before = {p: p.stat().st_mtime_ns for p in sweep.glob("*/metrics.csv")}
    again = run_cli([*SWEEP, f"hydra/launcher={launcher}", "hydra.sweeper.from_scratch=true"], cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert {p: p.stat().st_mtime_ns for p in sweep.glob("*/metrics.csv")} == before


@pytest.mark.slow
def test_a_branch_whose_trunk_diverged_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path):
    done = run_cli([*SWEEP, "optimizer.lr=1000", "seed=0", "hydra.sweeper.shapes=[linear]"], cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = [summary_json(p.parent) for p in (tmp_path / "sweep").glob("*/summary.json")]
    assert sorted(s["status"] for s in summaries) == ["diverged"] + 4 * ["failed"]
    assert all("diverged at step" in s["error"] for s in summaries if s["status"] == "failed")


@pytest.mark.parametrize(
    ("overrides", "first_words"),
    [
        (["hydra.sweeper.budgets=[]"], "hydra.sweeper.budgets=[]: must list run lengths (optimizer steps) > 1"),
        (["hydra.sweeper.cooldowns=[0.2,1.5]"], "hydra.sweeper.cooldowns=[0.2, 1.5]: must list fractions of a budget in (0, 1)"),
        (
            ["hydra.sweeper.shapes=[linear,step]"],
            "hydra.sweeper.shapes=['linear', 'step']: must list decay shapes of linear, 1-sqrt, cosine",
        ),
        (["hydra.sweeper.cooldowns=[0.95]"], "hydra.sweeper.cooldowns=0.95: a cooldown of 57 steps at budget 60 leaves no stable phase"),
        (["hydra.sweeper.warmup_steps=-1"], "hydra.sweeper.warmup_steps=-1: must be a number of steps >= 0"),
        (["scheduler=cosine"], "scheduler='cosine': the cooldown sweeper sets it in every job"),
        (["run.steps=100,200"], "run.steps='100,200': the cooldown sweeper sets it in every job"),
        (["scheduler.warmup=5"], "scheduler.warmup='5': the cooldown sweeper sets it in every job"),
    ],
)
def test_a_bad_cooldown_setting_is_one_line_and_writes_nothing(tmp_path, overrides, first_words):
    done = run_cli([*SWEEP, *overrides], cwd=tmp_path, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"lrexp: error: {first_words}"), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "sweep").exists()
