"""The statistics on simulated seeds: known differences are found, identical distributions are not
declared different more often than the nominal 5%, intervals cover 95% of the time, Holm's adjustment,
Welch's unpaired fallback, the seeds a gap would need, rank agreement."""

from __future__ import annotations

import math
import random

import pytest
from scipy import stats as sp

from lrexp.stats import Difference, difference, holm, kendall_tau, mean_interval, paired, seeds_needed, unpaired

SIMULATIONS = 4000


def seeds(values):
    return dict(enumerate(values))


def test_a_known_difference_is_found_and_the_interval_holds_it():
    rng = random.Random(1)
    shared = [rng.gauss(1.0, 0.1) for _ in range(5)]  # each seed's own luck, shared by both schedules
    worse = seeds([s + 0.05 + rng.gauss(0, 0.01) for s in shared])
    d = paired(worse, seeds(shared))
    assert d.paired and d.n == 5 and d.wins == 0 and d.excludes_zero and d.p < 0.001
    assert d.low < 0.05 < d.high
    # The same numbers compared as if unpaired: the seed-to-seed spread (0.1) swamps the 0.05 gap.
    assert not unpaired(list(worse.values()), shared).excludes_zero


def test_identical_schedules_are_declared_different_about_5_percent_of_the_time():
    rng = random.Random(2)
    hits = 0
    for _ in range(SIMULATIONS):
        luck = [rng.gauss(0, 1) for _ in range(5)]
        a = seeds([x + rng.gauss(0, 0.3) for x in luck])
        b = seeds([x + rng.gauss(0, 0.3) for x in luck])
        hits += paired(a, b).p < 0.05
    assert 0.04 <= hits / SIMULATIONS <= 0.06, hits / SIMULATIONS


def test_the_95_percent_interval_covers_the_true_difference_95_percent_of_the_time():
    rng = random.Random(3)
    covered = 0
    for _ in range(SIMULATIONS):
        luck = [rng.gauss(0, 1) for _ in range(4)]
        d = paired(seeds([x + 0.2 + rng.gauss(0, 0.1) for x in luck]), seeds(luck))
        covered += d.low <= 0.2 <= d.high
    assert 0.94 <= covered / SIMULATIONS <= 0.96


def test_the_paired_test_is_scipys():
    a, b = seeds([1.0, 2.0, 3.5, 4.0]), seeds([0.5, 2.1, 2.9, 3.0])
    assert paired(a, b).p == pytest.approx(sp.ttest_rel(list(a.values()), list(b.values())).pvalue, rel=1e-12)


def test_groups_without_shared_seeds_fall_back_to_welch():
    a, b = {0: 1.0, 1: 1.4, 2: 0.9}, {5: 2.0, 6: 2.6, 7: 2.2}
    d = difference(a, b)
    assert not d.paired and d.wins is None
    assert d.p == pytest.approx(sp.ttest_ind(list(a.values()), list(b.values()), equal_var=False).pvalue, rel=1e-12)
    assert d.high < 0  # clearly lower
    one_shared = difference({0: 1.0, 1: 1.2}, {0: 2.0, 9: 2.1})
    assert not one_shared.paired


def test_seeds_missing_from_one_group_are_dropped_from_the_pairs():
    d = difference({0: 1.0, 1: 1.1, 2: 1.2, 3: 9.9}, {0: 0.5, 1: 0.6, 2: 0.7})
    assert d.paired and d.n == 3 and d.dropped == 1 and d.mean == pytest.approx(0.5)


def test_degenerate_differences():
    assert paired(seeds([1.0, 2.0]), seeds([1.0, 2.0])).p == 1.0  # identical runs: nothing to tell
    shift = paired(seeds([1.5, 2.5, 3.5]), seeds([1.0, 2.0, 3.0]))
    assert (shift.p, shift.low, shift.high) == (0.0, 0.5, 0.5)
    one = paired(seeds([1.0]), seeds([2.0]))
    assert one.n == 1 and math.isnan(one.p) and math.isnan(one.low)


def test_holm_against_its_definition():
    # sorted: 0.005 x4 = 0.02, 0.01 x3 = 0.03, 0.03 x2 = 0.06, 0.04 x1 = 0.04 -> raised to 0.06 (monotone)
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == [1.0, 1.0] and holm([]) == []
    adjusted = holm([math.nan, 0.01, 0.02])
    assert math.isnan(adjusted[0]) and adjusted[1:] == pytest.approx([0.02, 0.02])  # nan is not a test


def gap(mean: float, sd: float, is_paired: bool = True) -> Difference:
    return Difference(n=3, mean=mean, low=math.nan, high=math.nan, p=math.nan, sd=sd, paired=is_paired)


def test_seeds_needed_matches_the_textbook_power_of_a_t_test():
    # Two-sided 5%, power 80%: effect size 1 (gap = spread) needs 10 pairs, effect 0.5 needs 34.
    assert seeds_needed(gap(1.0, 1.0)) == 10 and seeds_needed(gap(-0.5, 1.0)) == 34
    assert seeds_needed(gap(1.0, 1.0, is_paired=False)) == 17  # two-sample: 17 per group
    assert seeds_needed(gap(0.5, 1.0), comparisons=4) > 34  # Holm's strictest threshold needs more
    assert seeds_needed(gap(0.0, 1.0)) is None and seeds_needed(gap(1e-6, 1.0)) == 1001  # nothing, or too little, to resolve


def test_mean_interval_and_kendall_tau():
    mean, low, high = mean_interval([1.0, 2.0, 3.0])
    half = sp.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert mean == 2.0 and (low, high) == pytest.approx((2.0 - half, 2.0 + half))
    assert math.isnan(mean_interval([1.0])[1])
    assert kendall_tau(["a", "b", "c"], ["a", "b", "c"]) == 1.0 and kendall_tau(["a", "b", "c"], ["c", "b", "a"]) == -1.0
    assert kendall_tau(["a", "b", "x"], ["b", "a"]) == -1.0 and math.isnan(kendall_tau(["a"], ["a"]))


def direct_power(effect: float, n: int, level: float, is_paired: bool) -> float:
    """The power of the two-sided t test by its definition, integrated over the chi-square (not scipy's
    noncentral t): T = (Z + nc) / sqrt(V / df)."""
    from scipy.integrate import quad

    df = n - 1 if is_paired else 2 * n - 2
    nc = effect * math.sqrt(n if is_paired else n / 2)
    crit = sp.t.ppf(1 - level / 2, df)

    def rejects(u: float) -> float:  # P(|T| > crit) given V at its quantile u: an integral over [0, 1]
        scale = crit * math.sqrt(sp.chi2.ppf(u, df) / df)
        return sp.norm.sf(scale - nc) + sp.norm.cdf(-scale - nc)

    return quad(rejects, 0, 1, limit=200)[0]


def test_seeds_needed_equals_a_direct_noncentral_t_search():
    """Every n from 2 up, power by integration: the first with 80% power, on 60 random gaps (log-uniform
    effect sizes 1.5-600, 1-36 comparisons, paired or not). Large effects at many comparisons land on 1-5
    degrees of freedom, where the t's heavy tails keep the power below a normal approximation's, and where
    scipy's noncentral t cdf returns nan: lrexp's earlier shortcuts (power 1 once nc - crit > 8; the normal
    approximation whenever scipy returned nan) were one seed low on 20 of 400 such gaps, e.g. those below."""
    rng = random.Random(0)
    cases = [(True, 2.742, 21), (True, 44.956, 4), (False, 21.729, 21), (True, 369.823, 36), (True, 5.637, 4)]
    cases += [
        (rng.random() < 0.7, math.exp(rng.uniform(math.log(1.5), math.log(600))), rng.choice([1, 2, 4, 10, 21, 36])) for _ in range(60)
    ]
    for is_paired, effect, comparisons in cases:
        level = 0.05 / comparisons
        expected = next(n for n in range(2, 1001) if direct_power(effect, n, level, is_paired) >= 0.8)
        assert seeds_needed(gap(effect, 1.0, is_paired), comparisons=comparisons) == expected, (is_paired, effect, comparisons)


def test_one_degree_of_freedom_is_not_certain_power():
    # 2 pairs (1 df) at Holm's strictest threshold over 10 pairs: even a gap 60 times its spread is found
    # only about half the time; a normal shortcut would call it certain.
    assert direct_power(60.0, 2, 0.005, True) < 0.7 and seeds_needed(gap(60.0, 1.0), comparisons=10) == 3
