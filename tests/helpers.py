"""Test helpers: compose the real config in-process, train in-process, or run the real CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_module
from omegaconf import DictConfig, open_dict

import lrexp.config

# Tasks and loggers that exist only in the tests, found as a user's own are: their YAML through
# hydra.searchpath (tests/conf), their code on PYTHONPATH, and the sine task's schema through the
# distribution tests/plugins holds (its entry point in the group lrexp.schemas names tests/sine_schema.py).
TESTS = Path(__file__).resolve().parent
TEST_SEARCHPATH = f"hydra.searchpath=[file://{TESTS / 'conf'}]"
TEST_PYTHONPATH = os.pathsep.join([str(TESTS.parent), str(TESTS / "plugins")])
SCHEDULES = sorted(p.stem for p in (Path(lrexp.config.__file__).parent.parent / "conf" / "scheduler").glob("*.yaml"))
ARTICLE_SCHEDULES = ["exp", "cosine", "step", "poly_warmup", "multistep"]


def compose_config(*overrides: str) -> tuple[DictConfig, dict[str, str]]:
    """The composed config exactly as `python -m lrexp OVERRIDES` sees it, and the group choices."""
    with initialize_config_module("lrexp.conf", version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
    names = dict(cfg.hydra.runtime.choices)
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg, names


def train_in_process(run_dir: Path, *overrides: str, plots: bool = False, save_config: bool = False) -> dict:
    """A real training run through lrexp.train (no subprocess start-up), as the CLI would do it; returns
    summary.json as written. ``save_config``: .hydra/config.yaml written first, as Hydra writes it (a
    branch reads its trunk's)."""
    from omegaconf import OmegaConf

    from lrexp.loggers import RunInfo
    from lrexp.loggers.local import LocalLogger
    from lrexp.train import RunSpec, train
    from lrexp.validate import validate

    cfg, choices = compose_config("run.progress=false", *overrides)
    validate(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    if save_config:
        (run_dir / ".hydra").mkdir(exist_ok=True)
        OmegaConf.save(cfg, run_dir / ".hydra" / "config.yaml")
    info = RunInfo(run_dir=run_dir, config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))
    train(RunSpec(cfg, run_dir, choices=choices, loggers=[LocalLogger(run=info, plots=plots, dpi=110)]))
    return summary_json(run_dir)


def summary_json(run_dir: Path) -> dict:
    """summary.json exactly as written: the output contract, not lrexp's reading of it."""
    return json.loads((run_dir / "summary.json").read_text())


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HYDRA_", "WANDB_"))}
    env.update(extra)
    return env


def run_cli(args: Sequence[str], cwd: Path, module: str = "lrexp", timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """`python -m lrexp ARGS` in a fresh process, from ``cwd``."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def table_without_time(rows: list[dict]) -> list[dict]:
    """metrics rows minus the wall-clock column, which no two runs share."""
    return [{k: v for k, v in r.items() if k != "time_s"} for r in rows]


def stepped(schedule, optimizer, steps: int) -> list[float]:
    """The LR each of ``steps`` optimizer steps applies, the schedule (a torch scheduler, or lrexp's with
    torch's ``step()``) stepped after each: the canonical loop every reference LR comes from."""
    lrs = []
    for _ in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return lrs
