"""The statistics of a schedule comparison: differences over seeds with 95% intervals, Holm's correction,
the seeds a gap would need, rank agreement. scipy supplies every distribution and test; only Holm's
step-down adjustment (which scipy lacks) is written out here.

Runs that share a seed share the initialisation and the data order across schedules, so the difference
between two schedules is taken seed by seed (a paired comparison): the seed's own luck cancels, and the
interval is far tighter than one built from two means and their spreads. Where two groups share fewer
than two seeds, the comparison falls back to Welch's unpaired test, and says so.
"""

from __future__ import annotations

import functools
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
    half = t_quantile((1 + level) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean, mean - half, mean + half


@functools.lru_cache(maxsize=4096)
def t_quantile(q: float, df: float) -> float:
    """Student's t quantile (scipy's), remembered: a report asks for the same few thousands of times."""
    return float(sp.t.ppf(q, df))


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
    else:  # the paired t test (scipy's ttest_rel), from the numbers already at hand
        p = float(2 * sp.t.sf(abs(mean) / (sd / math.sqrt(len(diffs))), len(diffs) - 1))
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


def seeds_needed(d: Difference, comparisons: int = 1, alpha: float = ALPHA, power: float = POWER, gap: float | None = None) -> int | None:
    """Roughly how many seeds would detect a gap of the observed size (or ``gap``) at the observed
    spread: the smallest n whose two-sided t test at level alpha / comparisons (the strictest Holm
    threshold) has the given power. For an unpaired comparison n is per group.

    Power is exact for the noncentral t distribution at every n (no normal shortcut: with 1 or 2 degrees
    of freedom the t's heavy tails keep the power far below 1 where a normal approximation says it is
    1), and it grows with n, so the smallest n is found by bisection. None when there is no gap (or no
    spread estimate) to resolve, 2 when the spread is zero, MAX_SEEDS + 1 beyond MAX_SEEDS.
    """
    size = abs(d.mean) if gap is None else abs(gap)
    if not (math.isfinite(size) and math.isfinite(d.sd)) or size == 0:
        return None
    if d.sd == 0:
        return 2
    effect, level = size / d.sd, alpha / max(1, comparisons)

    def enough(n: int) -> bool:
        return t_test_power(effect, n, level, d.paired) >= power

    if not enough(MAX_SEEDS):
        return MAX_SEEDS + 1
    low, high = 2, MAX_SEEDS  # enough(high) holds; find the smallest such n
    while low < high:
        mid = (low + high) // 2
        if enough(mid):
            high = mid
        else:
            low = mid + 1
    return low


def t_test_power(effect: float, n: int, level: float, paired: bool = True) -> float:
    """The power of a two-sided t test at ``level`` for a standardised gap ``effect`` with n pairs
    (paired: n - 1 degrees of freedom) or n per group (unpaired: 2n - 2)."""
    df = n - 1 if paired else 2 * n - 2
    nc = effect * math.sqrt(n if paired else n / 2)
    crit = t_quantile(1 - level / 2, df)
    return noncentral_t_sf(crit, df, nc) + noncentral_t_sf(crit, df, -nc)  # P(T > crit) + P(T < -crit)


def noncentral_t_sf(x: float, df: int, nc: float) -> float:
    """P(T > x) for T noncentral t(df, nc). scipy's own where it is finite; where it is not (its cdf
    returns nan far in a tail), the defining integral: T = (Z + nc) / sqrt(V / df), V chi-square(df),
    so P(T > x) = E_V[P(Z > x sqrt(V / df) - nc)]."""
    with np.errstate(all="ignore"):
        value = float(sp.nct.sf(x, df, nc))
    if math.isfinite(value):
        return value
    from scipy.integrate import quad

    return float(quad(lambda v: sp.norm.sf(x * math.sqrt(v / df) - nc) * sp.chi2.pdf(v, df), 0, math.inf)[0])


def kendall_tau(a: Sequence[str], b: Sequence[str]) -> float:
    """Kendall's tau between two rankings (best first) of the items they share; nan below two items."""
    shared = [x for x in a if x in b]
    if len(shared) < 2:
        return math.nan
    return float(sp.kendalltau([a.index(x) for x in shared], [b.index(x) for x in shared]).statistic)
