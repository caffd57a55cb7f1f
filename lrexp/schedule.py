"""Schedules for your own loop: ``build()`` gives any schedule lrexp knows, warm-up and floor included,
exactly as a run drives it. The drivers themselves (``Schedule``, ``Direct``, ``WarmupFloor``,
``metric_driven``, ``PiecewiseLinear``) live in lrexp.drivers, the low room every schedule is built on,
and are named here too: ``lrexp.schedule.PiecewiseLinear`` is a ``_target_`` in configs lrexp writes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lrexp.drivers import Direct, Driver, PiecewiseLinear, Schedule, WarmupFloor, metric_driven
from lrexp.schedule_spec import ScheduleSpec

__all__ = ["Direct", "Driver", "PiecewiseLinear", "Schedule", "WarmupFloor", "build", "metric_driven"]


def build(
    schedule: str | Mapping[str, Any],
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    warmup: int | str | None = None,
    floor: float | None = None,
    **arguments: Any,
) -> Schedule:
    """Any schedule lrexp knows, warm-up and floor included, driving your optimizer, in one call::

        schedule = lrexp.schedule.build("cosine_full", optimizer, steps=1000, warmup=50, floor=0.01)
        for step in range(1000):
            loss.backward(); optimizer.step(); optimizer.zero_grad(); schedule.step()

    ``schedule`` is an option of conf/scheduler/ ("wsd", "cosine_warmup", ...) or a scheduler node of
    your own (a mapping with ``_target_``); ``steps`` is your run's length, of which every ``${steps:F}``
    length is a fraction; ``warmup`` is steps, or a fraction of the run such as "1/20" (default: the
    schedule's own, 0 for most), ``floor`` a fraction of the peak (default 0); ``arguments``
    override the schedule's own keys (``T_max=300``). The optimizer's LR now is the peak. The result is
    exactly what ``python -m lrexp`` drives (lrexp.build), with torch's ``step()``/``get_last_lr()``, and
    ``after_eval(val_loss)`` for a metric-driven schedule (plateau, greedy)."""
    from lrexp.build import build_schedule
    from lrexp.config import compose_schedule
    from lrexp.validate import validate_spec

    peak = float(optimizer.param_groups[0]["lr"])
    keys = dict(arguments)
    if warmup is not None:  # else the schedule's own (schedule_free warms up by itself)
        keys["warmup"] = f"${{steps:{warmup}}}" if isinstance(warmup, str) else warmup
    if floor is not None:
        keys["floor"] = floor
    node = compose_schedule(schedule, steps=steps, lr=peak, keys=keys)
    spec = ScheduleSpec.of(node)
    validate_spec(spec, steps, peak, prefix="", steps_key="steps")
    driver = build_schedule(spec, optimizer)
    driver.length = steps
    return driver
