"""A run that starts from another run's checkpoint: one trunk, many cooldowns (Hägele et al. 2024).

    python -m lrexp scheduler=wsd_trunk run.steps=1600 run.keep_checkpoints_at=[720,1280]      # the trunk
    python -m lrexp scheduler=wsd run.steps=800 scheduler.num_decay_steps=80 \\
        run.branch_from=TRUNK_DIR run.branch_step=720                                          # a branch

A branch is the run its own config would be from step 0, bit for bit, at a fraction of the cost: the
trunk trained the steps before ``run.branch_step`` with the same model, data order, optimizer and LRs.
So before anything is trained, ``Trunk.open`` checks exactly that, and refuses in one line otherwise:
everything that shapes training (every key of the config's fingerprint but the schedule and the run's
length) equals the trunk's, and the branch's schedule gives the LR the trunk's schedule applied at every
step before the branch point (both computed from their configs, and the trunk's logged rows agree). The
branch then loads the trunk's model, optimizer state, RNGs and loop state (its rows up to the branch
point) from the trunk's kept checkpoint, steps its own schedule to the branch point, and trains on into
its own run directory; its summary.json records the trunk and the step.

Branching is neutral (lrexp.record.NEUTRAL_KEYS): where a run started changes none of its numbers.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lrexp import checkpoint
from lrexp.build import lr_sequence
from lrexp.drivers import Schedule
from lrexp.errors import ConfigError
from lrexp.record import CHECKPOINT_FILE, SUMMARY_FILE, Status, read_summary
from lrexp.schedule_spec import ScheduleSpec

KEPT_DIR = "checkpoints"  # run.keep_checkpoints_at: checkpoints/step-N.pt beside the rolling checkpoint.pt

# What a branch may set apart from its trunk: its schedule and its length. Everything else the
# fingerprint holds shapes training and must be equal.
BRANCH_OWNS = ("scheduler", "run.steps")

# Optimizer param-group entries that schedules write (torch's LambdaLR, OneCycleLR and CyclicLR, lrexp's
# warm-up): a branch takes them from its own schedule; every other entry (a schedule-free optimizer's
# running sums) is the trunk's.
SCHEDULED_KEYS = ("lr", "initial_lr", "momentum", "betas", "max_lr", "min_lr", "max_momentum", "base_momentum")


def kept_path(run_dir: Path, step: int) -> Path:
    return run_dir / KEPT_DIR / f"step-{step}.pt"


def kept_steps(run_dir: Path) -> list[int]:
    """The steps of a run's kept checkpoints, in order."""
    steps = []
    for p in (run_dir / KEPT_DIR).glob("step-*.pt"):
        try:
            steps.append(int(p.stem.removeprefix("step-")))
        except ValueError:
            continue
    return sorted(steps)


def config_of(run_dir: Path) -> DictConfig:
    """A run's own config as Hydra saved it (.hydra/config.yaml), its ``${steps:F}`` lengths resolvable."""
    import lrexp.config  # noqa: F401 - registers the resolvers

    return OmegaConf.load(run_dir / ".hydra" / "config.yaml")  # type: ignore[return-value]


def _branch_owns(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in BRANCH_OWNS)


@dataclass
class Trunk:
    """The run a branch starts from, checked against the branch's config, and its checkpoint at the step."""

    dir: Path
    step: int
    checkpoint: dict[str, Any]

    @classmethod
    def open(cls, cfg: DictConfig) -> Trunk:
        """The trunk of ``cfg.run.branch_from`` at ``cfg.run.branch_step``, or one ConfigError naming the
        first key or step that keeps this config from being a branch of it. Reads only: nothing is written."""
        where, step = str(cfg.run.branch_from), cfg.run.branch_step
        trunk_dir = Path(where)
        if not (trunk_dir / ".hydra" / "config.yaml").is_file():
            raise ConfigError(
                "run.branch_from", where, "is not a run directory (it has no .hydra/config.yaml): name the trunk's run directory"
            )
        trunk_cfg = config_of(trunk_dir)
        trunk_steps = int(trunk_cfg.run.steps)
        if not (isinstance(step, int) and not isinstance(step, bool) and 0 < step <= trunk_steps):
            raise ConfigError(
                "run.branch_step", step, f"must be a step of the trunk, 1 to its run.steps ({trunk_steps}); it kept {_kept_text(trunk_dir)}"
            )
        if (trunk_dir / SUMMARY_FILE).is_file():
            summary = read_summary(trunk_dir)
            if summary.status is Status.DIVERGED:
                raise ConfigError(
                    "run.branch_from", where, f"diverged at step {summary.diverged_at_step}: branch from a trunk that trained"
                )
            if summary.status is Status.FAILED:
                raise ConfigError("run.branch_from", where, f"failed ({summary.error}): branch from a trunk that trained")
        found = _checkpoint_at(trunk_dir, step)
        if found is None:
            raise ConfigError(
                "run.branch_step",
                step,
                f"{where} has no checkpoint at step {step}: it kept {_kept_text(trunk_dir)} (run.keep_checkpoints_at)",
            )
        path, ckpt = found
        _check_written_by(ckpt[checkpoint.FINGERPRINT], checkpoint.fingerprint(trunk_cfg), path)
        _check_shared(checkpoint.fingerprint(cfg), ckpt[checkpoint.FINGERPRINT], where)
        _check_lrs(cfg, trunk_cfg, ckpt, step, where)
        return cls(trunk_dir, step, ckpt)

    def state_for(self, optimizer: torch.optim.Optimizer, schedule: Schedule) -> dict[str, Any]:
        """What the branch loads, as a checkpoint of its own would hold it: the trunk's model, RNGs, loop
        state and optimizer state, with the branch's own schedule stepped to the branch point (and the LR,
        momentum it sets in the optimizer's groups). ``optimizer`` and ``schedule`` are the branch's, fresh."""
        with warnings.catch_warnings():
            # No optimizer.step() here: the trunk took those steps; the schedule only counts them.
            warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
            for _ in range(self.step):
                schedule.after_step()
        own, trunk = optimizer.state_dict(), self.checkpoint["optimizer"]
        groups = [
            {**t, **{k: v for k, v in o.items() if k != "params" and (k in SCHEDULED_KEYS or k not in t)}}
            for t, o in zip(trunk["param_groups"], own["param_groups"], strict=True)
        ]
        return {
            "model": self.checkpoint["model"],
            "optimizer": {"state": trunk["state"], "param_groups": groups},
            "scheduler": schedule.state_dict(),
            "rng": self.checkpoint["rng"],
            "loop": self.checkpoint["loop"],
        }


def _checkpoint_at(run_dir: Path, step: int) -> tuple[Path, dict[str, Any]] | None:
    """The kept checkpoint at ``step`` (its path and contents), or the rolling one when it is at that step (a
    finished run's last)."""
    kept = kept_path(run_dir, step)
    if kept.is_file():
        return kept, checkpoint.load(kept)
    rolling = run_dir / CHECKPOINT_FILE
    if rolling.is_file():
        try:
            ckpt = checkpoint.load(rolling)
        except Exception:
            return None
        if ckpt["loop"]["step"] == step:
            return rolling, ckpt
    return None


def _kept_text(run_dir: Path) -> str:
    steps = kept_steps(run_dir)
    return "steps " + ", ".join(map(str, steps)) if steps else "no checkpoint (run.keep_checkpoints_at=[])"


def _first_difference(a: dict[str, Any], b: dict[str, Any], skip: Any = lambda k: False) -> str | None:
    return next((k for k in sorted(a.keys() | b.keys()) if not skip(k) and a.get(k) != b.get(k)), None)


def _check_written_by(in_checkpoint: dict[str, Any], trunk_config: dict[str, Any], path: Path) -> None:
    key = _first_difference(in_checkpoint, trunk_config)
    if key is not None:
        raise ConfigError(
            "run.branch_from", str(path.parent.parent if path.parent.name == KEPT_DIR else path.parent),
            f"its checkpoint {path.name} was written by another config ({key}={in_checkpoint.get(key)!r} there, "
            f"{trunk_config.get(key)!r} in its .hydra/config.yaml): branch from an untouched run directory",
        )  # fmt: skip


def _check_shared(own: dict[str, Any], trunk: dict[str, Any], where: str) -> None:
    key = _first_difference(own, trunk, _branch_owns)
    if key is not None:
        raise ConfigError(
            key, own.get(key), f"differs from the trunk's {trunk.get(key)!r} ({where}): a branch changes only its schedule and run.steps"
        )


def _check_lrs(cfg: DictConfig, trunk_cfg: DictConfig, ckpt: dict[str, Any], step: int, where: str) -> None:
    """The branch's LR at every step before the branch point equals the trunk's, from both configs; and the
    trunk's logged rows agree (a trunk trained under a config its directory no longer holds)."""
    spec = ScheduleSpec.of(cfg.scheduler)
    own = lr_sequence(spec, cfg.optimizer, step)
    if own is None:
        raise ConfigError(
            "scheduler", spec.target, "is metric-driven: its LRs depend on the losses it is told, so no trunk can be checked for it"
        )
    trunk = lr_sequence(ScheduleSpec.of(trunk_cfg.scheduler), trunk_cfg.optimizer, step)
    if trunk is None:
        raise ConfigError("run.branch_from", where, "was trained under a metric-driven schedule: its LRs cannot be checked")
    bad = next((k for k in range(step) if own[k] != trunk[k]), None)
    if bad is not None:
        raise ConfigError(
            "scheduler", spec.target,
            f"gives LR {own[bad]!r} at step {bad}, where the trunk applied {trunk[bad]!r}: "
            f"a branch follows the trunk's LR at every step before run.branch_step={step}",
        )  # fmt: skip
    for row in ckpt["loop"]["rows"]:
        logged = row.get("lr")
        if logged is not None and row["step"] < step and not (math.isnan(logged) or logged == own[row["step"]]):
            raise ConfigError(
                "run.branch_from", where, f"logged LR {logged!r} at step {row['step']}, where its config gives {own[row['step']]!r}"
            )
