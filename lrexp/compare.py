"""Judging runs: group them by what varies, choose, rank and compare, as the protocol says.

Works on runs read back from their directories (lrexp.runs); never the runner. Shared by the local
report (lrexp.report), the W&B report (lrexp.wandb_report), the studies and the sweepers. What a
comparison's tables hold is lrexp.tables; its curves, lrexp.bands.

Vocabulary:
- *varying keys*: the overrides whose values differ across the runs (lrexp.runs.varying_keys);
- *group*: runs sharing a value of the grouping key (``scheduler`` by default);
- *cell*: runs sharing every varying key except the seed (one schedule at one peak LR, say);
- a group's *chosen cell*: its best cell by the mean final **validation** loss among cells whose runs all
  completed (any cell if none did). With an LR grid, that is the schedule at its tuned LR.

The protocol (``PROTOCOL`` below, printed in every report and quoted by docs/reading-a-verdict.md) is carried out here:
validation chooses and ranks, the held-out test split reports, a fixed family of comparisons is
corrected for multiplicity, and a gap must clear a margin fixed before the sweep to count. Which metrics
exist, which way is better and how to label them is what each run's summary.json declares: nothing here
knows a task by name. ``compare`` returns a finished comparison; lrexp.diagnostics reads it afterwards.
"""

from __future__ import annotations

import enum
import itertools
import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lrexp import stats
from lrexp.protocol import Thresholds, recorded_thresholds
from lrexp.record import Goal, Metric, Status, is_finite_number
from lrexp.runs import LR_KEY, SEED_KEY, RunRecord, declared_metrics, default_group_key, signed, varying_keys

# --- cells ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stat:
    """A column's final values over a cell's completed runs: mean, sample std (None for one run: one run
    has no spread, and a 0 would claim it has) and the mean's 95% t interval (nan below two runs)."""

    n: int
    mean: float | None
    std: float | None
    low: float = math.nan
    high: float = math.nan


@dataclass
class Cell:
    group: str
    keys: dict[str, str]  # varying keys other than the group key and the seed
    runs: list[RunRecord] = field(default_factory=list)

    def completed(self) -> list[RunRecord]:
        return [r for r in self.runs if r.status is Status.COMPLETED]

    @property
    def complete(self) -> bool:
        """Every run of the cell trained to its end."""
        return len(self.completed()) == len(self.runs)

    def count(self, status: Status) -> int:
        return sum(r.status is status for r in self.runs)

    def without_result(self) -> int:
        """Runs that say nothing about their settings (failed, or interrupted and not resumed yet)."""
        return sum(not r.status.has_result for r in self.runs)

    def values(self, column: str) -> dict[int, float]:
        """seed -> the column's final value, over the completed runs that recorded it (finite)."""
        out = {}
        for i, r in enumerate(self.completed()):
            v = r.summary.final.get(column)
            if v is not None and is_finite_number(v):
                out[r.seed if r.seed is not None else -1 - i] = float(v)
        return out

    def stat(self, column: str) -> Stat:
        values = list(self.values(column).values())
        if not values:
            return Stat(0, None, None)
        mean, low, high = stats.mean_interval(values)
        return Stat(len(values), mean, statistics.stdev(values) if len(values) > 1 else None, low, high)

    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.keys.items())

    @property
    def lr(self) -> float | None:
        """The cell's peak LR where the sweep varies it (None where this cell did not set one)."""
        try:
            return float(self.keys[LR_KEY])
        except (KeyError, ValueError):
            return None


def cell_order(loss: Metric, split: str) -> Any:
    """Cells whose runs all completed first, then by the mean final loss on ``split``."""

    def key(cell: Cell) -> tuple:
        mean = cell.stat(loss.column(split)).mean
        return (not cell.complete, mean is None, signed(loss, mean) if mean is not None else math.inf)

    return key


# --- what a comparison concludes -------------------------------------------------------------------


class Claim(str, enum.Enum):
    """What the comparison of a group with the reference supports (PROTOCOL)."""

    REFERENCE = "reference"  # the best on validation: what the others are compared with
    WORSE = "worse"  # Holm p < 0.05 and the whole interval beyond the margin
    WORSE_BY_LITTLE = "worse, possibly by less than the margin"  # Holm p < 0.05, interval reaching into the margin
    NEGLIGIBLE = "negligible"  # the whole interval within the margin
    BETTER = "better on test"  # Holm p < 0.05 the other way: validation and test disagree
    UNRESOLVED = "cannot tell"  # the interval holds zero and reaches beyond the margin
    NONE = "no comparison"  # unranked, or no seed spread to compare with


@dataclass(frozen=True)
class StepsToTarget:
    """AlgoPerf's rule: the first step whose validation loss reaches the target; a run that never does
    counts as never (infinite), so a group's median is never when half its runs never got there."""

    steps: dict[int, float]  # seed -> step (math.inf: never)
    reached: int
    median: float  # math.inf: never


@dataclass
class Result:
    """One group at its chosen cell: a row of the ranked table (summary.csv), typed."""

    group: str
    cell: Cell
    rank: int | None  # by mean final validation loss (what chose the cell); None: not ranked
    values: dict[int, float]  # seed -> the reported loss (final, on the reported split)
    loss: Stat  # of the reported loss: mean, std, 95% interval
    metrics: dict[str, Stat]  # every declared metric on the reported split, by name
    chosen_by: float | None  # the chosen cell's mean final validation loss: what chose and ranked it
    diff: stats.Difference | None = None  # other - reference, oriented (+ = worse); None for the reference
    p_holm: float = math.nan  # over the whole family of pairs
    seeds_needed: int | None = None
    claim: Claim = Claim.NONE
    steps_to_target: StepsToTarget | None = None

    @property
    def mean(self) -> float | None:
        return self.loss.mean


@dataclass(frozen=True)
class Pair:
    """One comparison of the family: the lower-ranked group minus the higher-ranked one (by validation),
    seed by seed and oriented (+ = the lower-ranked is worse on the reported split), Holm-corrected."""

    lower: str
    higher: str
    diff: stats.Difference
    p_holm: float


@dataclass
class Robustness:
    """The ranking at each single peak LR next to the tuned one (each group at its own best LR)."""

    tuned: list[str]
    per_lr: list[tuple[str, list[str], float]]  # (lr, ranking at that lr, Kendall's tau vs the tuned ranking)


@dataclass
class Comparison:
    runs: list[RunRecord]
    group_key: str
    varying: list[str]
    cells: list[Cell]
    metrics: list[Metric]  # what the runs' task declares; the first is its loss
    split: str  # the split the report compares: "test", or "val" where no run recorded a test split
    results: list[Result]  # in rank order (validation), unranked last
    thresholds: Thresholds
    pairs: list[Pair] = field(default_factory=list)  # the family: every pair of ranked groups
    target: float | None = None  # the validation loss steps-to-target counts to
    robustness: Robustness | None = None
    design: str | None = None  # how the claims were made when not by the fixed protocol (lrexp.sequential)

    @property
    def best(self) -> dict[str, Cell]:
        """group -> its chosen cell, in rank order."""
        return {r.group: r.cell for r in self.results}

    @property
    def groups(self) -> list[str]:
        return [r.group for r in self.results]

    @property
    def loss(self) -> Metric:
        return self.metrics[0]

    @property
    def ranked(self) -> list[Result]:
        return [r for r in self.results if r.rank is not None]

    @property
    def reference(self) -> Result | None:
        return self.ranked[0] if self.ranked else None

    @property
    def margin_abs(self) -> float:
        """The margin in the loss's own units: report.margin x the reference's mean reported loss."""
        ref = self.reference
        return self.thresholds.margin * abs(ref.mean) if ref is not None and ref.mean is not None else math.nan

    @property
    def paired(self) -> bool:
        return all(r.diff.paired for r in self.ranked[1:] if r.diff)

    @property
    def winner(self) -> Result | None:
        """The reference, when every other ranked group is worse by more than the margin; else None."""
        others = self.ranked[1:]
        return self.ranked[0] if others and all(r.claim is Claim.WORSE for r in others) else None


# --- the comparison --------------------------------------------------------------------------------


def compare(
    runs: Sequence[RunRecord], group_key: str | None = None, thresholds: Thresholds | None = None, chosen: Mapping[str, str] | None = None
) -> Comparison:
    """``chosen``: group -> the label of the cell to take it at, where a design chose (lrexp.sequential);
    by default validation chooses."""
    if not runs:
        raise ValueError("no runs found (no summary.json under the given directories)")
    thresholds = thresholds or recorded_thresholds(r.dir for r in runs)
    varying = varying_keys(runs)
    group_key = group_key or default_group_key(varying)
    metrics = declared_metrics(runs)
    loss = metrics[0]
    cell_keys = [k for k in varying if k not in (group_key, SEED_KEY)]
    cells: dict[tuple, Cell] = {}
    for run in runs:
        keys = {k: run.value(k) for k in cell_keys}
        cell = cells.setdefault((run.value(group_key), *keys.values()), Cell(run.value(group_key), keys))
        cell.runs.append(run)

    # Validation chooses each group's cell, and ranks the groups.
    by_val = cell_order(loss, "val")
    best: dict[str, Cell] = {}
    for cell in cells.values():
        if cell.group not in best or by_val(cell) < by_val(best[cell.group]):
            best[cell.group] = cell
    for cell in cells.values():  # where a design chose (a label it names that no cell has: validation's choice stays)
        if chosen is not None and chosen.get(cell.group) == cell.label():
            best[cell.group] = cell
    # The held-out split reports, where every chosen run recorded it.
    completed = [r for cell in best.values() for r in cell.completed()]
    split = "test" if completed and all(is_finite_number(r.summary.final.get(loss.column("test"))) for r in completed) else "val"
    results = [_result(cell, metrics, split) for cell in sorted(best.values(), key=by_val)]
    rank = 0
    for r in results:
        if r.loss.mean is not None and r.chosen_by is not None and r.cell.complete:
            rank += 1
            r.rank = rank
    results.sort(key=lambda r: (r.rank is None, r.rank or 0))

    c = Comparison(list(runs), group_key, varying, list(cells.values()), metrics, split, results, thresholds)
    c.pairs = _family(c)
    _claims(c)
    c.target = _target(c)
    for r in c.results:
        r.steps_to_target = steps_to_target(r.cell, loss, c.target) if c.target is not None else None
    c.robustness = robustness(c)
    return c


def _result(cell: Cell, metrics: Sequence[Metric], split: str) -> Result:
    loss = metrics[0]
    column = loss.column(split)
    return Result(
        cell.group,
        cell,
        None,
        cell.values(column),
        cell.stat(column),
        {m.name: cell.stat(m.column(split)) for m in metrics},
        chosen_by=cell.stat(loss.column("val")).mean,
    )


def _family(c: Comparison) -> list[Pair]:
    """Every pair of ranked groups, the lower-ranked minus the higher-ranked seed by seed, Holm-corrected
    over the whole family: fixed before any number is seen, so no selection can inflate it."""
    ranked = c.ranked
    raw = [
        (
            b.group,
            a.group,
            stats.difference({s: signed(c.loss, v) for s, v in b.values.items()}, {s: signed(c.loss, v) for s, v in a.values.items()}),
        )
        for a, b in itertools.combinations(ranked, 2)
    ]
    adjusted = stats.holm([d.p for _, _, d in raw])
    return [Pair(lower, higher, d, p) for (lower, higher, d), p in zip(raw, adjusted)]


def _claims(c: Comparison) -> None:
    """Each ranked group against the reference: its difference, Holm p over the family, what it supports."""
    ranked = c.ranked
    if not ranked:
        return
    ranked[0].claim = Claim.REFERENCE
    margin, alpha = c.margin_abs, stats.ALPHA
    by_pair = {(p.lower, p.higher): p for p in c.pairs}
    for r in ranked[1:]:
        pair = by_pair[(r.group, ranked[0].group)]
        d = r.diff = pair.diff
        r.p_holm = pair.p_holm
        if not (math.isfinite(d.low) and math.isfinite(d.high)):
            r.claim = Claim.NONE
        elif -margin < d.low and d.high < margin:
            r.claim = Claim.NEGLIGIBLE
        elif pair.p_holm < alpha and d.mean > 0:
            r.claim = Claim.WORSE if d.low > margin else Claim.WORSE_BY_LITTLE
        elif pair.p_holm < alpha and d.mean < 0:
            r.claim = Claim.BETTER
        else:
            r.claim = Claim.UNRESOLVED
        if r.claim in (Claim.UNRESOLVED, Claim.WORSE_BY_LITTLE, Claim.BETTER):
            # The seeds that would resolve a gap of the observed size, or of the margin where that is larger
            # (a smaller one would not matter), at Holm's strictest threshold over the family.
            gap = max(abs(d.mean), margin) if math.isfinite(margin) else abs(d.mean)
            r.seeds_needed = stats.seeds_needed(d, comparisons=len(c.pairs), gap=gap)


def _target(c: Comparison) -> float | None:
    """The validation loss steps-to-target counts to: report.target, else the reference's median final
    validation loss made report.target_relax worse."""
    if c.thresholds.target is not None:
        return c.thresholds.target
    ref = c.reference
    if ref is None:
        return None
    finals = list(ref.cell.values(c.loss.column("val")).values())
    if not finals:
        return None
    median = statistics.median(finals)
    worse_by = c.thresholds.target_relax * abs(median)  # "5% worse" whatever the metric's sign and direction
    return median + worse_by if c.loss.goal is Goal.MIN else median - worse_by


def steps_to_target(cell: Cell, loss: Metric, target: float) -> StepsToTarget:
    column = loss.column("val")
    steps: dict[int, float] = {}
    for i, r in enumerate(cell.runs):
        if not r.status.has_result:
            continue
        reached = next((row["step"] for row in r.rows if row.get(column) is not None and not loss.better(target, row[column])), None)
        steps[r.seed if r.seed is not None else -1 - i] = math.inf if reached is None else float(reached)
    values = list(steps.values())
    return StepsToTarget(steps, sum(math.isfinite(v) for v in values), statistics.median(values) if values else math.nan)


def robustness(c: Comparison) -> Robustness | None:
    """When the sweep varies the peak LR: the ranking at each single LR, and Kendall's tau between it and
    the tuned ranking (every group at its own best LR), over the groups both rank. Both rank by
    validation, as the comparison does."""
    if LR_KEY not in c.varying or c.group_key == LR_KEY:
        return None
    tuned = [r.group for r in c.ranked]
    by_val = cell_order(c.loss, "val")
    per_lr = []
    for lr in sorted({cell.keys[LR_KEY] for cell in c.cells if cell.lr is not None}, key=float):
        at_lr = [cell for cell in c.cells if cell.keys.get(LR_KEY) == lr and cell.completed() and cell.complete]
        # With other varying keys, a group may have several cells at this LR: its best one (by validation).
        best: dict[str, Cell] = {}
        for cell in sorted(at_lr, key=by_val):
            best.setdefault(cell.group, cell)
        ranking = sorted(best, key=lambda g: by_val(best[g]))
        per_lr.append((lr, ranking, stats.kendall_tau(ranking, tuned)))
    return Robustness(tuned, per_lr)
