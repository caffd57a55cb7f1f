"""Tasks: what is trained, on which data. ``Task`` is the interface the training loop is written against.

A task is any class a ``task/*.yaml`` points at with ``_target_``; lrexp calls it with the YAML's keys
plus ``device`` and ``seed``. Nothing outside the task's own module, YAML and (optional) schema knows
about it: the loop, the record, the plots and the reports read what the task declares.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import nn

from lrexp.record import Metric
from lrexp.targets import call_target, check_signature

# What a task's loss and evaluate receive: its model, or, when runs are batched (lrexp.batched), a function
# computing one run's slice of the stacked models. Either way a task only calls it, as it calls its model.
Model = Callable[..., Any]


class Task(Protocol):
    model: nn.Module  # already on the device
    # What evaluate() returns, each with its direction, label and axis scale; the first is the loss
    # (divergence, metric-driven schedules and the comparison go by it).
    metrics: Sequence[Metric]

    def param_groups(self) -> list[dict[str, Any]]:
        """The optimizer's parameter groups; a ``name`` key names the group's columns in metrics.csv."""
        ...

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch of an optimizer step: a pure function of (seed, step), so resuming needs no loader state."""
        ...

    def loss(self, model: Model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The training loss of a batch (a scalar tensor)."""
        ...

    def evaluate(self, model: Model, split: str) -> dict[str, torch.Tensor]:
        """Every declared metric on a fixed split (``val``, ``test``), keyed by metric name, as device
        tensors: the caller reads them back in one host sync. The splits are the task's: they never depend
        on the run's seed (runs batched together are evaluated on the first run's task).

        To be batchable (lrexp.batched), loss and evaluate must be functions torch.func.vmap can map:
        no ``.item()``, no in-place updates of tensors created outside, no data-dependent Python control
        flow. Tasks that are not train alone, as every task can."""
        ...


def build_task(node: DictConfig, device: torch.device, seed: int) -> Task:
    check_signature(node, "task", bound_positionally=0, supplied=("device", "seed"))
    task: Task = call_target(node, "task", device=device, seed=seed, _convert_="all")
    return task
