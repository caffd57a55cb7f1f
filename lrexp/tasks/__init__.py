"""Tasks: what is trained, on which data.

A task is any class a ``task/*.yaml`` points at with ``_target_``; lrexp calls it with the YAML's keys
plus ``device`` and ``seed``. It provides:

- ``model``: the ``nn.Module``, already on the device;
- ``metrics``: the names ``evaluate`` returns, ``val_loss`` first;
- ``param_groups()``: the optimizer's parameter groups (a ``name`` key names the group's LR column);
- ``train_batch(step)``: the batch of an optimizer step, a pure function of (seed, step);
- ``loss(model, x, y)``: the training loss of a batch;
- ``evaluate(model)``: validation metrics as device tensors.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig

from lrexp.build import call_target, check_signature


def build_task(node: DictConfig, device: torch.device, seed: int):
    check_signature(node, "task", bound_positionally=0, supplied=("device", "seed"))
    return call_target(node, "task", device=device, seed=seed, _convert_="all")
