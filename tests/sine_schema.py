"""The types of task=sine's keys (tests/sine_task.py; the values are in tests/conf/task/sine.yaml).

A task of one's own registers its schema as this module does, from its own package: a module without
torch (lrexp imports it at every start-up, before Hydra composes) that stores its dataclass under
``schema/task/NAME``, named by an entry point in the group ``lrexp.schemas`` of its distribution
(tests/plugins/lrexp_sine_task-0.dist-info/entry_points.txt here; ``[project.entry-points."lrexp.schemas"]``
in a pyproject.toml).
"""

from __future__ import annotations

from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING


@dataclass
class SineTaskConfig:
    _target_: str = MISSING
    points: int = MISSING
    noise: float = MISSING
    width: int = MISSING
    batch_size: int = MISSING


ConfigStore.instance().store(group="schema/task", name="sine", node=SineTaskConfig)
