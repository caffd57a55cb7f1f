"""hydra/launcher=batched: runs trained together equal runs trained alone (LRs exactly, losses within the
stated tolerance), stay independent (divergence, a refused config, metric-driven schedules, resume), and
a batched sweep leaves the same directories and the same report as the basic launcher."""

from __future__ import annotations

import csv
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrexp.record import read_metrics
from tests.helpers import (
    SCHEDULES,
    TEST_PYTHONPATH,
    TEST_SEARCHPATH,
    cli_env,
    compose_config,
    run_cli,
    summary_json,
    table_without_time,
    train_in_process,
)

pytestmark = pytest.mark.slow  # real training, batched and alone
ROOT = Path(__file__).resolve().parent.parent
OPTIMIZERS = sorted(p.stem for p in (ROOT / "conf" / "optimizer").glob("*.yaml"))

# The tolerance docs/clusters.md states ("Batched sweeps"): on CPU fp32 a batched run's losses stay within 1e-3 of
# the run alone (600 digits steps; measured worst 3.3e-4), its LRs are equal.
LOSS_ATOL = 1e-3
LOSSES = ("train_loss", "val_loss", "test_loss")
TINYLM_SMALL = [
    "task=tinylm",
    "task.n_layer=1",
    "task.n_embd=32",
    "task.context=32",
    "task.batch_size=8",
    "task.max_corpus_bytes=300000",
    "task.eval_batches=2",
    "task.test_batches=2",
]


def together(root: Path, common: list[str], variants: list[list[str]]) -> list[Path]:
    """The variants trained as one batch, in process (as the launcher does, without Hydra's sweep)."""
    from lrexp.batched import build_batch
    from lrexp.train import RunSpec, train_runs
    from lrexp.validate import validate

    specs, dirs = [], []
    for i, variant in enumerate(variants):
        cfg, choices = compose_config("run.progress=false", *common, *variant)
        validate(cfg)
        dirs.append(root / f"batched{i}")
        dirs[-1].mkdir(parents=True)
        specs.append(RunSpec(cfg, dirs[-1], choices=choices))
    batch, built = build_batch(specs)
    assert batch is not None and all(not isinstance(b, BaseException) for b in built), built
    train_runs(batch.runs, batch, progress=False)
    return dirs


def assert_same_run(batched: Path, alone: Path, atol: float = LOSS_ATOL) -> None:
    a, b = read_metrics(batched), read_metrics(alone)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):
        lrs = [c for c in y if c.startswith(("lr", "momentum", "weight_decay"))]
        assert {c: x[c] for c in lrs} == {c: y[c] for c in lrs}, (batched, x["step"])  # exactly
        for c in LOSSES:
            assert (x[c] is None) == (y[c] is None)
            if y[c] is not None:
                assert abs(x[c] - y[c]) <= atol, (batched, x["step"], c, x[c], y[c])
    sa, sb = summary_json(batched), summary_json(alone)
    assert sa["status"] == sb["status"] and sa["batch"] > 1 and sb["batch"] == 1


@pytest.mark.parametrize("task", ["digits", "tinylm"])
def test_every_schedule_and_optimizer_trains_batched_as_alone(tmp_path, task):
    common = ["run.log_every=1", "logger.local.plots=false"]
    common += ["run.steps=200", "run.eval_every=20"] if task == "digits" else [*TINYLM_SMALL, "run.steps=30", "run.eval_every=10"]
    variants = [[f"scheduler={s}", f"seed={i % 3}"] for i, s in enumerate(SCHEDULES)]
    variants += [[f"optimizer={o}", "scheduler=cosine_warmup", f"seed={i % 3}"] for i, o in enumerate(OPTIMIZERS)]
    dirs = together(tmp_path, common, variants)
    for i, (variant, batched) in enumerate(zip(variants, dirs)):
        summary = train_in_process(tmp_path / f"alone{i}", *common, *variant)
        assert summary["status"] == "completed", variant
        assert_same_run(batched, tmp_path / f"alone{i}")


def test_each_run_is_built_once_over_the_stacked_models_and_one_that_fails_to_build_is_left_out(tmp_path, monkeypatch):
    """Two-phase build: every run's optimizer steps its model's views of the stacked tensors, built once.
    A run whose optimizer cannot be built (AdamW refuses beta 2.0 when it is constructed, after the
    config was accepted) gets its error back; the others are built again without it and train as alone."""
    from lrexp.batched import build_batch
    from lrexp.errors import ConfigError
    from lrexp.train import RunSpec, train_runs
    from lrexp.validate import validate

    common = ["run.progress=false", "run.steps=60", "run.log_every=1", "run.eval_every=20", "logger.local.plots=false"]
    variants = [["scheduler=cosine", "seed=0"], ["optimizer=adamw", "optimizer.betas=[0.9,2.0]"], ["scheduler=exp", "seed=1"]]
    specs = []
    for i, variant in enumerate(variants):
        cfg, choices = compose_config(*common, *variant)
        validate(cfg)
        (tmp_path / f"batched{i}").mkdir()
        specs.append(RunSpec(cfg, tmp_path / f"batched{i}", choices=choices))
    import lrexp.train

    built_optimizers = []  # the real builder, counted: one optimizer per run, none built again
    real = lrexp.train.build_optimizer
    monkeypatch.setattr(lrexp.train, "build_optimizer", lambda *a, **k: built_optimizers.append(real(*a, **k)) or built_optimizers[-1])
    assert build_batch([specs[0], specs[2]])[0] is not None and len(built_optimizers) == 2  # builds only: nothing written
    batch, built = build_batch(specs)
    assert batch is not None and isinstance(built[1], ConfigError) and "Invalid beta" in str(built[1])
    assert batch.runs == [built[0], built[2]]
    for slot, run in enumerate(batch.runs):
        stacked = {t.untyped_storage().data_ptr() for t in batch.stacked.params.values()}
        for group in run.optimizer.param_groups:
            for p in group["params"]:  # the optimizer holds the very views the stack made, not copies
                assert p.untyped_storage().data_ptr() in stacked
                assert any(p is view for view in batch.stacked.views[slot])
    train_runs(batch.runs, batch, progress=False)
    for i in (0, 2):
        train_in_process(tmp_path / f"alone{i}", *common, *variants[i])
        assert_same_run(tmp_path / f"batched{i}", tmp_path / f"alone{i}")
        assert summary_json(tmp_path / f"batched{i}")["batch"] == 2


# --- through the launcher ----------------------------------------------------------------------------

RUN = ["run.steps=300", "run.log_every=5", "run.eval_every=50", "run.checkpoint_every=100", "logger.local.plots=false"]


def test_runs_in_a_batch_stay_independent(tmp_path):
    """One job's config is refused (recorded failed, left out), one diverges (stopped and recorded while
    the others go on), a metric-driven schedule sees its own run's validation loss: every other run
    equals the same run alone."""
    out = run_cli(
        ["-m", "hydra/launcher=batched", "optimizer.lr=1e-3,-1,1000", "scheduler=plateau,cosine", *RUN, "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "Batched launcher: 6 jobs in 1 batches" in out.stdout
    sweep = tmp_path / "sweep"
    status = [summary_json(sweep / str(i))["status"] for i in range(6)]
    assert status == ["completed", "completed", "failed", "failed", "diverged", "diverged"]
    assert "optimizer.lr" in summary_json(sweep / "2")["error"] and not (sweep / "2" / "metrics.csv").exists()
    for i, scheduler in ((0, "plateau"), (1, "cosine")):
        alone = run_cli([f"scheduler={scheduler}", "optimizer.lr=1e-3", *RUN, f"hydra.run.dir=alone{i}"], cwd=tmp_path)
        assert alone.returncode == 0, alone.stderr
        assert_same_run(sweep / str(i), tmp_path / f"alone{i}")
        assert summary_json(sweep / str(i))["batch"] == 4  # the refused jobs were left out
    diverged = summary_json(sweep / "4")
    assert diverged["diverged_at_step"] < 300 and diverged["steps_done"] == diverged["diverged_at_step"] + 1
    assert "lrexp.job0" in (sweep / "0" / "lrexp.log").read_text()  # each run's own log file
    assert (sweep / "report.md").is_file()


# run.threads fixed: the batched launcher's automatic count follows the machine's load, and a thread count
# can change float results in their last bits; the two launches compared here must compute alike.
RESUMABLE = [
    "run.steps=600",
    "run.log_every=1",
    "run.eval_every=100",
    "run.checkpoint_every=100",
    "logger.local.plots=false",
    "run.threads=1",  # one: two threads spin against each other when another process shares the cores
]
SWEEP = ["-m", "hydra/launcher=batched", "scheduler=multistep,cosine", "optimizer.lr=1e-3,1000", *RESUMABLE]
TIMINGS = ("wall_time_s", "steps_per_s", "time_to_first_step_s")


def comparable(run_dir: Path) -> tuple[list[dict], dict]:
    summary = {k: v for k, v in summary_json(run_dir).items() if k not in TIMINGS}
    return table_without_time(read_metrics(run_dir)), summary


def test_a_killed_batch_resumes_to_the_uninterrupted_batchs_records(tmp_path):
    """kill -9 mid-batch, then the same command with run.resume=true: every run's record equals the
    uninterrupted batch's, timings aside. The diverged runs restart from their last checkpoint while the
    others wait for them at theirs."""
    whole = run_cli([*SWEEP, "hydra.sweep.dir=whole"], cwd=tmp_path, timeout=600)
    assert whole.returncode == 0, whole.stderr

    proc = subprocess.Popen(
        [sys.executable, "-m", "lrexp", *SWEEP, "hydra.sweep.dir=killed"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    metrics = tmp_path / "killed" / "0" / "metrics.csv"
    deadline = time.monotonic() + 300
    while not (metrics.exists() and metrics.read_text().count("\n") > 250):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed" / "0" / "summary.json").exists()  # killed mid-run

    again = run_cli([*SWEEP, "hydra.sweep.dir=killed", "run.resume=true"], cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr
    for i in range(4):
        assert comparable(tmp_path / "killed" / str(i)) == comparable(tmp_path / "whole" / str(i)), i
    assert "resuming" in (tmp_path / "killed" / "0" / "lrexp.log").read_text()


def numbers_out(text: str) -> str:
    return re.sub(r"[-+]?\d+\.\d+", "#", text)


def test_the_article_sweep_batched_leaves_the_basic_launchers_directories_and_report(tmp_path):
    runs = {}
    for launcher in ("basic", "batched"):
        # The article preset (5 schedules x 3 seeds), shortened: what is compared is the launchers, not the run length.
        sweep = [
            "-m",
            "+sweep=article",
            "run.steps=300",
            "logger.local.plots=false",
            f"hydra/launcher={launcher}",
            "hydra.sweep.dir=" + launcher,
        ]
        out = run_cli(sweep, cwd=tmp_path, timeout=600)
        assert out.returncode == 0, out.stderr
        runs[launcher] = tmp_path / launcher
    basic, batched = runs["basic"], runs["batched"]
    names = sorted(p.name for p in basic.iterdir())
    assert sorted(p.name for p in batched.iterdir()) == names
    for i in range(15):
        assert sorted(p.name for p in (batched / str(i)).rglob("*")) == sorted(p.name for p in (basic / str(i)).rglob("*"))
        assert (batched / str(i) / ".hydra" / "overrides.yaml").read_text() == (basic / str(i) / ".hydra" / "overrides.yaml").read_text()
        assert_same_run(batched / str(i), basic / str(i))
    # The same verdict and table, to the digits the tolerance allows.
    a, b = (basic / "report.md").read_text(), (batched / "report.md").read_text()
    assert numbers_out(a.split("## Figures")[0]) == numbers_out(b.split("## Figures")[0])
    with open(basic / "summary.csv") as fa, open(batched / "summary.csv") as fb:
        rows_a, rows_b = list(csv.DictReader(fa)), list(csv.DictReader(fb))
    assert [r["scheduler"] for r in rows_a] == [r["scheduler"] for r in rows_b]  # the same ranking
    for ra, rb in zip(rows_a, rows_b):
        assert abs(float(ra["final_test_loss_mean"]) - float(rb["final_test_loss_mean"])) <= LOSS_ATOL


def test_a_task_that_vmap_cannot_batch_trains_alone(tmp_path):
    out = run_cli(
        [
            "-m",
            "hydra/launcher=batched",
            TEST_SEARCHPATH,
            "task=sine_unbatchable",
            "seed=0,1",
            "run.steps=60",
            "run.eval_every=20",
            "logger.local.plots=false",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
        PYTHONPATH=TEST_PYTHONPATH,
    )
    assert out.returncode == 0, out.stderr
    assert "cannot train as one batch" in out.stdout + out.stderr
    for i in range(2):
        s = summary_json(tmp_path / "sweep" / str(i))
        assert s["status"] == "completed" and s["batch"] == 1
