"""Config -> objects: the optimizer and the scheduler, instantiated from their ``_target_``.

Both are the torch/transformers callables themselves (``_partial_: true``), instantiated through
lrexp.targets (keys checked against the callable's signature first); lrexp drops ``fused`` where torch
has no fused kernel for the device.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from omegaconf import DictConfig

from lrexp.targets import call_target, check_signature


def build_optimizer(node: DictConfig, param_groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    check_signature(node, "optimizer")
    overrides: dict[str, Any] = {}
    if node.get("fused") and device.type not in _fused_devices():
        overrides["fused"] = None  # torch's default kernel; fused=True would raise on this device
    # Plain lists, not OmegaConf containers: param_groups are pickled into checkpoints (betas, ...).
    optimizer: torch.optim.Optimizer = call_target(node, "optimizer", param_groups, _convert_="all", **overrides)
    return optimizer


def build_scheduler(node: DictConfig, optimizer: torch.optim.Optimizer) -> Any:
    check_signature(node, "scheduler")
    return call_target(node, "scheduler", optimizer)


def is_metric_driven(scheduler: Any) -> bool:
    """True for schedulers whose step() needs the validation metric (ReduceLROnPlateau and its kind)."""
    step_params = list(inspect.signature(scheduler.step).parameters.values())
    return any(p.default is p.empty and p.kind is p.POSITIONAL_OR_KEYWORD for p in step_params)


def _fused_devices() -> list[str]:
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        return list(_get_fused_kernels_supported_devices())
    except ImportError:  # private helper; older or newer torch: assume the common ones
        return ["cuda", "cpu"]
