"""Reliability: clear errors for bad configs, divergence that does not kill a sweep, exact resume after
kill -9 or a preemption signal, and no lost metrics. Every case runs the real CLI in a real process."""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lrexp.record import read_metrics
from tests.helpers import cli_env, run_cli, summary_json, table_without_time

# End to end: real training runs and real processes (the fast tier is pytest -m 'not slow').
pytestmark = pytest.mark.slow

# (overrides, the key the message must name). Hydra rejects wrong types and unknown names while it
# composes (its own multi-line message: key, value, the allowed type or choices); lrexp rejects the rest
# before training, in exactly one line.
HYDRA_REJECTS = [
    (["run.device=tpu"], "run.device"),
    (["scheduler=bogus"], "scheduler"),
    (["optimizer=bogus"], "optimizer"),
    (["task=bogus"], "task"),
]
LREXP_REJECTS = [
    (["optimizer.lr=fast"], "optimizer.lr"),  # optimizers have no schema: their callable's signature is it
    (["optimizer.lr=0"], "optimizer.lr"),
    (["optimizer.lr=-0.001"], "optimizer.lr"),
    (["optimizer.lr=nan"], "optimizer.lr"),
    (["scheduler=exp", "scheduler.gamma=1.5"], "scheduler.gamma"),
    (["scheduler=step", "scheduler.gamma=0"], "scheduler.gamma"),
    (["scheduler=multistep", "scheduler.milestones=[2000,1000]"], "scheduler.milestones"),
    (["scheduler=multistep", "scheduler.milestones=[1000,3000]"], "scheduler.milestones"),
    (["scheduler=poly_warmup", "scheduler.num_warmup_steps=3000"], "scheduler.num_warmup_steps"),
    (["scheduler=cosine", "scheduler.T_max=0"], "scheduler.T_max"),
    (["scheduler=step", "scheduler.step_size=-5"], "scheduler.step_size"),
    (["scheduler=cosine", "+scheduler.T_maxx=5"], "scheduler.T_maxx"),
    (["run.steps=0"], "run.steps"),
    (["run.log_every=0"], "run.log_every"),
    (["run.eval_every=-1"], "run.eval_every"),
    (["task.batch_size=100000"], "task.batch_size"),
]
if not torch.cuda.is_available():
    LREXP_REJECTS.append((["run.device=cuda"], "run.device"))
BAD_CONFIGS = [(o, k, "hydra") for o, k in HYDRA_REJECTS] + [(o, k, "lrexp") for o, k in LREXP_REJECTS]


@pytest.mark.parametrize("overrides, key, rejecter", BAD_CONFIGS, ids=[" ".join(o) for o, _, _ in BAD_CONFIGS])
def test_bad_config_fails_with_a_clear_message(tmp_path, overrides, key, rejecter):
    out = run_cli([*overrides, "hydra.run.dir=run"], cwd=tmp_path)
    assert out.returncode != 0
    assert "Traceback" not in out.stderr, out.stderr
    value = overrides[-1].split("=", 1)[1].strip("[]").split(",")[0]
    if rejecter == "lrexp":
        (line,) = [ln for ln in out.stderr.splitlines() if ln.strip()]
        assert out.returncode == 2 and line.startswith(f"lrexp: error: {key}=") and value in line, line
    else:
        assert key in out.stderr and value in out.stderr, out.stderr
    assert not (tmp_path / "run" / "metrics.csv").exists()  # nothing trained


def test_lrexp_messages_are_a_single_line_and_full_error_shows_the_traceback(tmp_path):
    out = run_cli(["scheduler=exp", "scheduler.gamma=1.5", "hydra.run.dir=run"], cwd=tmp_path)
    assert out.returncode == 2
    (line,) = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert line == "lrexp: error: scheduler.gamma=1.5: must be in (0, 1]: a factor that decays the LR"
    full = run_cli(["scheduler=exp", "scheduler.gamma=1.5", "hydra.run.dir=run2"], cwd=tmp_path, HYDRA_FULL_ERROR="1")
    assert full.returncode != 0 and "Traceback" in full.stderr


# --- divergence ------------------------------------------------------------------------------------

DIVERGING = ["optimizer.lr=1000", "run.steps=200", "run.log_every=5", "run.eval_every=50"]


def test_a_diverging_run_stops_keeps_its_record_and_exits_zero(tmp_path):
    out = run_cli([*DIVERGING, "hydra.run.dir=run"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    s = summary_json(tmp_path / "run")
    assert s["status"] == "diverged" and isinstance(s["diverged_at_step"], int)
    rows = read_metrics(tmp_path / "run")
    assert rows[-1]["step"] == s["diverged_at_step"] < 199  # stopped early, rows up to that step kept
    first, last = rows[0]["train_loss"], rows[-1]["train_loss"]
    assert not last == last or last > 10 * first  # NaN, or above the configured multiple of the first loss
    assert (tmp_path / "run" / "plots" / "overview.png").stat().st_size > 0


def test_a_sweep_with_a_diverging_and_a_failing_job_goes_on(tmp_path):
    out = run_cli(
        [
            "-m",
            "optimizer.lr=1e-3,1000,-1",
            "run.steps=60",
            "run.log_every=5",
            "run.eval_every=20",
            "logger.local.plots=false",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    statuses = [summary_json(tmp_path / "sweep" / str(i))["status"] for i in range(3)]
    assert statuses == ["completed", "diverged", "failed"]
    failed = summary_json(tmp_path / "sweep" / "2")
    assert "optimizer.lr" in failed["error"]


# --- resume, kill -9, signals ----------------------------------------------------------------------

RESUMABLE = [
    "scheduler=multistep",
    "run.steps=1500",
    "run.log_every=1",
    "run.eval_every=100",
    "run.checkpoint_every=100",
    "logger.local.plots=false",
]
TIMINGS = ("wall_time_s", "steps_per_s", "time_to_first_step_s")


def comparable(run_dir: Path):
    summary = {k: v for k, v in summary_json(run_dir).items() if k not in TIMINGS}
    return table_without_time(read_metrics(run_dir)), summary


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    out = run_cli([*RESUMABLE, f"hydra.run.dir={run_dir}"], cwd=run_dir.parent)
    assert out.returncode == 0, out.stderr
    return run_dir


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "lrexp", *RESUMABLE, f"hydra.run.dir={run_dir}", *extra],
        cwd=run_dir.parent,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_rows(run_dir: Path, n: int, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    path = run_dir / "metrics.csv"
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the run ended before step {n}: {proc.stderr.read()}"
        if path.exists() and path.read_text().count("\n") > n:
            return
        time.sleep(0.01)
    raise TimeoutError(f"no {n} rows after {timeout}s")


def resume(run_dir: Path) -> None:
    out = run_cli([*RESUMABLE, f"hydra.run.dir={run_dir}", "run.resume=true"], cwd=run_dir.parent)
    assert out.returncode == 0, out.stderr


def test_kill_9_at_a_random_step_then_resume_equals_the_uninterrupted_run(tmp_path, uninterrupted):
    kill_after = random.Random().randrange(150, 1300)
    print(f"killing after {kill_after} rows")  # shown on failure, to reproduce
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_rows(run_dir, kill_after, proc)
    proc.kill()  # SIGKILL: no handler, no cleanup
    proc.wait()

    # No lost metrics: the killed run's metrics.csv parses and holds every row up to the last flush.
    rows = read_metrics(run_dir)
    assert len(rows) >= kill_after and [r["step"] for r in rows] == list(range(len(rows)))
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["loop"]["step"] % 100 == 0 and ckpt["loop"]["step"] <= len(rows)
    assert {"model", "optimizer", "scheduler", "rng", "loop"} <= set(ckpt) and len(ckpt["loop"]["rows"]) == ckpt["loop"]["step"]

    resume(run_dir)
    assert comparable(run_dir) == comparable(uninterrupted)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_a_preemption_signal_writes_a_checkpoint_and_exits_cleanly(tmp_path, uninterrupted, sig):
    run_dir = tmp_path / "run"
    proc = start(run_dir)
    wait_for_rows(run_dir, 420, proc)
    proc.send_signal(sig)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, stderr
    assert "Traceback" not in stderr
    assert f"{sig.name} at step" in (run_dir / "lrexp.log").read_text() and "checkpoint written" in (run_dir / "lrexp.log").read_text()
    s = summary_json(run_dir)
    ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
    assert s["status"] == "interrupted" and ckpt["loop"]["step"] == s["steps_done"] >= 420
    assert len(read_metrics(run_dir)) == ckpt["loop"]["step"]  # every completed step logged, none lost

    resume(run_dir)
    assert comparable(run_dir) == comparable(uninterrupted)


def digests(run_dir: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != "lrexp.log"}


def test_rerunning_into_a_finished_run_without_resume_changes_nothing(tmp_path, uninterrupted):
    before = digests(uninterrupted)
    out = run_cli([*RESUMABLE, f"hydra.run.dir={uninterrupted}"], cwd=tmp_path)
    assert out.returncode == 2 and "run.resume" in out.stderr and "Traceback" not in out.stderr
    assert digests(uninterrupted) == before


def test_resuming_with_a_different_config_is_refused_and_changes_nothing(tmp_path, uninterrupted):
    before = digests(uninterrupted)
    out = run_cli([*RESUMABLE, "optimizer.lr=0.002", "run.resume=true", f"hydra.run.dir={uninterrupted}"], cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert "optimizer.lr" in out.stderr and "0.002" in out.stderr and "Traceback" not in out.stderr
    assert digests(uninterrupted) == before


def test_resuming_a_finished_run_reproduces_it(tmp_path, uninterrupted):
    before = comparable(uninterrupted)
    resume(uninterrupted)
    assert comparable(uninterrupted) == before


def test_a_signal_is_handed_over_to_the_handler_that_was_there_before(tmp_path):
    """Under submitit a requeue handler is installed before the job starts: lrexp checkpoints, then calls it."""
    import threading

    from tests.helpers import train_in_process

    calls = []

    def requeue(signum, frame):  # what submitit's checkpoint_and_try_requeue does: act, then exit
        calls.append(signum)
        raise SystemExit(0)

    def signal_once_training() -> None:
        metrics = tmp_path / "metrics.csv"
        while not (metrics.exists() and metrics.read_text().count("\n") > 3):
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, requeue)
    sender = threading.Thread(target=signal_once_training, daemon=True)
    try:
        sender.start()
        with pytest.raises(SystemExit) as e:
            train_in_process(tmp_path, "run.steps=100000", "run.log_every=50", "run.eval_every=5000", "task.hidden=[16]")
    finally:
        signal.signal(signal.SIGUSR2, previous)
    assert calls == [signal.SIGUSR2] and e.value.code == 0
    assert signal.getsignal(signal.SIGUSR2) is previous  # lrexp put the handlers back
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert 0 < ckpt["loop"]["step"] < 100000 and summary_json(tmp_path)["status"] == "interrupted"


def test_an_unreadable_checkpoint_is_a_clear_error_that_changes_nothing(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    shutil.copytree(uninterrupted, run_dir)
    (run_dir / "checkpoint.pt").write_bytes(b"not a checkpoint")
    before = digests(run_dir)
    for extra in ([], ["run.resume=true"]):
        out = run_cli([*RESUMABLE, f"hydra.run.dir={run_dir}", *extra], cwd=tmp_path)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.startswith("lrexp: error: run.resume=")
    assert "cannot be read" in out.stderr
    after = digests(run_dir)
    assert {k: v for k, v in after.items() if not k.endswith(".yaml")} == {k: v for k, v in before.items() if not k.endswith(".yaml")}


def test_a_directory_that_holds_only_a_refused_config_is_not_a_run(tmp_path):
    """The bad command records its failure; the corrected command then trains into the same directory."""
    bad = run_cli(["optimizer.lr=-1", "run.steps=20", "hydra.run.dir=runs/a"], cwd=tmp_path)
    assert bad.returncode == 2 and summary_json(tmp_path / "runs" / "a")["status"] == "failed"
    assert not (tmp_path / "runs" / "a" / "metrics.csv").exists()
    fixed = run_cli(["run.steps=20", "hydra.run.dir=runs/a"], cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert summary_json(tmp_path / "runs" / "a")["status"] == "completed"
    again = run_cli(["run.steps=20", "hydra.run.dir=runs/a"], cwd=tmp_path)  # a directory that holds a run is still protected
    assert again.returncode == 2 and "already holds a run" in again.stderr
