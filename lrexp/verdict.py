"""A comparison in words and tables: the verdict and the ranked table, shared by the local report
(lrexp.report) and the W&B report (lrexp.wandb_report). Every number comes from lrexp.compare, every
claim from its protocol (lrexp.compare.PROTOCOL): a winner only when every other group is worse by more
than the margin after Holm's correction over every pair; otherwise who cannot be told apart, who differs
negligibly, and about how many seeds would resolve the rest. It never rests on a single run, it says
when two seeds leave a single degree of freedom, and it says when the regime (overfitting, still
learning) makes the ranking itself doubtful.

Numbers are printed with significant figures, never rounded to zero: a gap of 6.7e-08 reads
``+6.7e-08 (+0.00006%)``, not ``+0.0000``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from lrexp.compare import Claim, Comparison, Result
from lrexp.diagnostics import Diagnosis
from lrexp.record import Status
from lrexp.stats import ALPHA, LEVEL, MAX_SEEDS

SIGNIFICANT = 4  # a value: 0.07412, 1.749
SPREAD_SIGNIFICANT = 2  # a spread or an interval's half width: what decides how many digits mean anything


def fmt_num(value: float, digits: int = SIGNIFICANT, sign: bool = False) -> str:
    """``value`` to ``digits`` significant figures; scientific where a fixed point would need more than
    four leading zeros (or more than six integer digits)."""
    if value is None or not math.isfinite(value):
        return "n/a"
    plus = "+" if sign else ""
    if value == 0:
        return f"{plus}0" if sign else "0"
    magnitude = math.floor(math.log10(abs(value)))
    if magnitude < -4 or magnitude > 6:
        return f"{value:{plus}.{digits - 1}e}"
    return f"{value:{plus}.{max(0, digits - 1 - magnitude)}f}"


def fmt(value: float | None, std: float | None = None) -> str:
    """A mean, with its spread: ``0.07412 ± 0.0051``."""
    if value is None or not math.isfinite(value):
        return "n/a"
    spread = f" ± {fmt_num(std, SPREAD_SIGNIFICANT)}" if std is not None and math.isfinite(std) else ""
    return fmt_num(value) + spread


def fmt_interval(mean: float | None, low: float, high: float, sign: bool = False) -> str:
    """A mean and its interval, with as many digits as the interval's width makes meaningful (two
    significant figures of its half width): ``+0.0093 [+0.0043, +0.0144]``, ``+6.7e-08 [+5.7e-08, +7.7e-08]``."""
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if not (math.isfinite(low) and math.isfinite(high)) or high <= low:
        return fmt_num(mean, sign=sign)
    plus = "+" if sign else ""
    half_magnitude = math.floor(math.log10((high - low) / 2))
    scale = math.floor(math.log10(max(abs(mean), abs(low), abs(high))))
    if scale < -4 or scale > 6:
        digits = max(SPREAD_SIGNIFICANT, scale - half_magnitude + SPREAD_SIGNIFICANT)
        parts = [f"{v:{plus}.{digits - 1}e}" for v in (mean, low, high)]
    else:
        decimals = max(0, SPREAD_SIGNIFICANT - 1 - half_magnitude)
        parts = [f"{v:{plus}.{decimals}f}" for v in (mean, low, high)]
    # A non-zero value that rounds to zero at the interval's precision gets its own two significant
    # figures: "+7.3e-06 [-0.0028, +0.0028]", never "+0.0000 [-0.0028, +0.0028]".
    parts = [fmt_num(v, SPREAD_SIGNIFICANT, sign) if v != 0 and float(text) == 0 else text for v, text in zip((mean, low, high), parts)]
    return f"{parts[0]} [{parts[1]}, {parts[2]}]"


def fmt_relative(value: float, reference: float | None) -> str:
    """``value`` as a percentage of ``reference``, to two significant figures: ``+12%``, ``+0.00006%``."""
    if reference is None or reference == 0 or not math.isfinite(value):
        return ""
    pct = 100 * value / abs(reference)
    if pct == 0:
        return "0%"
    decimals = max(0, SPREAD_SIGNIFICANT - 1 - math.floor(math.log10(abs(pct))))
    return f"{pct:+.{decimals}f}%"


def fmt_p(p: float) -> str:
    return "n/a" if not math.isfinite(p) else "< 0.001" if p < 0.001 else f"{p:.3f}"


def p_text(p: float) -> str:
    """ "p < 0.001" or "p = 0.012", for prose."""
    shown = fmt_p(p)
    return f"p {shown}" if shown.startswith("<") else f"p = {shown}"


def diff_text(c: Comparison, r: Result) -> str:
    """A difference from the reference with its interval and its size relative to the reference's loss."""
    d = r.diff
    if d is None:
        return "n/a"
    ref = c.reference
    relative = fmt_relative(d.mean, ref.mean if ref else None)
    return fmt_interval(d.mean, d.low, d.high, sign=True) + (f" ({relative})" if relative else "")


def margin_text(c: Comparison) -> str:
    return f"{c.thresholds.margin:.2%} of the reference's loss, {fmt_num(c.margin_abs, SPREAD_SIGNIFICANT)}"


def seeds_clause(r: Result) -> str:
    """How many seeds would tell ``r`` from the reference: a clause that ends a sentence."""
    n, d = r.seeds_needed, r.diff
    if d is not None and d.mean == 0:
        return "the two ended identical on every seed: nothing to resolve"
    if n is None:
        return "there is no spread to estimate the seeds it would take"
    if n > MAX_SEEDS:
        return f"telling them apart would take more than {MAX_SEEDS} seeds"
    return f"telling them apart would take about {n} seeds"


def p_clause(r: Result, lead: str = " (") -> str:
    """`` (p = 0.012)`` after a difference, or nothing where the design's claims rest on intervals alone."""
    if not math.isfinite(r.p_holm):
        return ""
    return f"{lead}{p_text(r.p_holm)}" + (")" if lead == " (" else "")


def names(results: list[Result]) -> str:
    return ", ".join(r.group for r in results)


@dataclass(frozen=True)
class Wording:
    """What every claim's sentence in a verdict refers to: the group validation chose, how the family of
    comparisons was corrected, and what counts as significant."""

    best: str
    family: str
    significant: str


def _verb(results: list[Result], one: str = "is", many: str = "are") -> str:
    return one if len(results) == 1 else many


def _worse_by_little(c: Comparison, rs: list[Result], w: Wording) -> str:
    excludes = "its interval excluding 0" if c.design else w.significant
    return (
        f" {names(rs)} {_verb(rs)} worse ({w.family}, {excludes}) but possibly by less "
        f"than the margin ({margin_text(c)}): {rs[0].group} by {diff_text(c, rs[0])}."
    )


def _negligible(c: Comparison, rs: list[Result], w: Wording) -> str:
    return (
        f" {names(rs)} {_verb(rs, 'differs', 'differ')} from {w.best} by a negligible "
        f"amount: within the margin ({margin_text(c)}); {rs[0].group} by {diff_text(c, rs[0])}."
    )


def _better(c: Comparison, rs: list[Result], w: Wording) -> str:
    return (
        f" Validation and test disagree: {names(rs)} {_verb(rs)} better on test than "
        f"{w.best}, which validation chose ({rs[0].group} by {diff_text(c, rs[0])}{p_clause(rs[0], ', ')})."
    )


def _worse(c: Comparison, rs: list[Result], w: Wording) -> str:
    return f" {names(rs)} {_verb(rs)} worse by more than the margin ({w.family}, {w.significant})."


# After "no winner" and what cannot be told apart, one sentence per claim that some group holds, in this
# order, naming every group that holds it and giving the first one's gap.
CLAIM_SENTENCES: tuple[tuple[Claim, Callable[[Comparison, list[Result], Wording], str]], ...] = (
    (Claim.WORSE_BY_LITTLE, _worse_by_little),
    (Claim.NEGLIGIBLE, _negligible),
    (Claim.BETTER, _better),
    (Claim.WORSE, _worse),
)


def headline(c: Comparison, diagnosis: Diagnosis | None = None) -> str:
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
    interval = fmt_interval(best.mean, best.loss.low, best.loss.high)
    if len(ranked) == 1:
        text = f"{name} is the only {key} with completed runs: {what} {interval} ({level} interval)."
    elif n < 2 or any(len(r.values) < 2 for r in ranked[1:]):
        text = (
            f"{best.group} is best on validation ({what} {fmt(best.mean)}) but from a single run per {key}, so there is no "
            f"seed spread to weigh the gaps against and no verdict: sweep seed=0,1,2 or more."
        )
    else:
        others = ranked[1:]
        pairing = f"paired over {n} seeds" if c.paired else "unpaired: the groups do not share seeds"
        family = c.design or (f"Holm-corrected over all {len(c.pairs)} pairs" if len(c.pairs) > 1 else "one comparison")
        significant = "every interval" if c.design else f"p < {ALPHA:g}"
        by_claim = {claim: [r for r in others if r.claim is claim] for claim in Claim}
        if c.winner is not None:
            closest = others[0]
            text = (
                f"{name} wins: its {what} is {interval} ({level} interval), and every other {key} is worse by more "
                f"than the margin ({margin_text(c)}; {pairing}, {family}); the closest, {closest.group}, by "
                f"{diff_text(c, closest)}{p_clause(closest)}."
            )
        else:
            text = f"No winner at {n} seeds: {best.group} is best on validation, with a {what} of {interval}."
            unresolved = by_claim[Claim.UNRESOLVED] + by_claim[Claim.NONE]
            if unresolved:
                runner = unresolved[0]
                d = runner.diff
                if c.design and d is not None:  # a sequential design ends honest: how large a gap it could still hide
                    gap = max(abs(d.low), abs(d.high)) if math.isfinite(d.low) else math.nan
                    text += (
                        f" Cannot tell {names([best, *unresolved])} apart at {d.n} seeds: {runner.group} differs by {diff_text(c, runner)} "
                        f"({pairing}, {family}), so |gap| < {fmt_num(gap, SPREAD_SIGNIFICANT)}."
                    )
                else:
                    if d is not None and d.excludes_zero:  # significant alone, not once corrected for the whole family
                        why = f"an interval that excludes zero on its own, but not once corrected for {len(c.pairs)} pairs"
                    else:
                        why = "an interval that includes zero"
                    text += (
                        f" Cannot tell {names([best, *unresolved])} apart: {runner.group} differs by {diff_text(c, runner)}, {why} "
                        f"({pairing}, {family}, {p_text(runner.p_holm)}); {seeds_clause(runner)}."
                    )
            wording = Wording(best.group, family, significant)
            for claim, sentence in CLAIM_SENTENCES:
                if by_claim[claim]:
                    text += sentence(c, by_claim[claim], wording)
        if n == 2:
            text += " With 2 seeds each interval rests on 1 degree of freedom: fragile; sweep more seeds before trusting it."
    regime = diagnosis.regime if diagnosis else []
    if regime:
        text += (
            " Caution: "
            + "; ".join(f"{f.kind.value} ({', '.join(f.groups)})" for f in regime)
            + ". In this regime the ranking may not hold for other run lengths: see the notes."
        )
    if split == "val":
        text += " (No test split was recorded: these are the validation numbers that also chose the cells, so they are optimistic.)"
    return text


def table_header(c: Comparison) -> list[str]:
    loss, split = c.loss, c.split
    s = "test" if split == "test" else "val"
    others = [f"final {s} {m.name}" for m in c.metrics[1:]]
    return [
        "rank", c.group_key, "setting", "runs", f"final {s} {loss.name} [{LEVEL:.0%} CI]", "Δ vs best [95% CI]",
        "seeds won", "p (Holm)", "claim", *others, f"final val {loss.name}", "steps to target", "flags",
    ]  # fmt: skip


def table_cells(c: Comparison, r: Result, diagnosis: Diagnosis | None = None) -> list[str]:
    """One ranked group as the text a report's table shows."""
    cell = r.cell
    runs = str(len(cell.runs))
    if not cell.complete:
        diverged = cell.count(Status.DIVERGED)
        runs = f"{len(cell.completed())} of {len(cell.runs)}" + (f" ({diverged} diverged)" if diverged else "")
    if r.rank == 1:
        diff, won, p = "best", "-", "-"
    elif r.diff is None:
        diff, won, p = "n/a", "-", "-"
    else:
        diff = diff_text(c, r)
        won = f"{r.diff.wins} of {r.diff.n}" if r.diff.paired else "unpaired"
        p = fmt_p(r.p_holm)
    others = [fmt(r.metrics[m.name].mean, r.metrics[m.name].std) for m in c.metrics[1:]]
    flags = diagnosis.of(r.group).flags if diagnosis else []
    return [
        str(r.rank or "-"), r.group, cell.label() or "-", runs, fmt_interval(r.mean, r.loss.low, r.loss.high),
        diff, won, p, r.claim.value if r.rank and r.rank > 1 else "-", *others, fmt(r.chosen_by), steps_text(r),
        ", ".join(f.value for f in flags) or "-",
    ]  # fmt: skip


def steps_text(r: Result) -> str:
    """The median step a group reached the target at, and how many of its runs did."""
    st = r.steps_to_target
    if st is None or not st.steps:
        return "-"
    median = "never" if math.isinf(st.median) else f"{st.median:.0f}"
    return f"{median} ({st.reached} of {len(st.steps)})"


def markdown_table(c: Comparison, diagnosis: Diagnosis | None = None) -> str:
    head = table_header(c)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(table_cells(c, r, diagnosis)) + " |" for r in c.results]
    return "\n".join(lines)
