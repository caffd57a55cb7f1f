"""A scheduler node read once: the callable it points at, that callable's own arguments, and lrexp's
``warmup`` and ``floor``, which apply to any schedule (lrexp.schedule defines them).

Everything that needs to know what a schedule is reads a ``ScheduleSpec``: the checks before a run
(lrexp.validate), building it (lrexp.build), the marker lines of its plots, and the ``${steps:F}``
resolver (lrexp.config), which must know the warm-up to measure a schedule's lengths from its end. The
key names and their defaults live here and in conf/config.yaml, nowhere else. Torch-free: config
resolution and the reports import it.

Markers are read from the standard parameter names torch and transformers use, so a schedule added as
a YAML file gets them too: ``num_warmup_steps`` (warm-up end), ``milestones``, ``pct_start`` x
``total_steps`` (1cycle's peak), ``num_decay_steps`` (WSD's decay start), ``T_0``/``T_mult`` (restarts).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

# lrexp's own keys in a scheduler node (conf/config.yaml): they apply to any scheduler and are not its arguments.
WARMUP, FLOOR = "warmup", "floor"
# Hydra's keys in a _target_ node: how to call, not what to call it with.
HYDRA_KEYS = ("_target_", "_partial_", "_convert_", "_recursive_", "_args_")


@dataclass(frozen=True)
class ScheduleSpec:
    node: dict[str, Any]  # the scheduler's own node, resolved, Hydra's keys included (what is instantiated)
    warmup: int = 0  # steps of lrexp's linear warm-up before the schedule starts
    floor: float = 0.0  # the lowest LR, as a fraction of the peak
    kwargs: dict[str, Any] = field(init=False)  # the callable's own arguments (the node without Hydra's keys)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kwargs", {k: v for k, v in self.node.items() if k not in HYDRA_KEYS})

    @classmethod
    def of(cls, node: DictConfig | Mapping[str, Any]) -> ScheduleSpec:
        """Read a scheduler node (resolving its interpolations): lrexp's keys apart from the callable's."""
        resolved = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
        assert isinstance(resolved, dict)
        inner = {str(k): v for k, v in resolved.items()}
        warmup, floor = inner.pop(WARMUP, None), inner.pop(FLOOR, None)
        return cls(inner, 0 if warmup is None else warmup, 0.0 if floor is None else floor)

    @staticmethod
    def warmup_of(node: Any) -> int:
        """The warm-up of a scheduler node as it is being resolved (the ${steps:F} resolver's view)."""
        warmup = node.get(WARMUP) if node is not None else None
        return int(warmup or 0)

    @property
    def target(self) -> str:
        return str(self.node.get("_target_", ""))

    @property
    def plain(self) -> bool:
        """No warm-up and no floor: the scheduler is driven exactly as it is."""
        return self.warmup == 0 and self.floor == 0

    def markers(self, steps: int) -> list[dict[str, Any]]:
        """Vertical lines for an LR plot over a run of ``steps``: the schedule's own (over the steps after
        the warm-up, shifted by it) and the end of lrexp's warm-up; ``[{"step": int, "label": str}]``."""
        marks = [{"step": m["step"] + self.warmup, "label": m["label"]} for m in lr_markers(self.kwargs, steps - self.warmup)]
        if self.warmup:
            marks.insert(0, {"step": self.warmup, "label": "warm-up end"})
        return marks


def lr_markers(kwargs: Mapping[str, Any], steps: int) -> list[dict[str, Any]]:
    """A schedule's own marker lines within ``steps``, in order, each kind labelled by what it marks."""
    marks: list[dict[str, Any]] = []
    if kwargs.get("num_warmup_steps"):
        marks.append({"step": int(kwargs["num_warmup_steps"]), "label": "warm-up end"})
    if "pct_start" in kwargs and kwargs.get("total_steps"):
        # OneCycleLR reaches max_lr at step pct_start * total_steps - 1.
        marks.append({"step": int(float(kwargs["pct_start"]) * int(kwargs["total_steps"])) - 1, "label": "warm-up end"})
    if kwargs.get("num_decay_steps"):
        total = kwargs.get("num_training_steps") or steps
        marks.append({"step": int(total) - int(kwargs["num_decay_steps"]), "label": "decay start"})
    for m in kwargs.get("milestones") or ():
        marks.append({"step": int(m), "label": "milestone"})
    if kwargs.get("T_0"):
        period, mult, at = int(kwargs["T_0"]), int(kwargs.get("T_mult", 1)), int(kwargs["T_0"])
        while at < steps:
            marks.append({"step": at, "label": "restart"})
            period *= mult
            at += period
    return sorted((m for m in marks if 0 <= m["step"] < steps), key=lambda m: m["step"])
