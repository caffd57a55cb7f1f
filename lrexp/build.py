"""Config -> objects: the optimizer and the schedule, instantiated from their ``_target_``.

Both are the torch/transformers callables themselves (``_partial_: true``), instantiated through
lrexp.targets (keys checked against the callable's signature first); lrexp drops ``fused`` where torch
has no fused kernel for the device, keeps its own ``optimizer.clip_grad_norm`` out of the optimizer's
arguments, and drives the scheduler through lrexp.schedule (warm-up, floor).
"""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lrexp.drivers import Direct, Schedule, WarmupFloor
from lrexp.schedule_spec import ScheduleSpec
from lrexp.targets import call_target, check_signature
from lrexp.validate import CLIP  # lrexp's own key in an optimizer node: the training loop clips, not the optimizer


def clip_norm_of(node: DictConfig) -> float | None:
    """optimizer.clip_grad_norm: the largest total gradient norm a step applies, or None (no clipping)."""
    value = node.get(CLIP)
    return None if value is None else float(value)


def optimizer_node(node: DictConfig) -> DictConfig:
    """The optimizer's own arguments: the node without lrexp's keys."""
    if CLIP not in node:
        return node
    container = OmegaConf.to_container(node, resolve=True)
    assert isinstance(container, dict)
    container.pop(CLIP)
    return OmegaConf.create(container)


def build_optimizer(node: DictConfig, param_groups: list[dict[str, Any]], device: torch.device) -> torch.optim.Optimizer:
    node = optimizer_node(node)
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


def build_schedule(spec: ScheduleSpec, optimizer: torch.optim.Optimizer) -> Schedule:
    """The scheduler the spec points at, driven as lrexp.schedule defines: as it is, or with warm-up and floor."""
    node = OmegaConf.create(spec.node)
    check_signature(node, "scheduler")

    def make(opt: torch.optim.Optimizer) -> Any:
        return call_target(node, "scheduler", opt)

    if spec.plain:
        return Direct(make(optimizer), spec.target)
    return WarmupFloor(optimizer, make, spec.target, spec.warmup, spec.floor)


def lr_sequence(spec: ScheduleSpec, optimizer_cfg: DictConfig, steps: int) -> list[float] | None:
    """The LR of every optimizer step (the first group's) that a run with these settings applies, from
    the real scheduler stepped on a one-parameter optimizer; None for a metric-driven schedule, whose LRs
    depend on what it is told."""
    import warnings

    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = build_optimizer(optimizer_cfg, [{"params": [param]}], torch.device("cpu"))
    schedule = build_schedule(spec, optimizer)
    if schedule.metric_driven:
        return None
    lrs = []
    with warnings.catch_warnings():
        # No optimizer.step() here: nothing is trained, and the LR sequence does not depend on it.
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        for _ in range(steps):
            lrs.append(optimizer.param_groups[0]["lr"])
            schedule.after_step()
    return lrs


def _fused_devices() -> list[str]:
    try:
        from torch.optim.optimizer import _get_fused_kernels_supported_devices

        return list(_get_fused_kernels_supported_devices())
    except ImportError:  # private helper; older or newer torch: assume the common ones
        return ["cuda", "cpu"]
