"""`run.compile=true`: torch.compile where a C++ toolchain exists, eager with one warning line where it does not."""

from __future__ import annotations

import shutil
import sysconfig
from pathlib import Path

import pytest

from lrexp.record import read_metrics
from tests.helpers import run_cli, summary_json, table_without_time, train_in_process

# End to end: real training runs and real processes (the fast tier is pytest -m 'not slow').
pytestmark = pytest.mark.slow

ARGS = ["run.steps=20", "run.eval_every=10", "run.log_every=1", "run.progress=false"]


def inductor_can_build() -> bool:
    """Inductor's CPU kernels need a C++ compiler and the Python headers (its bindings include Python.h)."""
    has_cxx = any(shutil.which(c) for c in ("g++", "c++", "clang++"))
    return has_cxx and (Path(sysconfig.get_path("include")) / "Python.h").exists()


def test_without_a_compiler_it_warns_once_and_trains_eagerly_to_the_same_numbers(tmp_path):
    r = run_cli(["run.compile=true", *ARGS, "hydra.run.dir=run"], cwd=tmp_path, CXX="/bin/false")
    assert r.returncode == 0, r.stderr
    console = r.stdout + r.stderr  # Hydra's console log handler writes to stdout
    warning = [line for line in console.splitlines() if "torch.compile failed" in line]
    assert len(warning) == 1 and warning[0].endswith("training eagerly"), console
    assert "/bin/false" in warning[0]  # the cause, named on that one line
    assert "Traceback" not in console
    assert "torch.compile failed" in (tmp_path / "run" / "lrexp.log").read_text()  # kept with the run
    summary = summary_json(tmp_path / "run")
    assert summary["status"] == "completed" and summary["compiled"] is False

    eager = tmp_path / "eager"
    train_in_process(eager, *ARGS)
    assert summary_json(eager)["compiled"] is False
    assert table_without_time(read_metrics(tmp_path / "run")) == table_without_time(read_metrics(eager))


@pytest.mark.skipif(not inductor_can_build(), reason="no C++ compiler or Python headers: torch.compile cannot build here")
def test_with_a_compiler_the_compiled_model_trains_like_the_eager_one(tmp_path):
    r = run_cli(["run.compile=true", *ARGS, "hydra.run.dir=run"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "torch.compile failed" not in r.stdout + r.stderr
    summary = summary_json(tmp_path / "run")
    assert summary["status"] == "completed" and summary["compiled"] is True

    eager = tmp_path / "eager"
    train_in_process(eager, *ARGS)
    compiled_rows, eager_rows = read_metrics(tmp_path / "run"), read_metrics(eager)
    assert [r["step"] for r in compiled_rows] == [r["step"] for r in eager_rows]
    # Fused kernels round differently from eager ones: the same training, not the same bits.
    for c, e in zip(compiled_rows, eager_rows):
        assert c["lr"] == e["lr"]
        assert c["train_loss"] == pytest.approx(e["train_loss"], rel=1e-3)
        if e["val_loss"] is not None:
            assert c["val_loss"] == pytest.approx(e["val_loss"], rel=1e-3)
