"""What every task is: the ``Task`` protocol the training loop is written against, the helpers tasks
share (splitting and stacking batches, checking sizes) and ``build_task``, which calls a task's class."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import nn

from lrexp.errors import ConfigError
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

    def train_batch(self, step: int) -> tuple[Any, Any]:
        """The batch of an optimizer step, (inputs, targets), each a tensor or a dict of tensors: a pure
        function of (seed, step), so resuming needs no loader state. A task with a ``grad_accum``
        attribute above 1 returns all of the step's micro-batches together; the loop splits them."""
        ...

    def loss(self, model: Model, x: Any, y: Any) -> torch.Tensor:
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


BatchTree = Any  # a tensor, or a dict / tuple / list of tensors (what a task's train_batch returns as x or y)


def split_batch(batch: BatchTree, n: int) -> list[BatchTree]:
    """``batch`` cut along its first dimension into ``n`` equal micro-batches (gradient accumulation)."""
    if isinstance(batch, torch.Tensor):
        if batch.shape[0] % n:
            raise ValueError(f"a batch of {batch.shape[0]} cannot be split into {n} equal micro-batches")
        return list(batch.chunk(n))
    if isinstance(batch, dict):
        parts = {k: split_batch(v, n) for k, v in batch.items()}
        return [{k: v[i] for k, v in parts.items()} for i in range(n)]
    if isinstance(batch, (tuple, list)):
        columns = [split_batch(v, n) for v in batch]
        return [type(batch)(c[i] for c in columns) for i in range(n)]
    raise TypeError(f"cannot split a batch of type {type(batch).__name__}")


def stack_batches(batches: Sequence[BatchTree], dim: int = 0) -> BatchTree:
    """Batches of several runs stacked along a new dimension, structure kept (lrexp.batched)."""
    first = batches[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(list(batches), dim)
    if isinstance(first, dict):
        return {k: stack_batches([b[k] for b in batches], dim) for k in first}
    if isinstance(first, (tuple, list)):
        return type(first)(stack_batches([b[i] for b in batches], dim) for i in range(len(first)))
    raise TypeError(f"cannot stack batches of type {type(first).__name__}")


def check_sizes(**sizes: int | None) -> None:
    """Sizes a task takes (batch, context, ...) must be positive integers; None where a size is optional."""
    for name, value in sizes.items():
        if value is not None and value < 1:
            raise ConfigError(f"task.{name}", value, "must be an integer > 0")


def check_fractions(upper: float, **fractions: float) -> None:
    """Held-out fractions of the data, each in (0, upper)."""
    for name, value in fractions.items():
        if not 0.0 < value < upper:
            raise ConfigError(f"task.{name}", value, f"must be between 0 and {upper:g} (exclusive)")


def build_task(node: DictConfig, device: torch.device, seed: int) -> Task:
    check_signature(node, "task", bound_positionally=0, supplied=("device", "seed"))
    task: Task = call_target(node, "task", device=device, seed=seed, _convert_="all")
    return task
