"""Faults from outside the run, each reproduced for real: a full disk, a read-only output directory, two
runs started into one directory, a worker process the OS kills mid-sweep, a metrics.csv cut off mid-row.

The file-system faults mount small tmpfs file systems, which needs root; CI runs as root and requires
them (LREXP_REQUIRE_MOUNT=1), elsewhere they are skipped with the reason.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from lrexp.record import read_metrics
from tests.helpers import TEST_PYTHONPATH, TEST_SEARCHPATH, cli_env, run_cli, summary_json, table_without_time

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # real runs, real processes, real file systems

# One run's settings for every fault on a single run: a row per step, a checkpoint every 100 steps.
RUN = ["run.steps=1500", "run.log_every=1", "run.eval_every=100", "run.checkpoint_every=100", "logger.local.plots=false"]
TIMINGS = ("wall_time_s", "steps_per_s", "time_to_first_step_s")


def comparable(run_dir: Path) -> tuple[list[dict], dict]:
    summary = {k: v for k, v in summary_json(run_dir).items() if k not in TIMINGS}
    return table_without_time(read_metrics(run_dir)), summary


def one_line_error(out: subprocess.CompletedProcess, code: int, *words: str) -> str:
    """The command failed with exactly one line on stderr, naming what it must name."""
    assert out.returncode == code, out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lrexp: error: "), out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


def contiguous(rows: list[dict]) -> bool:
    return [r["step"] for r in rows] == list(range(len(rows)))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    out = run_cli([*RUN, f"hydra.run.dir={run_dir}"], cwd=run_dir.parent)
    assert out.returncode == 0, out.stderr
    return run_dir


# --- file systems of our own -------------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(path: Path, size: int, *options: str) -> Iterator[Path]:
    """A tmpfs of ``size`` bytes mounted at ``path`` for the block."""
    if os.geteuid() != 0:
        if os.environ.get("LREXP_REQUIRE_MOUNT") == "1":
            pytest.fail("LREXP_REQUIRE_MOUNT=1 but not root: these tests mount file systems")
        pytest.skip("mounting a small file system needs root (CI runs these)")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join([f"size={size}", *options]), "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def remount(path: Path, size: int) -> None:
    subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)


def test_the_disk_fills_up_while_a_checkpoint_is_written(tmp_path, uninterrupted):
    """Room for one checkpoint but not for the next: the run stops in one line, the first checkpoint
    and every row survive, and once there is room the run resumes to the uninterrupted run's record."""
    checkpoint_size = (uninterrupted / "checkpoint.pt").stat().st_size
    with tmpfs(tmp_path / "disk", int(1.5 * checkpoint_size)) as disk:
        run_dir = disk / "run"
        out = run_cli([*RUN, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        one_line_error(out, 1, "No space left on device", str(run_dir), "run.resume=true")

        ckpt = torch.load(run_dir / "checkpoint.pt", weights_only=True)
        rows = read_metrics(run_dir)
        assert ckpt["loop"]["step"] == 100 and contiguous(rows) and len(rows) >= 100
        logged = [{k: v for k, v in r.items() if v is not None} for r in rows[:100]]
        assert logged == ckpt["loop"]["rows"]  # every flushed row as it was logged
        assert not list(run_dir.glob("*.tmp"))  # the half-written checkpoint is gone, the space freed
        assert summary_json(run_dir)["status"] == "failed" and "No space left" in summary_json(run_dir)["error"]

        remount(disk, 4 * checkpoint_size)
        out = run_cli([*RUN, f"hydra.run.dir={run_dir}", "run.resume=true"], cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        assert comparable(run_dir) == comparable(uninterrupted)


def test_the_disk_fills_up_while_a_metrics_row_is_written(tmp_path):
    """No checkpoint yet, the rows fill the disk: one line, and metrics.csv reads back every row that was
    written whole (the one cut off by the full disk is left out, never read as a shorter number)."""
    with tmpfs(tmp_path / "disk", 256 * 1024) as disk:
        run_dir = disk / "run"
        args = ["run.steps=50000", "run.log_every=1", "run.eval_every=50000", "run.checkpoint_every=50000", "logger.local.plots=false"]
        out = run_cli([*args, f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        one_line_error(out, 1, "No space left on device", "every row written are kept")
        rows = read_metrics(run_dir)
        assert len(rows) > 1000 and contiguous(rows)
        assert all(r["train_loss"] is not None and r["lr"] is not None for r in rows)


def test_a_read_only_output_directory_is_refused_in_one_line(tmp_path):
    with tmpfs(tmp_path / "ro", 1024 * 1024, "ro") as ro:
        out = run_cli(["run.steps=20", f"hydra.run.dir={ro / 'run'}"], cwd=tmp_path)
        one_line_error(out, 2, f"hydra.run.dir='{ro / 'run'}'", "Read-only file system")
        out = run_cli(["-m", "run.steps=20", "seed=0,1", f"hydra.sweep.dir={ro / 'sweep'}"], cwd=tmp_path)
        one_line_error(out, 2, f"hydra.sweep.dir='{ro / 'sweep'}'", "Read-only file system")
        assert not list(ro.iterdir())
    (tmp_path / "a_file").write_text("")
    out = run_cli(["run.steps=20", f"hydra.run.dir={tmp_path / 'a_file' / 'run'}"], cwd=tmp_path)
    one_line_error(out, 2, "hydra.run.dir=", "is a file")


# --- two processes, one directory ------------------------------------------------------------------


def test_a_second_run_into_a_directory_in_use_is_refused(tmp_path):
    """The second command is refused in one line while the first trains; the first keeps every row in
    order, and its config files (which the second command's Hydra overwrote) are its own again."""
    run_dir = tmp_path / "run"
    first = subprocess.Popen(
        [sys.executable, "-m", "lrexp", "run.steps=1000000", "run.log_every=1", "run.checkpoint_every=200", f"hydra.run.dir={run_dir}"],
        cwd=tmp_path,
        env=cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while not ((run_dir / "metrics.csv").exists() and (run_dir / "metrics.csv").read_text().count("\n") > 50):
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.stderr else ""
            time.sleep(0.05)
        second = run_cli(["seed=1", "run.steps=1000", f"hydra.run.dir={run_dir}"], cwd=tmp_path)
        one_line_error(second, 2, f"hydra.run.dir='{run_dir}'", "another lrexp process is writing this run")
        assert first.poll() is None  # the first run trains on
    finally:
        first.send_signal(signal.SIGTERM)  # a clean stop: checkpoint, interrupted record
        first.communicate(timeout=60)
    rows = read_metrics(run_dir)
    assert contiguous(rows) and summary_json(run_dir)["status"] == "interrupted"
    assert summary_json(run_dir)["seed"] == 0 and "seed: 0" in (run_dir / ".hydra" / "config.yaml").read_text()


# --- a worker killed by the OS ----------------------------------------------------------------------

KILLED_SWEEP = [
    "run.steps=100",
    "run.log_every=5",
    "run.eval_every=20",
    "run.checkpoint_every=20",
    "run.threads=1",
    "logger.local.plots=false",
]


def test_a_worker_killed_by_the_os_leaves_a_record_and_the_sweep_completes(tmp_path):
    """Under hydra/launcher=parallel, job 1's worker is killed once (SIGKILL, as the OOM killer sends)
    and job 2's every time. Job 1 resumes from its checkpoint and ends as if never killed; job 2 is
    recorded as failed; the other jobs and the report complete."""
    out = run_cli(
        [
            "-m",
            "hydra/launcher=parallel",
            "hydra.launcher.n_jobs=2",
            TEST_SEARCHPATH,
            "logger=[local,killer]",
            "logger.killer.once=[1]",
            "logger.killer.always=[2]",
            "scheduler=cosine,exp,step,multistep",
            *KILLED_SWEEP,
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
        PYTHONPATH=TEST_PYTHONPATH,
    )
    assert out.returncode == 0, out.stderr
    sweep = tmp_path / "sweep"
    status = {i: summary_json(sweep / str(i))["status"] for i in range(4)}
    assert status == {0: "completed", 1: "completed", 2: "failed", 3: "completed"}
    assert (sweep / "1" / "kills").read_text() == "1" and "resuming" in (sweep / "1" / "lrexp.log").read_text()
    # Killed at every launch: at the second death it was in flight at (its own, or job 1's when the two ran
    # side by side), it runs once more on its own and is killed there too. Which depends on scheduling.
    assert (sweep / "2" / "kills").read_text() in ("2", "3")
    assert "worker process was killed" in summary_json(sweep / "2")["error"]

    alone = run_cli(["scheduler=exp", *KILLED_SWEEP, "hydra.run.dir=alone"], cwd=tmp_path)
    assert alone.returncode == 0, alone.stderr
    assert comparable(sweep / "1") == comparable(tmp_path / "alone")
    report = (sweep / "report.md").read_text()
    assert "2 failed (its worker process was killed" in report


# --- a metrics.csv cut off mid-row -------------------------------------------------------------------


def test_a_metrics_file_cut_off_mid_row_is_read_whole_rows_only_and_resumes(tmp_path, uninterrupted):
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrexp", *RUN, f"hydra.run.dir={run_dir}"], cwd=tmp_path, env=cli_env(), stderr=subprocess.DEVNULL
    )
    path = run_dir / "metrics.csv"
    deadline = time.monotonic() + 120
    while not (path.exists() and path.read_text().count("\n") > 350):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    text = path.read_text()
    last = text.rstrip("\n").rfind("\n") + 1
    path.write_text(text[: last + (len(text) - last) // 2])  # half of the last row: "0.00123" would read as "0.0"
    rows = read_metrics(run_dir)
    assert contiguous(rows) and len(rows) == text.count("\n") - 2  # the header and the cut row are not rows
    assert table_without_time(rows) == table_without_time(read_metrics(uninterrupted)[: len(rows)])

    out = run_cli([*RUN, f"hydra.run.dir={run_dir}", "run.resume=true"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert comparable(run_dir) == comparable(uninterrupted)
