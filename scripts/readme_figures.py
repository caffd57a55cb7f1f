"""Regenerate the README's and docs' figures from real runs (about 3 minutes on 2 cores).

    python scripts/readme_figures.py

- figures/run_overview.png: a digits run under poly_warmup (LR, loss, accuracy side by side);
- figures/article_overlay.png: the article's five schedules from `python -m lrexp.preview experiment=article`;
- figures/report.png: the top of report.html of the 15-job article sweep, screenshotted in headless Chromium.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

FIGURES = Path(__file__).resolve().parent / "figures"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def lrexp(*args: str, module: str = "lrexp", cwd: Path) -> None:
    subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, check=True)


def main() -> None:
    FIGURES.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        lrexp("scheduler=poly_warmup", "run.progress=false", "hydra.run.dir=run", cwd=work)
        shutil.copy(work / "run" / "plots" / "overview.png", FIGURES / "run_overview.png")

        lrexp("experiment=article", "--out", "preview", module="lrexp.preview", cwd=work)
        shutil.copy(work / "preview" / "overlay.png", FIGURES / "article_overlay.png")

        lrexp("-m", "+sweep=article", "hydra/launcher=joblib", "hydra.sweep.dir=sweep", cwd=work)
        browser = shutil.which("chromium") or shutil.which("chromium-browser")
        if browser is None:
            raise SystemExit("report.png needs Debian's chromium (apt-get install -y chromium)")
        subprocess.run(
            [
                browser,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={work / 'profile'}",
                "--window-size=1280,1250",
                f"--screenshot={FIGURES / 'report.png'}",
                (work / "sweep" / "report.html").as_uri(),
            ],
            check=True,
            capture_output=True,
        )
    for p in sorted(FIGURES.glob("*.png")):
        print(p)


if __name__ == "__main__":
    main()
