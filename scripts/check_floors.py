"""Do the dependency floors in pyproject.toml hold? Install every dependency at its lowest allowed version
in a fresh virtual environment and run the fast test tier there.

    python scripts/check_floors.py [--python python3.10] [--venv /tmp/lrexp-floors] [--keep]

Every ``name>=X`` (and ``name>=X,<Y``) of the dependencies and of the extras the tests use is pinned to
``name==X``; lrexp itself is installed without dependencies. torch's floor comes from PyPI, which has
only CUDA builds for Linux before the CPU wheel on this machine: a few GB, a minute on a fast mirror. The
docs/testing.md, "Dependency floors", says when this was last run and what it found. Not part of CI:
floors change when someone raises them, and this is how they check.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10, lrexp's floor
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
# The extras whose packages the fast tier imports (the rest are imported only by slow tests).
EXTRAS = ("test", "joblib", "submitit", "wandb-report", "schedulefree", "tensorboard", "mlflow")
# Test tools: not lrexp's floors, their current versions.
TOOLS = {"pytest", "ruff", "mypy"}


def floors() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in EXTRAS:
        specs += [s for s in project["optional-dependencies"].get(extra, []) if not s.startswith("lrexp[")]
    pins = []
    for spec in specs:
        name = re.split(r"[<>=!~ \[]", spec, maxsplit=1)[0]
        if name in TOOLS:
            pins.append(name)
            continue
        low = re.search(r">=\s*([\w.]+)", spec)
        if not low:
            raise SystemExit(f"{spec}: no floor (>=) to test")
        pins.append(f"{name}=={low.group(1)}")
    return sorted(set(pins))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", default=sys.executable, help="the interpreter to test (default: this one)")
    p.add_argument("--venv", type=Path, default=Path("/tmp/lrexp-floors"))
    p.add_argument("--keep", action="store_true", help="keep the environment afterwards")
    a = p.parse_args()
    pins = floors()
    print("floors:", " ".join(pins), flush=True)
    shutil.rmtree(a.venv, ignore_errors=True)
    subprocess.run([a.python, "-m", "venv", str(a.venv)], check=True)
    py = str(a.venv / "bin" / "python")
    try:
        subprocess.run([py, "-m", "pip", "install", "-q", *pins, "tomli; python_version < '3.11'"], check=True)
        subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)], check=True)
        subprocess.run([py, "-m", "pip", "check"], check=True)
        versions = subprocess.run([py, "-m", "pip", "list", "--format=freeze"], check=True, capture_output=True, text=True).stdout
        installed = {line.split("==")[0].lower(): line for line in versions.split()}
        print("installed:", " ".join(installed.get(pin.split("==")[0].lower(), pin) for pin in pins), flush=True)
        return subprocess.run([py, "-m", "pytest", "-q", "-m", "not slow", "-p", "no:cacheprovider"], cwd=ROOT).returncode
    finally:
        if not a.keep:
            shutil.rmtree(a.venv, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
