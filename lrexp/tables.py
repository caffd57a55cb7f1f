"""A comparison as its CSV tables hold it: summary.csv's row per ranked group, cells.csv's row per cell.

The column names are the report's contract with its readers (a spreadsheet, W&B, a script): they stay
as they are when the judging (lrexp.compare) changes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from lrexp.compare import Cell, Comparison, Result, Stat
from lrexp.record import Metric, Status, finite_or_none


def stat_columns(stat_of: Mapping[str, Stat], metrics: Sequence[Metric], split: str, intervals: bool = False) -> dict[str, Any]:
    """``final_<split>_<metric>_mean`` and ``_std`` (and the loss's ``_ci_low``, ``_ci_high``) columns."""
    out: dict[str, Any] = {}
    for i, metric in enumerate(metrics):
        column, s = metric.column(split), stat_of[metric.name]
        out[f"final_{column}_mean"], out[f"final_{column}_std"] = s.mean, s.std
        if intervals and i == 0:
            out[f"final_{column}_ci_low"], out[f"final_{column}_ci_high"] = finite_or_none(s.low), finite_or_none(s.high)
    return out


def result_row(c: Comparison, r: Result) -> dict[str, Any]:
    """A ranked group as summary.csv records it (the diagnostics' columns are added by the report)."""
    cell, d, st = r.cell, r.diff, r.steps_to_target
    return {
        "rank": r.rank,
        c.group_key: r.group,
        "settings": cell.label(),
        "runs": len(cell.runs),
        "completed": cell.count(Status.COMPLETED),
        "diverged": cell.count(Status.DIVERGED),
        "failed": cell.without_result(),
        "split": c.split,
        **stat_columns(r.metrics, c.metrics, c.split, intervals=True),
        f"final_{c.loss.column('val')}_mean": r.chosen_by,  # what chose the cell and ranked the group
        "claim": r.claim.value,
        "diff_mean": finite_or_none(d.mean) if d else None,
        "diff_ci_low": finite_or_none(d.low) if d else None,
        "diff_ci_high": finite_or_none(d.high) if d else None,
        "diff_relative": finite_or_none(d.mean / r_ref) if d and (r_ref := _reference_mean(c)) else None,
        "margin": finite_or_none(c.margin_abs),
        "pairs": d.n if d else None,
        "paired": d.paired if d else None,
        "wins": d.wins if d else None,
        "p": finite_or_none(d.p) if d else None,
        "p_holm": finite_or_none(r.p_holm),
        "seeds_needed": r.seeds_needed,
        "target": c.target,
        "steps_to_target_median": st.median if st else None,
        "reached_target": st.reached if st else None,
        "lr_stalled_fraction": max((x.summary.lr_stalled_fraction or 0.0) for x in cell.runs),
    }


def cell_row(c: Comparison, cell: Cell) -> dict[str, Any]:
    """A cell (a group at one setting) as cells.csv records it: validation, and the reported split."""
    row: dict[str, Any] = {
        c.group_key: cell.group,
        **cell.keys,
        "runs": len(cell.runs),
        "completed": cell.count(Status.COMPLETED),
        "diverged": cell.count(Status.DIVERGED),
    }
    for split in dict.fromkeys(("val", c.split)):
        row.update(stat_columns({m.name: cell.stat(m.column(split)) for m in c.metrics}, c.metrics, split))
    return row


def _reference_mean(c: Comparison) -> float | None:
    ref = c.reference
    return abs(ref.mean) if ref is not None and ref.mean else None
