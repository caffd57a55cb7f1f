"""Checks of a composed config before anything is built: one ConfigError naming key, value and rule.

Hydra and the schemas in lrexp.config already reject unknown names and wrong types at compose time;
these are the range and consistency rules no type can express. Schedule checks go by the standard
parameter names torch and transformers use, so a schedule added as a YAML file is checked too.
Device presence, a task's own keys (batch size vs training set, corpus paths) and unknown keys are
checked where those facts are known (lrexp.device, the task, lrexp.build), still before the first step.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from lrexp.errors import ConfigError, first_line
from lrexp.protocol import Thresholds
from lrexp.record import is_finite_number
from lrexp.schedule_spec import FLOOR, WARMUP, ScheduleSpec

# lrexp's own key in an optimizer node (lrexp.build, which imports torch, keeps it from the optimizer).
CLIP = "clip_grad_norm"

# Schedule lengths that must be at least one step, and those that may be zero.
POSITIVE_STEPS = ("T_max", "step_size", "T_0", "total_steps", "num_training_steps", "num_decay_steps", "timescale")
NON_NEGATIVE_STEPS = ("num_warmup_steps", "num_stable_steps", "patience", "cooldown")
# Multiplicative factors that must shrink the LR (or keep it): 0 < x <= 1.
DECAY_FACTORS = ("gamma", "factor")
FRACTIONS = ("pct_start",)


def validate(cfg: DictConfig) -> None:
    run = cfg.run
    for key in ("steps", "log_every", "eval_every", "checkpoint_every"):
        _positive_int(f"run.{key}", run[key])
    if not (_is_int(run.test_every) and run.test_every >= 0):
        raise ConfigError("run.test_every", run.test_every, "must be an integer >= 0 (0: the test split at the last step only)")
    if run.diverge_factor is not None and not (is_finite_number(run.diverge_factor) and run.diverge_factor > 1):
        raise ConfigError("run.diverge_factor", run.diverge_factor, "must be a number > 1, or null (NaN/inf only)")
    keep = list(run.get("keep_checkpoints_at") or [])
    if not all(_is_int(k) and 0 < k <= run.steps for k in keep):
        raise ConfigError("run.keep_checkpoints_at", keep, f"must list steps from 1 to run.steps ({run.steps})")
    if run.get("branch_step") is not None and run.get("branch_from") is None:
        raise ConfigError("run.branch_step", run.branch_step, "needs run.branch_from: the run directory (the trunk) to start from")
    if run.get("branch_from") is not None and run.get("branch_step") is None:
        raise ConfigError("run.branch_from", run.branch_from, "needs run.branch_step: the trunk's kept checkpoint to start from")
    if run.get("branch_step") is not None and not (_is_int(run.branch_step) and 0 < run.branch_step < run.steps):
        raise ConfigError(
            "run.branch_step", run.branch_step, f"must be a step before this run's end (1 to {run.steps - 1}): the branch trains the rest"
        )
    _positive_number("optimizer.lr", cfg.optimizer.get("lr"))
    if cfg.optimizer.get("warmup_steps"):  # schedule-free optimizers warm up inside step(), where lrexp cannot log it
        raise ConfigError(
            "optimizer.warmup_steps",
            cfg.optimizer.warmup_steps,
            "must be 0: warm up with scheduler.warmup, so that the logged LR is the one applied",
        )
    if "report" in cfg:
        Thresholds.of(cfg.report)  # how the sweep's report will judge: refused now, not when the sweep has run
    clip = cfg.optimizer.get(CLIP)
    if clip is not None and not (is_finite_number(clip) and clip > 0):
        raise ConfigError(f"optimizer.{CLIP}", clip, "must be a number > 0 (the largest gradient norm a step applies), or null")
    validate_spec(_schedule_spec(cfg.scheduler), run.steps, cfg.optimizer.lr)


def validate_spec(spec: ScheduleSpec, steps: int, lr: float, *, prefix: str = "scheduler.", steps_key: str = "run.steps") -> None:
    """A schedule with lrexp's warm-up and floor, for a run of ``steps``: the checks the CLI and
    lrexp.schedule.build share (keys named ``prefix + key``; build names them as its arguments)."""
    if not (_is_int(spec.warmup) and 0 <= spec.warmup < steps):
        raise ConfigError(
            f"{prefix}{WARMUP}", spec.warmup, f"must be a number of steps >= 0 and below {steps_key} ({steps}), e.g. '${{steps:1/20}}'"
        )
    if not (is_finite_number(spec.floor) and 0 <= spec.floor < 1):
        raise ConfigError(f"{prefix}{FLOOR}", spec.floor, "must be a fraction of the peak LR in [0, 1)")
    if spec.warmup and spec.kwargs.get("num_warmup_steps"):
        raise ConfigError(
            f"{prefix}{WARMUP}",
            spec.warmup,
            f"{spec.target} warms up by itself (scheduler.num_warmup_steps={spec.kwargs['num_warmup_steps']}): set one of the two to 0",
        )
    validate_schedule(spec.kwargs, steps - spec.warmup, lr)


def validate_schedule(kwargs: Mapping[str, Any], steps: int, lr: float) -> None:
    def key(name: str) -> str:
        return f"scheduler.{name}"

    for name in POSITIVE_STEPS:
        if kwargs.get(name) is not None:
            _positive_int(key(name), kwargs[name])
    for name in NON_NEGATIVE_STEPS:
        if kwargs.get(name) is not None and not (_is_int(kwargs[name]) and kwargs[name] >= 0):
            raise ConfigError(key(name), kwargs[name], "must be an integer >= 0")
    for name in DECAY_FACTORS:
        if name in kwargs and not (is_finite_number(kwargs[name]) and 0 < kwargs[name] <= 1):
            raise ConfigError(key(name), kwargs[name], "must be in (0, 1]: a factor that decays the LR")
    for name in FRACTIONS:
        if name in kwargs and not (is_finite_number(kwargs[name]) and 0 < kwargs[name] < 1):
            raise ConfigError(key(name), kwargs[name], "must be in (0, 1)")

    if "milestones" in kwargs:
        ms = kwargs["milestones"]
        if not isinstance(ms, (list, tuple)) or not all(_is_int(m) for m in ms):
            raise ConfigError(key("milestones"), ms, "must be a list of integer steps")
        if any(b <= a for a, b in itertools.pairwise(ms)):
            raise ConfigError(key("milestones"), ms, "must be strictly increasing")
        if ms and not (0 < ms[0] and ms[-1] < steps):
            raise ConfigError(key("milestones"), ms, f"must lie within the run: 0 < milestone < run.steps ({steps})")

    warmup = kwargs.get("num_warmup_steps")
    if warmup is not None:
        total = kwargs.get("num_training_steps") or steps
        where = "scheduler.num_training_steps" if kwargs.get("num_training_steps") else "run.steps"
        if warmup >= total:
            raise ConfigError(key("num_warmup_steps"), warmup, f"must be less than {where} ({total})")
    if kwargs.get("num_decay_steps") is not None and kwargs["num_decay_steps"] > (kwargs.get("num_training_steps") or steps):
        raise ConfigError(key("num_decay_steps"), kwargs["num_decay_steps"], "must not exceed the training steps")
    if kwargs.get("lr_end") is not None and not (0 <= kwargs["lr_end"] < lr):
        raise ConfigError(key("lr_end"), kwargs["lr_end"], f"must be >= 0 and below optimizer.lr ({lr})")
    if "max_lr" in kwargs:
        _positive_number(key("max_lr"), kwargs["max_lr"])


def _schedule_spec(node: DictConfig) -> ScheduleSpec:
    try:
        return ScheduleSpec.of(node)
    except OmegaConfBaseException as e:
        raise ConfigError(getattr(e, "full_key", None) or "scheduler", None, f"cannot be resolved: {first_line(e.msg or e)}") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _positive_int(key: str, v: Any) -> None:
    if not (_is_int(v) and v > 0):
        raise ConfigError(key, v, "must be an integer > 0")


def _positive_number(key: str, v: Any) -> None:
    if not (is_finite_number(v) and v > 0):
        raise ConfigError(key, v, "must be a number > 0")
