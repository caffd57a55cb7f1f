"""Config -> objects: the optimizer and the schedule, instantiated from their ``_target_``.

Both are the torch/transformers callables themselves (``_partial_: true``), instantiated through
lrexp.targets (keys checked against the callable's signature first); lrexp drops ``fused`` where torch
has no fused kernel for the device, and drives the scheduler through lrexp.schedule (warm-up, floor).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lrexp.schedule import Direct, Schedule, WarmupFloor
from lrexp.targets import call_target, check_signature

# lrexp's own keys in a scheduler node (conf/config.yaml): they apply to any scheduler and are not its arguments.
SCHEDULE_KEYS = ("warmup", "floor")


def build_optimizer(node: DictConfig, param_groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    check_signature(node, "optimizer")
    overrides: dict[str, Any] = {}
    if node.get("fused") and device.type not in _fused_devices():
        overrides["fused"] = None  # torch's default kernel; fused=True would raise on this device
    # Plain lists, not OmegaConf containers: param_groups are pickled into checkpoints (betas, ...).
    optimizer: torch.optim.Optimizer = call_target(node, "optimizer", param_groups, _convert_="all", **overrides)
    if has_modes(optimizer):
        optimizer.train()  # type: ignore[attr-defined]  # schedule-free optimizers start in evaluation mode
    return optimizer


def has_modes(optimizer: torch.optim.Optimizer) -> bool:
    """Schedule-free optimizers train at one point and are evaluated at another (their average), switched
    by optimizer.train() and optimizer.eval(); torch's own optimizers have no such modes."""
    return callable(getattr(optimizer, "eval", None)) and callable(getattr(optimizer, "train", None))


def split_schedule(node: DictConfig) -> tuple[DictConfig, int, float]:
    """The scheduler's own node (resolved, without lrexp's keys), and scheduler.warmup and scheduler.floor."""
    resolved = OmegaConf.to_container(node, resolve=True)
    assert isinstance(resolved, dict)
    warmup, floor = int(resolved.pop("warmup", 0) or 0), float(resolved.pop("floor", 0.0) or 0.0)
    return OmegaConf.create(resolved), warmup, floor


def build_schedule(node: DictConfig, optimizer: torch.optim.Optimizer) -> Schedule:
    """The scheduler the node points at, driven as lrexp.schedule defines: as it is, or with warm-up and floor."""
    inner, warmup, floor = split_schedule(node)
    check_signature(inner, "scheduler")
    target = str(inner._target_)
    if warmup == 0 and floor == 0:
        return Direct(call_target(inner, "scheduler", optimizer), target)
    return WarmupFloor(optimizer, lambda shadow: call_target(inner, "scheduler", shadow), target, warmup, floor)


def _fused_devices() -> list[str]:
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        return list(_get_fused_kernels_supported_devices())
    except ImportError:  # private helper; older or newer torch: assume the common ones
        return ["cuda", "cpu"]
