"""What lrexp knows about schedules beyond their callables: where to draw the article's marker lines.

Markers are read from the standard parameter names torch and transformers use, so a schedule added as a
YAML file gets them too: ``num_warmup_steps`` (warm-up end), ``milestones``, ``pct_start`` x
``total_steps`` (1cycle's peak), ``num_decay_steps`` (WSD's decay start), ``T_0``/``T_mult`` (restarts).
Each kind of line is labelled once, so a legend never repeats itself. lrexp's own ``warmup`` (any
schedule's warm-up, lrexp.schedule) adds its end and shifts the schedule's own lines by it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def lr_markers(kwargs: Mapping[str, Any], steps: int) -> list[dict[str, Any]]:
    """Vertical lines for an LR plot: ``[{"step": int, "label": str}, ...]`` within the run, in order."""
    marks: list[dict[str, Any]] = []
    if kwargs.get("num_warmup_steps"):
        marks.append({"step": int(kwargs["num_warmup_steps"]), "label": "warm-up end"})
    if "pct_start" in kwargs and kwargs.get("total_steps"):
        # OneCycleLR reaches max_lr at step pct_start * total_steps - 1.
        marks.append({"step": int(float(kwargs["pct_start"]) * int(kwargs["total_steps"])) - 1, "label": "warm-up end"})
    if kwargs.get("num_decay_steps"):
        total = kwargs.get("num_training_steps") or steps
        marks.append({"step": int(total) - int(kwargs["num_decay_steps"]), "label": "decay start"})
    for m in kwargs.get("milestones") or ():
        marks.append({"step": int(m), "label": "milestone"})
    if kwargs.get("T_0"):
        period, mult, at = int(kwargs["T_0"]), int(kwargs.get("T_mult", 1)), int(kwargs["T_0"])
        while at < steps:
            marks.append({"step": at, "label": "restart"})
            period *= mult
            at += period
    return sorted((m for m in marks if 0 <= m["step"] < steps), key=lambda m: m["step"])


def schedule_markers(node: Mapping[str, Any], steps: int) -> list[dict[str, Any]]:
    """Markers of a whole scheduler node: its own (over the steps after scheduler.warmup, shifted by it)
    and the end of lrexp's warm-up."""
    warmup = int(node.get("warmup") or 0)
    inner = {k: v for k, v in node.items() if k not in ("warmup", "floor")}
    marks = [{"step": m["step"] + warmup, "label": m["label"]} for m in lr_markers(inner, steps - warmup)]
    if warmup:
        marks.insert(0, {"step": warmup, "label": "warm-up end"})
    return marks
