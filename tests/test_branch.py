"""Branches from one trunk (run.branch_from, run.branch_step, run.keep_checkpoints_at; lrexp.branch): a branch is
bit for bit the run it would be from step 0, and anything that would make it another run is refused in one
line before anything is trained."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lrexp.errors import ConfigError
from lrexp.record import read_metrics
from tests.helpers import run_cli, summary_json, table_without_time, train_in_process

STEPS = 200  # digits: a few seconds a run; the presets' warm-up, ${steps:1/20}, is then 10 steps for all of them
TRUNK = ["scheduler=wsd_trunk", f"run.steps={STEPS}", "run.log_every=5", "run.eval_every=20"]
SAME = [f"run.steps={STEPS}", "run.log_every=5", "run.eval_every=20"]
# Every warmup-stable-decay preset, and cosine and linear cooldowns as two-phase schedules, with where each
# one's decay starts at 200 steps: its branch point.
COOLDOWNS = {
    "wsd": (["scheduler=wsd"], 160),
    "wsd_linear": (["scheduler=wsd_linear"], 160),
    "wsd_short": (["scheduler=wsd_short"], 190),
    "cosine cooldown": (["scheduler=wsd", "scheduler.decay_type=cosine", "scheduler.num_decay_steps=80"], 120),
    "1-sqrt cooldown of 40%": (["scheduler=wsd", "scheduler.num_decay_steps=80"], 120),
}
KEPT = sorted({step for _, step in COOLDOWNS.values()})


@pytest.fixture(scope="module")
def trunk(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("trunk") / "run"
    train_in_process(d, *TRUNK, f"run.keep_checkpoints_at=[{','.join(map(str, KEPT))}]", save_config=True)
    return d


@pytest.mark.slow
@pytest.mark.parametrize("name", list(COOLDOWNS))
def test_a_branch_is_bit_for_bit_the_run_trained_from_step_0(tmp_path, trunk, name):
    overrides, at = COOLDOWNS[name]
    alone = tmp_path / "alone"
    train_in_process(alone, *overrides, *SAME)
    branch = tmp_path / "branch"
    s = train_in_process(branch, *overrides, *SAME, f"run.branch_from={trunk}", f"run.branch_step={at}")
    assert table_without_time(read_metrics(branch)) == table_without_time(read_metrics(alone))
    finals = {k: v for k, v in summary_json(alone).items() if k.startswith(("final_", "best_"))}
    assert finals and {k: s[k] for k in finals} == finals
    assert (s["branch_from"], s["branch_step"], s["steps_done"]) == (str(trunk), at, STEPS)
    # The trunk's rows before the branch point are the branch's; from there the branch's own LR.
    trunk_rows = read_metrics(trunk)
    rows = read_metrics(branch)
    assert [r for r in rows if r["step"] < at] == [r for r in trunk_rows if r["step"] < at]
    assert next(r["lr"] for r in rows if r["step"] == STEPS - 1) < next(r["lr"] for r in trunk_rows if r["step"] == STEPS - 1)


@pytest.mark.slow
def test_the_trunk_keeps_its_checkpoints_and_a_resumed_trunk_does_not_overwrite_them(tmp_path, trunk):
    assert sorted(p.name for p in (trunk / "checkpoints").iterdir()) == [f"step-{s}.pt" for s in KEPT]
    d = tmp_path / "again"
    keep = ["run.steps=120", "run.keep_checkpoints_at=[50,100]"]
    train_in_process(d, *TRUNK, *keep)
    kept = d / "checkpoints" / "step-100.pt"
    before = (kept.stat().st_mtime_ns, kept.read_bytes())
    rows = read_metrics(d)
    shutil.copy(d / "checkpoints" / "step-50.pt", d / "checkpoint.pt")  # as if killed after step 50
    train_in_process(d, *TRUNK, *keep, "run.resume=true")  # trains steps 50-119 again, past step 100
    assert (kept.stat().st_mtime_ns, kept.read_bytes()) == before
    assert table_without_time(read_metrics(d)) == table_without_time(rows)


def refusal(tmp_path: Path, *overrides: str) -> str:
    d = tmp_path / "refused"
    with pytest.raises(ConfigError) as e:
        train_in_process(d, *SAME, *overrides)
    assert not (d / "metrics.csv").exists() and not (d / "checkpoint.pt").exists()  # nothing trained, nothing written
    return str(e.value)


@pytest.mark.slow
def test_a_branch_that_would_be_another_run_is_refused_naming_what_differs(tmp_path, trunk):
    at = f"run.branch_from={trunk}"
    # Its schedule does not follow the trunk's LR: the first step that differs.
    assert refusal(tmp_path, "scheduler=cosine", at, "run.branch_step=160").startswith(
        "scheduler='torch.optim.lr_scheduler.CosineAnnealingLR': gives LR 0.001 at step 0, where the trunk applied 0.0"
    )
    assert "gives LR 9.090909090909092e-05 at step 1, where the trunk applied 0.0001" in refusal(
        tmp_path, "scheduler=wsd", "scheduler.num_warmup_steps=11", at, "run.branch_step=160"
    )
    # A floor: transformers' WSD lifts the warm-up by min_lr_ratio too, so it leaves the trunk at step 0.
    assert "gives LR 1e-05 at step 0, where the trunk applied 0.0" in refusal(
        tmp_path, "scheduler=wsd", "scheduler.min_lr_ratio=0.01", at, "run.branch_step=160"
    )
    # A decay that starts before the branch point (wsd's 1-sqrt decay starts at 160, its LR below the peak from 161).
    assert "at step 161, where the trunk applied 0.001" in refusal(tmp_path, "scheduler=wsd", at, "run.branch_step=190")
    # Anything else that shapes training: the first key.
    assert refusal(tmp_path, "scheduler=wsd", "optimizer.weight_decay=0.2", at, "run.branch_step=160").startswith(
        "optimizer.weight_decay=0.2: differs from the trunk's 0.1"
    )
    assert refusal(tmp_path, "scheduler=wsd", "seed=1", at, "run.branch_step=160").startswith("seed=1: differs from the trunk's 0")
    assert refusal(tmp_path, "scheduler=wsd", "task.batch_size=32", at, "run.branch_step=160").startswith("task.batch_size=32")
    # A checkpoint the trunk did not keep, a step past its end, a metric-driven schedule, not a run.
    assert f"has no checkpoint at step 150: it kept steps {', '.join(map(str, KEPT))}" in refusal(
        tmp_path, "scheduler=wsd", at, "run.branch_step=150"
    )
    assert "must be a step of the trunk, 1 to its run.steps (200)" in refusal(
        tmp_path, "scheduler=wsd", "run.steps=400", at, "run.branch_step=300"
    )
    assert "is metric-driven" in refusal(tmp_path, "scheduler=plateau", at, "run.branch_step=160")
    assert "is not a run directory" in refusal(tmp_path, "scheduler=wsd", f"run.branch_from={tmp_path}", "run.branch_step=160")


@pytest.mark.slow
def test_a_diverged_trunk_and_a_checkpoint_from_another_config_are_refused(tmp_path, trunk):
    diverged = tmp_path / "diverged"
    train_in_process(diverged, *TRUNK, "optimizer.lr=1000", "run.keep_checkpoints_at=[1]", save_config=True)
    assert summary_json(diverged)["status"] == "diverged"
    assert "diverged at step" in refusal(tmp_path, "scheduler=wsd", "optimizer.lr=1000", f"run.branch_from={diverged}", "run.branch_step=1")
    # A trunk directory whose kept checkpoint another config wrote (copied in from a run of seed 1).
    other = tmp_path / "other"
    train_in_process(other, *TRUNK, "seed=1", "run.steps=160", "run.keep_checkpoints_at=[160]")
    forged = tmp_path / "forged"
    shutil.copytree(trunk, forged)
    shutil.copy(other / "checkpoints" / "step-160.pt", forged / "checkpoints" / "step-160.pt")
    message = refusal(tmp_path, "scheduler=wsd", f"run.branch_from={forged}", "run.branch_step=160")
    assert "its checkpoint step-160.pt was written by another config (run.steps=160 there, 200 in its .hydra/config.yaml)" in message


def test_branch_settings_out_of_range_are_one_line_each(tmp_path):
    """Checked with the config, before any trunk is read (lrexp.validate)."""
    cases = {
        ("run.branch_step=100",): "run.branch_step=100: needs run.branch_from",
        ("run.branch_from=somewhere",): "run.branch_from='somewhere': needs run.branch_step",
        ("run.branch_from=somewhere", "run.branch_step=600"): "run.branch_step=600: must be a step before this run's end (1 to 599)",
        ("run.keep_checkpoints_at=[0,700]",): "run.keep_checkpoints_at=[0, 700]: must list steps from 1 to run.steps (600)",
    }
    from lrexp.validate import validate
    from tests.helpers import compose_config

    for overrides, message in cases.items():
        with pytest.raises(ConfigError) as e:
            validate(compose_config(*overrides)[0])
        assert str(e.value).startswith(message)


@pytest.mark.slow
def test_the_cli_refuses_a_mismatched_branch_in_one_line_and_exit_2(tmp_path, trunk):
    out = run_cli(["scheduler=cosine", *SAME, f"run.branch_from={trunk}", "run.branch_step=160", "hydra.run.dir=b"], cwd=tmp_path)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrexp: error: scheduler='torch.optim.lr_scheduler.CosineAnnealingLR': gives LR")
    assert not (tmp_path / "b" / "metrics.csv").exists()


@pytest.mark.slow
def test_a_finished_run_is_extended_from_its_last_checkpoint_with_the_same_checks(tmp_path):
    """A longer trunk from a finished one: the same numbers as the longer run from step 0, plus the short run's
    last row (step 119, where it evaluated the test split at its end), which starts the next row's loss mean."""
    const = ["scheduler=wsd_trunk", "scheduler.num_warmup_steps=6", "run.log_every=5", "run.eval_every=20"]
    short = tmp_path / "short"
    train_in_process(short, *const, "run.steps=120", save_config=True)
    longer = tmp_path / "longer"
    s = train_in_process(longer, *const, "run.steps=200", f"run.branch_from={short}", "run.branch_step=120")
    alone = tmp_path / "alone"
    train_in_process(alone, *const, "run.steps=200")
    extended, fresh = table_without_time(read_metrics(longer)), table_without_time(read_metrics(alone))
    # Every row of the longer run, bit for bit, but the training loss of row 120: a mean over the steps since
    # the previous row, which is 119 here.
    rest = [r for r in extended if r["step"] != 119]
    assert [{k: v for k, v in r.items() if k != "train_loss"} for r in rest] == [
        {k: v for k, v in r.items() if k != "train_loss"} for r in fresh
    ]
    assert [r["step"] for r in rest if r not in fresh] == [120] and [r["step"] for r in extended if r not in fresh] == [119, 120]
    assert s["final_test_loss"] == summary_json(alone)["final_test_loss"]
