"""Curves of a group's runs aligned by step: the mean and its band at every logged step (the report's figures)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from lrexp.record import is_finite_number
from lrexp.runs import RunRecord


@dataclass
class Band:
    steps: list[int]
    mean: list[float]
    low: list[float]
    high: list[float]
    n: list[int]


def band(runs: Sequence[RunRecord], metric: str, spread: str = "minmax", smoothing: float = 0.0) -> Band:
    """Mean over runs at every step any run logged ``metric``, with a min-max or +-std band.

    Runs that stopped early (diverged) simply drop out of later steps; ``n`` says how many remain.
    ``smoothing`` (0..1) is an exponential moving average applied per run before averaging, debiased
    like TensorBoard's so that the first points are not dragged towards zero.
    """
    per_run = []
    for r in runs:
        steps = [row["step"] for row in r.rows if row.get(metric) is not None]
        values = [row[metric] for row in r.rows if row.get(metric) is not None]
        per_run.append(dict(zip(steps, _ema(values, smoothing) if smoothing else values)))
    all_steps = sorted({s for d in per_run for s in d})
    out = Band([], [], [], [], [])
    for s in all_steps:
        vals = [d[s] for d in per_run if s in d and is_finite_number(d[s])]
        if not vals:
            continue
        mean = statistics.fmean(vals)
        if spread == "std":
            sd = statistics.stdev(vals) if len(vals) > 1 else 0.0
            low, high = mean - sd, mean + sd
        else:
            low, high = min(vals), max(vals)
        out.steps.append(s)
        out.mean.append(mean)
        out.low.append(low)
        out.high.append(high)
        out.n.append(len(vals))
    return out


def _ema(values: Sequence[float], weight: float) -> list[float]:
    out, last, debias = [], 0.0, 0.0
    for v in values:
        last = weight * last + (1 - weight) * v
        debias = weight * debias + (1 - weight)
        out.append(last / debias)
    return out
