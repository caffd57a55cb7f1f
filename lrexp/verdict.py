"""A comparison in words and tables: the verdict and the ranked table, shared by the local report
(lrexp.report) and the W&B report (lrexp.wandb_report). Every number comes from lrexp.compare.

The verdict names a winner only when every other group is worse with a Holm-corrected p < 0.05; then
every group's 95% interval of its difference from the winner excludes zero as well (Holm tests the last
comparison at the uncorrected level). Otherwise it says which groups cannot be told apart at this
number of seeds, and roughly how many seeds a gap of the observed size would need; where an interval
excludes zero on its own but the correction for several comparisons does not hold, it says exactly that.
It never rests on a single run, and it says when the regime (overfitting, still learning) makes the
ranking itself doubtful.
"""

from __future__ import annotations

import math
from typing import Any

from lrexp.compare import Comparison, Result
from lrexp.diagnostics import REGIME_KINDS
from lrexp.stats import ALPHA, LEVEL, MAX_SEEDS


def fmt(value: float | None, std: float | None = None, digits: int = 4) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:.{digits}f}" + (f" ± {std:.{digits}f}" if std is not None and math.isfinite(std) else "")


def fmt_interval(mean: float | None, low: float, high: float, digits: int = 4, sign: bool = False) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    if not (math.isfinite(low) and math.isfinite(high)):
        return f.format(mean)
    return f"{f.format(mean)} [{f.format(low)}, {f.format(high)}]"


def fmt_p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float) -> str:
    """ "p < 0.001" or "p = 0.012", for prose."""
    shown = fmt_p(p)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def seeds_clause(r: Result) -> str:
    """How many seeds would tell ``r`` from the best: a clause that ends the verdict's sentence."""
    n, d = r.seeds_needed, r.diff
    if d is not None and d.mean == 0:
        return "the two ended identical on every seed: nothing to resolve"
    if n is None:
        return "there is no spread to estimate the seeds it would take"
    if n > MAX_SEEDS:
        return f"telling them apart at a gap this size would take more than {MAX_SEEDS} seeds (a negligible gap)"
    return f"telling them apart at a gap this size would take about {n} seeds"


def headline(c: Comparison) -> str:
    """The verdict: who wins, or who cannot be told apart, on the held-out split, and why to doubt it."""
    key, loss, split = c.group_key, c.loss, c.split
    ranked = c.ranked
    what = f"final {loss.title(split)}"
    if not ranked:
        return "No run completed: nothing to rank."
    best = ranked[0]
    n = len(best.values)
    name = best.group + (f" (at {best.cell.label()}, chosen on validation)" if best.cell.keys else "")
    level = f"{LEVEL:.0%}"
    if len(ranked) == 1:
        text = f"{name} is the only {key} with completed runs: {what} {fmt_interval(best.mean, best.low, best.high)} ({level} interval)."
    elif n < 2 or any(len(r.values) < 2 for r in ranked[1:]):
        text = (
            f"{best.group} has the best {what} ({fmt(best.mean)}) but from a single run per {key}, so there is no "
            f"seed spread to weigh the gaps against and no verdict: sweep seed=0,1,2 or more."
        )
    else:
        others = ranked[1:]
        worse = [r for r in others if r.diff and r.p_holm < ALPHA and r.diff.mean > 0]
        tied = [r for r in others if r not in worse]
        pairing = f"paired over {n} seeds" if c.paired else "unpaired: the groups do not share seeds"
        if not tied:
            closest = others[0]
            text = (
                f"{name} wins: its {what} is {fmt_interval(best.mean, best.low, best.high)} ({level} interval), and every "
                f"other {key} is worse ({pairing}, Holm-corrected p < {ALPHA:g}); the closest, {closest.group}, by "
                f"{diff_text(closest)} ({p_text(closest.p_holm)})."
            )
        else:
            runner = tied[0]
            d = runner.diff
            if d and d.excludes_zero:  # significant alone, not once corrected for the other comparisons
                why = f"an interval that excludes zero on its own, but not once corrected for {len(others)} comparisons"
            else:
                why = "an interval that includes zero"
            text = (
                f"Cannot tell {', '.join([best.group] + [r.group for r in tied])} apart at {n} seeds: {best.group} has the best "
                f"{what} ({fmt_interval(best.mean, best.low, best.high)}), but {runner.group} is worse by only "
                f"{diff_text(runner)}, {why} ({pairing}, Holm-corrected {p_text(runner.p_holm)}); {seeds_clause(runner)}."
            )
            if worse:
                text += f" {', '.join(r.group for r in worse)} {'is' if len(worse) == 1 else 'are'} worse (Holm-corrected p < {ALPHA:g})."
    regime = [f for f in c.flags if f.kind in REGIME_KINDS]
    if regime:
        text += (
            " Caution: "
            + "; ".join(f"{f.kind} ({', '.join(f.groups)})" for f in regime)
            + ". In this regime the ranking may not hold for other run lengths: see the notes."
        )
    if split == "val":
        text += " (No test split was recorded: these are the validation numbers that also chose the cells, so they are optimistic.)"
    return text


def diff_text(r: Result) -> str:
    d = r.diff
    return fmt_interval(d.mean, d.low, d.high, sign=True) if d else "n/a"


def table_header(c: Comparison) -> list[str]:
    loss, split = c.loss, c.split
    s = "test" if split == "test" else "val"
    others = [f"final {s} {m.name}" for m in c.metrics[1:]]
    return [
        "rank", c.group_key, "setting", "runs", f"final {s} {loss.name} [{LEVEL:.0%} CI]", "Δ vs best [95% CI]",
        "seeds won", "p (Holm)", *others, f"final val {loss.name}", "flags",
    ]  # fmt: skip


def table_cells(row: dict[str, Any], c: Comparison) -> list[str]:
    """One table row (from lrexp.compare.table) as the text a report shows."""
    loss, split = c.loss, c.split
    column = loss.column(split)
    runs = str(row["runs"])
    if row["completed"] != row["runs"]:
        runs = f"{row['completed']} of {row['runs']}" + (f" ({row['diverged']} diverged)" if row["diverged"] else "")
    if row["rank"] == 1:
        diff, won, p = "best", "-", "-"
    elif row["diff_mean"] is None:
        diff, won, p = "n/a", "-", "-"
    else:
        diff = fmt_interval(row["diff_mean"], _nan(row["diff_ci_low"]), _nan(row["diff_ci_high"]), sign=True)
        won = f"{row['wins']} of {row['pairs']}" if row["paired"] else "unpaired"
        p = fmt_p(_nan(row["p_holm"]))
    mean = row[f"final_{column}_mean"]
    others = [fmt(row[f"final_{m.column(split)}_mean"], row[f"final_{m.column(split)}_std"]) for m in c.metrics[1:]]
    return [
        str(row["rank"] or "-"), str(row[c.group_key]), row["settings"] or "-", runs,
        fmt_interval(mean, _nan(row.get(f"final_{column}_ci_low")), _nan(row.get(f"final_{column}_ci_high"))),
        diff, won, p, *others, fmt(row[f"final_{loss.column('val')}_mean"]), row["flags"].replace(";", ", ") or "-",
    ]  # fmt: skip


def markdown_table(c: Comparison, rows: list[dict[str, Any]]) -> str:
    head = table_header(c)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(table_cells(r, c)) + " |" for r in rows]
    return "\n".join(lines)


def _nan(v: float | None) -> float:
    return math.nan if v is None else v
