"""The root schema and the resolvers.

Hydra's structured-config pattern: the dataclasses say what type each key has, and nothing else
(every default is ``MISSING``); the YAML files in conf/ hold every value, with the comment that says
why. So a value lives in one place, a mistyped value fails when Hydra composes, and a key the YAML
forgets fails as missing instead of silently taking a second default. Importing this module
registers the schemas and the ``${steps:F}`` resolver with Hydra and OmegaConf; it must stay cheap
(no torch), because every start-up and every launcher worker imports it.

The schemas of tasks and loggers live with them (lrexp/tasks/schemas.py, lrexp/loggers/schemas.py),
registered from there. Schedulers and optimizers carry no schema on purpose: adding one is adding a YAML file that points at
any callable, and lrexp.build checks its keys against that callable's signature instead.
"""

from __future__ import annotations

import enum
import functools
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf

from lrexp.errors import ConfigError, describe
from lrexp.schedule_spec import WARMUP, ScheduleSpec


class Device(enum.Enum):
    auto = "auto"  # CUDA, then MPS, then CPU
    cpu = "cpu"
    cuda = "cuda"
    mps = "mps"


class Precision(enum.Enum):
    auto = "auto"  # bf16 autocast on CUDA when the GPU supports it, fp32 elsewhere
    fp32 = "fp32"
    bf16 = "bf16"  # bf16 autocast (weights and optimizer state stay fp32)


@dataclass
class RunConfig:
    steps: int = MISSING
    log_every: int = MISSING
    eval_every: int = MISSING
    test_every: int = MISSING
    device: Device = MISSING
    precision: Precision = MISSING
    progress: bool = MISSING
    compile: bool = MISSING
    threads: int = MISSING
    checkpoint_every: int = MISSING
    resume: bool = MISSING
    diverge_factor: float | None = MISSING
    keep_checkpoints_at: list[int] = MISSING
    branch_from: str | None = MISSING
    branch_step: int | None = MISSING


@dataclass
class ReportConfig:
    """How a comparison report judges (lrexp.protocol.Thresholds): recorded by every run, changes no number."""

    margin: float = MISSING
    target: float | None = MISSING
    target_relax: float = MISSING


@dataclass
class Config:
    """The root of every composed lrexp config."""

    task: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    logger: Any = field(default_factory=dict)
    report: ReportConfig = field(default_factory=ReportConfig)
    run: RunConfig = field(default_factory=RunConfig)
    seed: int = MISSING


def _fraction(name: str, value: Any) -> Fraction:
    try:
        return Fraction(str(value))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"${{{name}:{value}}}: expected a fraction such as 1/3 or 0.25") from None


def steps_fraction(fraction: Any, *, _root_: Any, _node_: Any) -> int:
    """``${steps:1/3}`` = round(1/3 x the steps a length spans): lengths that keep their shape at any run length.

    Anywhere but a scheduler, that is run.steps. Inside ``scheduler`` (except scheduler.warmup itself) it
    is the steps after the warm-up, run.steps - scheduler.warmup: the scheduler starts when warm-up ends
    (lrexp.schedule). Exact rational arithmetic, rounding halves up, so 1/3, 2/3, 1/6 and 1/30 of 3000
    give the article's 1000, 2000, 500 and 100 to the last digit.
    """
    steps = int(_root_.run.steps)
    key = _node_._get_full_key(None)
    if key.startswith("scheduler.") and key != f"scheduler.{WARMUP}":
        steps -= ScheduleSpec.warmup_of(_root_.get("scheduler"))
    return math.floor(_fraction("steps", fraction) * steps + Fraction(1, 2))


def lr_fraction(fraction: Any, *, _root_: Any) -> float:
    """``${lr:1/10}`` = 1/10 x optimizer.lr: LRs a scheduler takes in absolute terms (CyclicLR's base_lr)."""
    return float(_fraction("lr", fraction) * Fraction(str(_root_.optimizer.lr)))


def compose_schedule(schedule: str | Any, *, steps: int, lr: float, keys: dict[str, Any]) -> Any:
    """A scheduler node, resolved for a run of ``steps`` at peak ``lr`` with ``keys`` set in it: an option
    of conf/scheduler/ composed by Hydra exactly as ``python -m lrexp scheduler=NAME`` composes it (once
    per process; its lengths stay interpolations until resolved here), or a node of one's own (a mapping
    with ``_target_``)."""
    node = composed_scheduler(schedule) if isinstance(schedule, str) else dict(schedule)
    root = OmegaConf.create({"run": {"steps": steps}, "optimizer": {"lr": lr}, "scheduler": node})
    for key, value in keys.items():
        OmegaConf.update(root, f"scheduler.{key}", value, force_add=True)
    return OmegaConf.create(OmegaConf.to_container(root.scheduler, resolve=True))


@functools.cache
def composed_scheduler(name: str) -> dict[str, Any]:
    """conf/scheduler/NAME as Hydra composes it into a run's config, unresolved. Works inside another
    Hydra app too: Hydra's global state is put back."""
    from hydra import compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import MissingConfigException

    global_hydra = GlobalHydra.instance()
    previous = global_hydra.hydra if global_hydra.is_initialized() else None
    global_hydra.clear()
    try:
        with initialize_config_module("lrexp.conf", version_base="1.3"):
            cfg = compose("config", overrides=[f"scheduler={name}"])
    except MissingConfigException as e:
        options = ", ".join(str(o) for o in (e.options or []))
        raise ConfigError("schedule", name, f"not an option of lrexp's conf/scheduler/ (options: {options})") from None
    finally:
        if previous is not None:
            global_hydra.initialize(previous)
    node = OmegaConf.to_container(cfg.scheduler, resolve=False)
    assert isinstance(node, dict)
    return {str(k): v for k, v in node.items()}


SCHEMA_ENTRY_POINTS = "lrexp.schemas"


def register() -> None:
    """Register schemas and resolvers (idempotent: launcher workers may import this twice)."""
    if not OmegaConf.has_resolver("steps"):
        OmegaConf.register_new_resolver("steps", steps_fraction)
    if not OmegaConf.has_resolver("lr"):
        OmegaConf.register_new_resolver("lr", lr_fraction)
    ConfigStore.instance().store(name="lrexp_schema", node=Config)
    # Each room registers its own options' schemas when imported (under schema/GROUP/, so they are never
    # mistaken for selectable options); this module names the rooms, never a task or a logger.
    # Tasks and loggers of one's own: each distribution names its schemas' module in the entry-point
    # group lrexp.schemas (importing it registers them), so nothing in lrexp names them.
    from importlib.metadata import entry_points

    import lrexp.loggers.schemas
    import lrexp.tasks.schemas  # noqa: F401

    for entry in entry_points(group=SCHEMA_ENTRY_POINTS):
        try:
            entry.load()
        except Exception as e:  # another package's module: one line naming it, not a traceback at start-up
            where = f"{entry.name} = {entry.value}" + (f" (from {entry.dist.name})" if entry.dist else "")
            raise SystemExit(f"lrexp: error: the {SCHEMA_ENTRY_POINTS} entry point {where} failed to load: {describe(e)}") from None


register()
