"""lrexp installs as a wheel that carries its configs, and runs from any directory."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import run_cli, summary_json

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10, lrexp's floor
    import tomli as tomllib

# End to end: real training runs and real processes (the fast tier is pytest -m 'not slow').
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parent.parent


def test_every_config_group_folder_is_declared_as_a_package():
    """A group folder missing from pyproject.toml's packages would silently be left out of the wheel."""
    declared = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    folders = {
        "lrexp.conf." + ".".join(p.relative_to(ROOT / "conf").parts)
        for p in (ROOT / "conf").rglob("*")
        if p.is_dir() and p.name != "__pycache__"
    }
    assert folders <= declared, folders - declared


def test_the_wheel_carries_the_configs_and_runs_from_another_directory(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(ROOT)],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "dist").glob("lrexp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    yamls = {f"lrexp/conf/{p.relative_to(ROOT / 'conf').as_posix()}" for p in (ROOT / "conf").rglob("*.yaml")}
    assert yamls and yamls <= names, yamls - names
    assert "hydra_plugins/lrexp_launchers/parallel.py" in names and not any(n.startswith("hydra_plugins/__init__") for n in names)

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    where = subprocess.run(
        [sys.executable, "-c", "import lrexp; print(lrexp.__file__)"],
        cwd=elsewhere,
        env={"PYTHONPATH": str(site)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert where.startswith(str(site)), where  # the wheel's copy, not the checkout's
    out = run_cli(
        ["scheduler=step", "run.steps=12", "run.eval_every=6", "logger.local.plots=false", "hydra.run.dir=run"],
        cwd=elsewhere,
        PYTHONPATH=str(site),
    )
    assert out.returncode == 0, out.stderr
    assert summary_json(elsewhere / "run")["status"] == "completed"


def test_lrexps_launchers_are_found_from_any_directory(tmp_path):
    """Hydra finds launchers by walking the hydra_plugins namespace package, which cannot see into an
    editable install; lrexp registers its own (lrexp.app.register_launchers), so a sweep under
    hydra/launcher=parallel runs from any directory (no PYTHONPATH: the install README.md sets up)."""
    out = run_cli(
        [
            "-m",
            "hydra/launcher=parallel",
            "seed=0,1,2,3,4,5,6,7,8,9,10,11",  # many more jobs than joblib dispatches at once (2 x n_jobs)
            "run.steps=12",
            "run.eval_every=6",
            "logger.local.plots=false",
            "hydra.sweep.dir=sweep",
        ],
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert "Parallel launcher: 12 jobs" in out.stdout
    records = [summary_json(tmp_path / "sweep" / str(i)) for i in range(12)]
    assert [r["status"] for r in records] == ["completed"] * 12
    assert [r["threads"] for r in records] == [1] * 12  # n_jobs=-1: a job per core, a thread per job


def test_the_quick_start_in_a_fresh_venv_without_extras_prints_no_warning(tmp_path):
    """README's quick start installs lrexp without extras; Hydra imports every module of hydra_plugins at start-up,
    and a launcher that needs an extra must not print an import error on every command. A real venv, lrexp
    installed from this checkout as a wheel would be (Hydra's scan sees into it), torch from the pinned build."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True)
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [python, "-m", "pip", "install", "-q", "torch==2.13.0", str(ROOT)], capture_output=True, text=True, timeout=1200
    )
    assert install.returncode == 0, install.stderr[-3000:]
    assert subprocess.run([python, "-c", "import hydra_plugins.hydra_joblib_launcher"], capture_output=True).returncode != 0  # no extras
    for args in (["--help"], ["scheduler=cosine", "run.steps=20", "run.eval_every=10", "logger.local.plots=false", "hydra.run.dir=run"]):
        out = subprocess.run([python, "-m", "lrexp", *args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-3000:]
        assert "Warning" not in out.stderr and "Error" not in out.stderr, out.stderr[-3000:]
    refused = subprocess.run(
        [python, "-m", "lrexp", "-m", "hydra/launcher=parallel", "run.steps=5"], cwd=tmp_path, capture_output=True, text=True
    )
    assert refused.returncode != 0 and "Warning" not in refused.stderr
