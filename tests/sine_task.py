"""A task that exists only in the tests: it proves that a new task needs nothing outside its own module
and YAML. Regression of a noisy sine with a small MLP; its metrics are named so that no code in lrexp
could guess them: ``mse`` (its loss, lower is better) and ``r2`` (higher is better, linear scale).

Its schema (tests/sine_schema.py) is registered as any task's outside lrexp: through an entry point in
the group ``lrexp.schemas`` (tests/plugins holds the distribution that declares it)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lrexp.errors import ConfigError
from lrexp.record import Goal, Metric
from lrexp.tasks import Model


class SineTask:
    metrics = (Metric("mse", Goal.MIN, "mean squared error", "log"), Metric("r2", Goal.MAX, "R squared", "linear"))

    def __init__(self, points: int, noise: float, width: int, batch_size: int, *, device: torch.device, seed: int) -> None:
        if points < 2 * batch_size:
            raise ConfigError("task.points", points, f"must be at least 2 x task.batch_size ({2 * batch_size})")
        g = torch.Generator().manual_seed(0)  # the data never moves with the run's seed
        x = torch.rand(points, 1, generator=g) * 6 - 3
        y = torch.sin(x) + noise * torch.randn(points, 1, generator=g)
        q = points // 4  # a quarter each for validation and test, the rest to train on
        self.x, self.y = x[2 * q :].to(device), y[2 * q :].to(device)
        self.splits = {"val": (x[:q].to(device), y[:q].to(device)), "test": (x[q : 2 * q].to(device), y[q : 2 * q].to(device))}
        self.batch_size, self.seed = batch_size, seed
        self.model = nn.Sequential(nn.Linear(1, width), nn.Tanh(), nn.Linear(width, 1)).to(device)

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.model.parameters())}]

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        idx = torch.randint(len(self.y), (self.batch_size,), generator=g).to(self.x.device)
        return self.x[idx], self.y[idx]

    @staticmethod
    def loss(model: Model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: Model, split: str) -> dict[str, torch.Tensor]:
        x, y = self.splits[split]
        mse = F.mse_loss(model(x), y)
        return {"mse": mse, "r2": 1 - mse / y.var(unbiased=False)}


class UnbatchableSineTask(SineTask):
    """The sine task with a loss that reads a number back to the host on the way (as a task that clips
    or logs inside its loss might): torch.func.vmap cannot batch that, so a batched sweep trains it alone."""

    def loss(self, model: Model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        loss = F.mse_loss(model(x), y)
        if loss.item() > 1e6:
            raise FloatingPointError("the loss blew up")
        return loss
