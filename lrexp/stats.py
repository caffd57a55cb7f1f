"""The statistics of a schedule comparison: differences over seeds with 95% intervals, Holm's correction,
the seeds a gap would need, rank agreement. scipy supplies every distribution and test; only Holm's
step-down adjustment (which scipy lacks) is written out here.

Runs that share a seed share the initialisation and the data order across schedules, so the difference
between two schedules is taken seed by seed (a paired comparison): the seed's own luck cancels, and the
interval is far tighter than one built from two means and their spreads. Where two groups share fewer
than two seeds, the comparison falls back to Welch's unpaired test, and says so.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sp

LEVEL = 0.95  # every interval lrexp reports
ALPHA = 1 - LEVEL  # the family-wise error rate of a verdict, after Holm's correction
POWER = 0.8  # for "about N seeds would resolve this gap"
MAX_SEEDS = 1000  # beyond this, "more than 1000": the gap is too small to chase with seeds


@dataclass(frozen=True)
class Difference:
    """``other - reference`` over seeds, oriented so that a positive mean means the other is worse."""

    n: int  # pairs (paired), or the smaller group (unpaired)
    mean: float
    low: float  # the 95% interval of the mean difference; nan below 2 pairs
    high: float
    p: float  # two-sided, uncorrected; nan where no test is possible
    sd: float  # of the paired differences, or the pooled spread (unpaired): what seeds_needed scales
    paired: bool
    wins: int | None = None  # seeds where the other beat the reference (paired only)
    dropped: int = 0  # seeds without a partner in the other group (paired only)

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, float, float]:
    """The mean and its t interval; the interval is nan for fewer than two values."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    half = sp.t.ppf((1 + level) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


def paired(other: Mapping[int, float], reference: Mapping[int, float], level: float = LEVEL) -> Difference:
    """Seed by seed over the seeds both have (a paired t interval and test)."""
    seeds = sorted(other.keys() & reference.keys())
    diffs = [other[s] - reference[s] for s in seeds]
    dropped = len(other.keys() ^ reference.keys())
    wins = sum(d < 0 for d in diffs)
    mean, low, high = mean_interval(diffs, level) if diffs else (math.nan, math.nan, math.nan)
    sd = statistics.stdev(diffs) if len(diffs) > 1 else math.nan
    if len(diffs) < 2:
        p = math.nan
    elif sd <= 1e-12 * max(1.0, abs(mean)):  # every seed moved by the same amount, up to rounding
        sd, low, high, p = 0.0, mean, mean, 1.0 if mean == 0 else 0.0
    else:
        p = float(sp.ttest_rel(diffs, [0.0] * len(diffs)).pvalue)
    return Difference(len(diffs), mean, low, high, p, sd, paired=True, wins=wins, dropped=dropped)


def unpaired(other: Sequence[float], reference: Sequence[float], level: float = LEVEL) -> Difference:
    """Welch's interval and test: for groups that do not share seeds."""
    n1, n2 = len(other), len(reference)
    mean = statistics.fmean(other) - statistics.fmean(reference) if n1 and n2 else math.nan
    if n1 < 2 or n2 < 2:
        return Difference(min(n1, n2), mean, math.nan, math.nan, math.nan, math.nan, paired=False)
    v1, v2 = statistics.variance(other) / n1, statistics.variance(reference) / n2
    if v1 + v2 == 0:
        return Difference(min(n1, n2), mean, mean, mean, 1.0 if mean == 0 else 0.0, 0.0, paired=False)
    df = (v1 + v2) ** 2 / (v1**2 / (n1 - 1) + v2**2 / (n2 - 1))  # Welch-Satterthwaite
    half = sp.t.ppf((1 + level) / 2, df) * math.sqrt(v1 + v2)
    p = float(sp.ttest_ind(other, reference, equal_var=False).pvalue)
    pooled = math.sqrt((statistics.variance(other) + statistics.variance(reference)) / 2)
    return Difference(min(n1, n2), mean, mean - half, mean + half, p, pooled, paired=False)


def difference(other: Mapping[int, float], reference: Mapping[int, float], level: float = LEVEL) -> Difference:
    """Paired where the two groups share at least two seeds, unpaired (Welch) otherwise."""
    if len(other.keys() & reference.keys()) >= 2:
        return paired(other, reference, level)
    return unpaired(list(other.values()), list(reference.values()), level)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order (nan stays nan and does not count).

    Sorted ascending, the i-th of m p-values is multiplied by (m - i), and each adjusted value is at
    least the one before it: rejecting where the adjusted p < alpha controls the family-wise error
    rate at alpha for any dependence between the tests.
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if not math.isnan(p))
    m, running = len(tested), 0.0
    adjusted = [math.nan] * len(pvalues)
    for rank, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[i] = running
    return adjusted


def seeds_needed(d: Difference, comparisons: int = 1, alpha: float = ALPHA, power: float = POWER) -> int | None:
    """Roughly how many seeds would detect a gap of the observed size and spread: the smallest n whose
    t test at level alpha / comparisons (the strictest Holm threshold) has the given power.

    From the noncentral t distribution; for an unpaired comparison n is per group. None when there is no
    gap (or no spread estimate) to resolve, MAX_SEEDS + 1 when it would take more than MAX_SEEDS.
    """
    if not (math.isfinite(d.mean) and math.isfinite(d.sd)) or d.mean == 0:
        return None
    if d.sd == 0:
        return 2
    effect, level = abs(d.mean) / d.sd, alpha / max(1, comparisons)
    # The normal approximation is a lower bound (the t test needs a little more): search up from it.
    z = (sp.norm.ppf(1 - level / 2) + sp.norm.ppf(power)) / effect
    start = max(2, math.floor(z**2 if d.paired else 2 * z**2) - 1)
    if start > MAX_SEEDS:
        return MAX_SEEDS + 1
    for n in range(start, MAX_SEEDS + 1):
        df = n - 1 if d.paired else 2 * n - 2
        nc = effect * math.sqrt(n if d.paired else n / 2)
        crit = sp.t.ppf(1 - level / 2, df)
        if nc - crit > 8:  # power is 1 to double precision (and older scipy returns nan out here)
            return n
        if _power(nc, df, crit) >= power:
            return n
    return MAX_SEEDS + 1


def _power(nc: float, df: int, crit: float) -> float:
    """P(|T| > crit) for T noncentral t: the power of a two-sided t test. Where scipy's noncentral t
    returns nan (scipy < 1.11 at one degree of freedom), the normal approximation instead."""
    with np.errstate(all="ignore"):
        value = float(sp.nct.sf(crit, df, nc) + sp.nct.cdf(-crit, df, nc))
    return value if math.isfinite(value) else float(sp.norm.sf(crit - nc) + sp.norm.cdf(-crit - nc))


def kendall_tau(a: Sequence[str], b: Sequence[str]) -> float:
    """Kendall's tau between two rankings (best first) of the items they share; nan below two items."""
    shared = [x for x in a if x in b]
    if len(shared) < 2:
        return math.nan
    return float(sp.kendalltau([a.index(x) for x in shared], [b.index(x) for x in shared]).statistic)
