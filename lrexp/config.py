"""Structured-config schemas and resolvers.

The YAML files in conf/ say *what* a run is; the dataclasses here say what each value may be, so that a
mistyped or missing value fails when Hydra composes the config, before anything is built. Importing this
module registers both with Hydra and OmegaConf; it must stay cheap (no torch), because every start-up
and every launcher worker imports it.

Schedulers carry no schema on purpose: adding a schedule is adding one YAML file that points at any
callable, and lrexp.build checks its keys against that callable's signature instead.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, List, Optional, Tuple

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, OmegaConf


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
    steps: int = 3000
    log_every: int = 10
    eval_every: int = 100
    device: Device = Device.auto
    precision: Precision = Precision.auto
    progress: bool = True
    compile: bool = False
    # Torch intra-op threads; 0 = automatic (split the cores between parallel jobs of a sweep).
    threads: int = 0
    checkpoint_every: int = 1000
    resume: bool = False
    # Diverged = non-finite loss, or a logged loss above this multiple of the first; null = NaN/inf only.
    diverge_factor: Optional[float] = 10.0


@dataclass
class Config:
    """The root of every composed lrexp config."""

    task: Any = MISSING
    optimizer: Any = MISSING
    scheduler: Any = MISSING
    logger: Any = field(default_factory=dict)
    run: RunConfig = field(default_factory=RunConfig)
    seed: int = 0


# --- tasks ---------------------------------------------------------------------------------------


@dataclass
class DigitsTaskConfig:
    _target_: str = "lrexp.tasks.digits.DigitsTask"
    batch_size: int = 128
    hidden: List[int] = field(default_factory=lambda: [256, 256])
    val_fraction: float = 0.2
    # The train/validation split is fixed: it does not move with the run's seed.
    split_seed: int = 0


@dataclass
class TinyLMTaskConfig:
    _target_: str = "lrexp.tasks.tinylm.TinyLMTask"
    batch_size: int = 32
    context: int = 128
    n_layer: int = 2
    n_head: int = 4
    n_embd: int = 128
    # Off: a run of a few minutes reads about a quarter of the default corpus, once; nothing to regularise.
    dropout: float = 0.0
    # A text file or a folder of text files; null = the Python standard library's own .py sources.
    corpus: Optional[str] = None
    # Which files of a task.corpus folder are read (files that are not text are skipped).
    corpus_glob: str = "**/*"
    max_corpus_bytes: int = 8_000_000
    # The validation chunks are fixed by the corpus: the split does not move with the run's seed.
    val_fraction: float = 0.05
    # Validation = eval_batches x batch_size fixed windows.
    eval_batches: int = 8


# --- optimizers ----------------------------------------------------------------------------------


@dataclass
class AdamConfig:
    _target_: str = "torch.optim.Adam"
    _partial_: bool = True
    lr: float = 1e-3
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    fused: Optional[bool] = True


@dataclass
class AdamWConfig(AdamConfig):
    """Adam's keys; the decay is decoupled from the gradient, so it gets a non-zero default."""

    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.01


@dataclass
class SGDConfig:
    _target_: str = "torch.optim.SGD"
    _partial_: bool = True
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 0.0
    fused: Optional[bool] = True


# --- loggers -------------------------------------------------------------------------------------


@dataclass
class LocalLoggerConfig:
    plots: bool = True
    dpi: int = 110


class WandbMode(enum.Enum):
    auto = "auto"  # online when an API key is configured, else offline; WANDB_MODE, if set, decides
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class WandbLoggerConfig:
    """logger.wandb. No API key field on purpose: the key never goes in a config, so one is refused."""

    project: str = "lrexp"
    entity: Optional[str] = None
    mode: WandbMode = WandbMode.auto
    group: Optional[str] = None
    tags: List[str] = field(default_factory=list)
    init_timeout: float = 30.0
    finish_timeout: float = 30.0
    log_plots: bool = True


def steps_fraction(fraction: Any, *, _root_: Any) -> int:
    """``${steps:1/3}`` = round(1/3 x run.steps): schedule lengths that keep their shape at any run length.

    Exact rational arithmetic, rounding halves up, so 1/3, 2/3, 1/6 and 1/30 of 3000 give the article's
    1000, 2000, 500 and 100 to the last digit.
    """
    try:
        frac = Fraction(str(fraction))
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"${{steps:{fraction}}}: expected a fraction such as 1/3 or 0.25") from None
    return math.floor(frac * int(_root_.run.steps) + Fraction(1, 2))


def register() -> None:
    """Register schemas and resolvers (idempotent: launcher workers may import this twice)."""
    if not OmegaConf.has_resolver("steps"):
        OmegaConf.register_new_resolver("steps", steps_fraction)
    cs = ConfigStore.instance()
    cs.store(name="lrexp_schema", node=Config)
    # Under their own group, so they are never mistaken for selectable options (or globbed by sweeps).
    for group, name, node in [
        ("schema/task", "digits", DigitsTaskConfig),
        ("schema/task", "tinylm", TinyLMTaskConfig),
        ("schema/optimizer", "adamw", AdamWConfig),
        ("schema/optimizer", "adam", AdamConfig),
        ("schema/optimizer", "sgd", SGDConfig),
        ("schema/logger", "local", LocalLoggerConfig),
        ("schema/logger", "wandb", WandbLoggerConfig),
    ]:
        cs.store(group=group, name=name, node=node)


register()
