"""Driving a scheduler: the one interface the training loop steps, whatever the scheduler is.

A scheduler from conf/scheduler/ (any torch or transformers callable) is driven per optimizer update
(``scheduler.step()``) or, when its ``step()`` wants a metric (ReduceLROnPlateau, transformers'
GreedyLR), once per evaluation with the validation loss. ``scheduler.warmup`` and ``scheduler.floor``
apply to any of them; with both at 0 the scheduler is driven as it is, untouched.

Warm-up and floor, precisely. With t the 0-based optimizer step, W = scheduler.warmup, f =
scheduler.floor, peak = the group's LR as configured (optimizer.lr), and inner_k the LR the scheduler
itself would apply at its own step k:

    t <  W:  lr_t = peak * (t / W)                    (linear from 0, as transformers' warm-ups do)
    t >= W:  lr_t = inner_(t-W)                        when f = 0
             lr_t = f * peak + (1 - f) * inner_(t-W)   when f > 0

So the inner schedule starts when warm-up ends and spans the steps after it: every ``${steps:F}`` length
in its config is a fraction of run.steps - W (lrexp.config), as a transformers warm-up schedule's
decay spans the steps after its warm-up. The floor rescales rather than clips: a schedule that decays to
0 decays to f x peak, with its shape (as ``eta_min``/``min_lr_rate`` do). A metric-driven scheduler sees
only the evaluations after warm-up. Momentum (or Adam's beta1) that the inner scheduler cycles (OneCycleLR,
CyclicLR) is passed through unchanged.

Why not torch's SequentialLR: it cannot wrap ReduceLROnPlateau (pytorch #68978), LinearLR cannot start
from 0, and there is no floor. So the inner scheduler runs on a *shadow* optimizer (same param-group
settings, one dummy parameter each, never stepped), and this wrapper writes the real optimizer's LR
from it. Recursive schedulers (CosineAnnealingLR, ExponentialLR) then see only their own LRs, never the
warm-up's or the floor's, and the wrapper's state (its step, the shadow groups, the inner scheduler's
own state_dict) resumes bit for bit.
"""

from __future__ import annotations

import inspect
import itertools
import warnings
from collections.abc import Callable
from typing import Any, Protocol

import torch

from lrexp.errors import ConfigError

# Param-group settings a scheduler may change besides the LR: copied from the shadow to the real groups.
CYCLED = ("momentum", "betas")


class Schedule(Protocol):
    """The loop calls after_step() after every optimizer step and after_eval() after every evaluation;
    each driver acts on the one its scheduler wants. step() and get_last_lr() are torch's names for
    loops that expect a torch scheduler."""

    metric_driven: bool
    length: int | None  # the run length it was built for, where stepping past it is warned of (build())

    def after_step(self) -> None: ...

    def step(self) -> None: ...

    def get_last_lr(self) -> list[float]: ...

    def after_eval(self, metric: float) -> None:
        """``metric`` is the task's validation loss."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def metric_driven(scheduler: Any, target: str) -> bool:
    """Whether ``scheduler.step()`` wants the validation metric; a step lrexp cannot drive is refused.

    ``step()`` with no required argument is stepped once per optimizer update; ``step(metrics)`` (or
    ``metric``) once per evaluation. Anything else, such as timm's ``step(epoch)`` (per epoch, with an
    epoch count lrexp does not have), would be driven wrongly, so it is refused in one line.
    """
    required = [
        p.name
        for p in inspect.signature(scheduler.step).parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if not required:
        return False
    if required[0] in ("metrics", "metric") and len(required) == 1:
        return True
    raise ConfigError(
        "scheduler._target_",
        target,
        f"its step({', '.join(required)}) cannot be driven by lrexp, which steps a scheduler once per optimizer update "
        "(step()) or once per evaluation with the validation loss (step(metrics)); per-epoch schedulers such as "
        "timm's are not supported",
    )


class Driver:
    """What every driver offers a loop that is not lrexp's: torch's scheduler names, so that HF's
    Trainer (``optimizers=(optimizer, schedule)``), Lightning or a hand-written loop can step it."""

    optimizer: torch.optim.Optimizer
    length: int | None = None  # the run length build() was given: stepping past it is warned of, once
    stepped: int = 0  # step() calls so far (a loop that is not lrexp's; lrexp's own calls after_step)

    def after_step(self) -> None: ...

    def step(self) -> None:
        """torch's name for after_step: call it after every optimizer.step()."""
        self.after_step()
        self.stepped += 1
        if self.length is not None and self.stepped == self.length + 1:
            warnings.warn(
                f"lrexp.schedule: stepped past its length (steps={self.length}): every length of the schedule is a fraction of "
                "it, so past it the LR no longer follows the schedule (cosine_full rises again); build it with the steps your loop runs",
                stacklevel=2,
            )

    def get_last_lr(self) -> list[float]:
        """The LR of every parameter group for the next step (what torch's get_last_lr returns)."""
        return [float(g["lr"]) for g in self.optimizer.param_groups]


class Direct(Driver):
    """The scheduler as it is: no warm-up, no floor (the article's five schedules stay exact)."""

    def __init__(self, scheduler: Any, target: str) -> None:
        self.scheduler, self.optimizer = scheduler, scheduler.optimizer
        self.metric_driven = metric_driven(scheduler, target)

    def after_step(self) -> None:
        if not self.metric_driven:
            self.scheduler.step()

    def after_eval(self, metric: float) -> None:
        if self.metric_driven:
            self.scheduler.step(metric)

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = self.scheduler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scheduler.load_state_dict(state)


class _Shadow(torch.optim.Optimizer):
    """An optimizer that holds param-group settings for a scheduler to act on, and never moves anything."""

    def __init__(self, real: torch.optim.Optimizer) -> None:
        groups = [
            {k: v for k, v in g.items() if k != "params"} | {"params": [torch.zeros(1, requires_grad=True)]} for g in real.param_groups
        ]
        super().__init__(groups, dict(real.defaults))

    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        return None


class WarmupFloor(Driver):
    """Warm-up and/or floor around any scheduler (see the module's docstring for the definition)."""

    def __init__(
        self, optimizer: torch.optim.Optimizer, make: Callable[[torch.optim.Optimizer], Any], target: str, warmup: int, floor: float
    ) -> None:
        self.optimizer, self.warmup, self.floor = optimizer, warmup, floor
        self.peaks = [float(g["lr"]) for g in optimizer.param_groups]
        for group, peak in zip(optimizer.param_groups, self.peaks):  # torch's LRScheduler convention: the peak stays
            group.setdefault("initial_lr", peak)  # readable after warm-up has set the LR to 0 (lrexp.recorder reads it)
        self.shadow = _Shadow(optimizer)
        self.scheduler = make(self.shadow)
        self.metric_driven = metric_driven(self.scheduler, target)
        self.t = 0  # optimizer steps taken
        self._apply()

    def after_step(self) -> None:
        self.t += 1
        if self.t > self.warmup and not self.metric_driven:
            self.shadow.step()  # (torch warns when a scheduler steps before its optimizer ever did)
            self.scheduler.step()
        self._apply()

    def after_eval(self, metric: float) -> None:
        if self.metric_driven and self.t >= self.warmup:  # evaluations from the end of warm-up on
            self.shadow.step()
            self.scheduler.step(metric)
            self._apply()

    def _apply(self) -> None:
        """Write the LR (and anything the inner scheduler cycles) for the next optimizer step."""
        for group, shadow, peak in zip(self.optimizer.param_groups, self.shadow.param_groups, self.peaks):
            if self.t < self.warmup:
                group["lr"] = peak * (self.t / self.warmup)  # as transformers' LambdaLR computes it: base x factor
                continue
            inner = shadow["lr"]
            group["lr"] = inner if self.floor == 0 else self.floor * peak + (1 - self.floor) * inner
            for key in CYCLED:
                if key in shadow and key in group:
                    group[key] = shadow[key]

    def state_dict(self) -> dict[str, Any]:
        groups = [{k: v for k, v in g.items() if k != "params"} for g in self.shadow.param_groups]
        return {"t": self.t, "shadow_groups": groups, "scheduler": self.scheduler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.t = state["t"]
        for group, saved in zip(self.shadow.param_groups, state["shadow_groups"]):
            group.update(saved)
        self.scheduler.load_state_dict(state["scheduler"])


class PiecewiseLinear:
    """An LR factor linear between knots, constant beyond them: ``lr_lambda`` for torch's LambdaLR, so that
    a schedule given as numbers (the law-optimal schedule lrexp.predict writes) runs as torch's own
    scheduler. A plain object of lists: LambdaLR saves and restores it in its state_dict."""

    def __init__(self, steps: list[int], factors: list[float]) -> None:
        if len(steps) != len(factors) or len(steps) < 2 or any(b <= a for a, b in itertools.pairwise(steps)):
            raise ConfigError("scheduler.lr_lambda.steps", steps, "must be increasing, one per factor, at least two")
        self.steps, self.factors = [int(s) for s in steps], [float(f) for f in factors]

    def __call__(self, step: int) -> float:
        import numpy as np

        return float(np.interp(step, self.steps, self.factors))
