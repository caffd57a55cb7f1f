"""The types of each logger option's keys: Hydra structured configs, registered under ``schema/logger/``.

A logger's YAML (conf/logger/NAME.yaml) names its schema first in its defaults and holds every value
itself; the schema holds types only (every default ``MISSING``). Adding a logger to lrexp touches its
module, its YAML and its entry here; a logger of one's own registers its schema from its own package
through the ``lrexp.schemas`` entry points, as a task does (lrexp/tasks/schemas.py).
Torch-free: every start-up imports it (lrexp.config).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

GROUP = "schema/logger"


@dataclass
class LocalLoggerConfig:
    _target_: str = MISSING
    plots: bool = MISSING
    dpi: int = MISSING


class WandbMode(enum.Enum):
    auto = "auto"  # online when an API key is configured, else offline; WANDB_MODE, if set, decides
    online = "online"
    offline = "offline"
    disabled = "disabled"


@dataclass
class WandbLoggerConfig:
    """logger.wandb. No API key field on purpose: the key never goes in a config, so one is refused."""

    _target_: str = MISSING
    project: str = MISSING
    entity: str | None = MISSING
    mode: WandbMode = MISSING
    group: str | None = MISSING
    tags: list[str] = MISSING
    init_timeout: float = MISSING
    finish_timeout: float = MISSING
    log_plots: bool = MISSING


@dataclass
class TensorBoardLoggerConfig:
    _target_: str = MISSING
    log_dir: str | None = MISSING


@dataclass
class MLflowLoggerConfig:
    _target_: str = MISSING
    tracking_uri: str | None = MISSING
    experiment: str = MISSING
    log_plots: bool = MISSING


SCHEMAS = {
    "local": LocalLoggerConfig,
    "wandb": WandbLoggerConfig,
    "tensorboard": TensorBoardLoggerConfig,
    "mlflow": MLflowLoggerConfig,
}

for _name, _node in SCHEMAS.items():
    ConfigStore.instance().store(group=GROUP, name=_name, node=_node)
