"""Comparison on synthetic runs, in milliseconds: validation chooses and ranks and test reports, ranking
by the declared loss whatever its direction, paired differences with Holm's correction over every pair,
the margin below which a gap is negligible, the verdict's words and its false-positive rate over
simulated null sweeps, every diagnostic on a constructed case (and silence on a clean one), rank
robustness across an LR grid, steps to target, curve bands."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
from pathlib import Path

import pytest

from lrexp import stats
from lrexp.bands import band
from lrexp.compare import Claim, compare
from lrexp.diagnostics import diagnose
from lrexp.protocol import Thresholds
from lrexp.record import Goal, Metric, Status, Summary
from lrexp.runs import RunRecord, find_runs, varying_keys
from lrexp.tables import result_row
from lrexp.verdict import fmt_interval, fmt_relative, headline

LOSS = Metric("loss", Goal.MIN, "loss", "log")
ACC = Metric("acc", Goal.MAX, "accuracy", "linear")
STEPS = 100


def curve_rows(final: float, *, lr=lambda s: 1.0, val=None, train=None):
    """Rows every 10 steps: by default a clean curve (validation falls to ``final`` and stays there)."""
    val = val or (lambda s: final * (1 + 4 * math.exp(-s / 10)))
    train = train or (lambda s: final * (1 + 4 * math.exp(-s / 10)))
    return [{"step": s, "lr": lr(s), "train_loss": train(s), "val_loss": val(s)} for s in [*range(0, STEPS, 10), STEPS - 1]]


def run(group, seed, test, val=None, status=Status.COMPLETED, rows=None, stalled=0.0, **overrides) -> RunRecord:
    val = test if val is None else val
    s = Summary(status, scheduler=group, seed=seed, steps=STEPS, metrics=[LOSS, ACC], lr_stalled_fraction=stalled,
                final={"val_loss": val, "test_loss": test, "val_acc": 1 - val, "test_acc": 1 - test})  # fmt: skip
    return RunRecord(
        Path(f"/runs/{group}/{seed}/{len(overrides)}"), s, rows or curve_rows(val), {"scheduler": group, "seed": str(seed), **overrides}
    )


def table(c):
    return [result_row(c, r) for r in c.results]


def verdict(c):
    return headline(c, diagnose(c))


def sweep(means: dict[str, float], seeds=5, luck=0.05, noise=0.002, rng_seed=0, **kw) -> list[RunRecord]:
    """Groups with the given true means; every seed's luck is shared by all groups (same init, same data)."""
    rng = random.Random(rng_seed)
    lucks = [rng.gauss(0, luck) for _ in range(seeds)]
    return [run(g, s, m + lucks[s] + rng.gauss(0, noise), **kw) for g, m in means.items() for s in range(seeds)]


def test_varying_keys_leave_out_neutral_keys_and_keys_that_do_not_vary():
    runs = [run("a", 0, 1.0, **{"run.threads": "1", "optimizer.lr": "0.1", "logger": "wandb"}),
            run("b", 1, 1.0, **{"run.threads": "2", "optimizer.lr": "0.1", "hydra.launcher.n_jobs": "3"})]  # fmt: skip
    assert varying_keys(runs) == ["scheduler", "seed"]


def test_validation_chooses_the_cell_and_test_reports_it():
    # At lr 0.1 group a looks better on validation (0.30) than at lr 0.01 (0.35); on test it is the other way.
    runs = [run("a", s, test=0.50, val=0.30, **{"optimizer.lr": "0.1"}) for s in range(3)]
    runs += [run("a", s, test=0.20, val=0.35, **{"optimizer.lr": "0.01"}) for s in range(3)]
    runs += [run("b", s, test=0.40, val=0.40, **{"optimizer.lr": "0.1"}) for s in range(3)]
    c = compare(runs)
    assert c.split == "test"
    a = next(r for r in table(c) if r["scheduler"] == "a")
    assert a["settings"] == "optimizer.lr=0.1"  # chosen on validation, never on test
    assert a["final_test_loss_mean"] == 0.50 and a["final_val_loss_mean"] == 0.30
    assert c.groups == ["a", "b"]  # ranked by validation too: the reference is chosen on it, never on test
    b = c.results[1]
    assert b.claim is Claim.BETTER and "Validation and test disagree: b is better on test than a" in verdict(c)
    assert c.winner is None


def test_without_a_test_split_the_report_falls_back_to_validation_and_says_so():
    runs = [run("a", s, 0.1) for s in range(3)] + [run("b", s, 0.2) for s in range(3)]
    for r in runs:
        del r.summary.final["test_loss"]
    c = compare(runs)
    assert c.split == "val" and "No test split was recorded" in verdict(c)


def test_a_cell_with_a_diverged_run_never_beats_a_cell_that_completed():
    runs = [run("a", 0, 0.1, **{"optimizer.lr": "1"}), run("a", 1, 0.1, status=Status.DIVERGED, **{"optimizer.lr": "1"})]
    runs += [run("a", s, 0.5, **{"optimizer.lr": "0.1"}) for s in (0, 1)] + [run("b", s, 0.9) for s in (0, 1)]
    row = table(compare(runs, "scheduler"))[0]
    assert row["settings"] == "optimizer.lr=0.1" and row["final_test_loss_mean"] == 0.5


def test_failed_and_interrupted_runs_count_once_as_without_result():
    runs = [run("a", 0, 0.5), run("a", 1, 0.5, status=Status.FAILED), run("a", 2, 0.5, status=Status.INTERRUPTED)]
    (row,) = table(compare([*runs, run("a", 3, 0.5, status=Status.DIVERGED)]))
    assert (row["runs"], row["completed"], row["diverged"], row["failed"]) == (4, 1, 1, 2)
    assert row["final_test_loss_std"] is None  # one completed run: no spread, not a spread of 0


def test_the_table_states_the_interval_and_the_paired_difference_from_the_best():
    runs = sweep({"a": 0.10, "b": 0.13, "c": 0.20})
    rows = table(compare(runs))
    best, second = rows[0], rows[1]
    a = [r.summary.final["test_loss"] for r in runs if r.summary.scheduler == "a"]
    b = [r.summary.final["test_loss"] for r in runs if r.summary.scheduler == "b"]
    mean, low, high = stats.mean_interval(a)
    assert (best["final_test_loss_mean"], best["final_test_loss_ci_low"], best["final_test_loss_ci_high"]) == pytest.approx(
        (mean, low, high)
    )
    d = stats.paired(dict(enumerate(b)), dict(enumerate(a)))
    assert (second["diff_mean"], second["diff_ci_low"], second["diff_ci_high"], second["wins"], second["pairs"]) == pytest.approx(
        (d.mean, d.low, d.high, 0, 5)
    )
    # The family: every pair (b-a, c-a, c-b), Holm-corrected together.
    c_values = [r.summary.final["test_loss"] for r in runs if r.summary.scheduler == "c"]
    pairs = [(b, a), (c_values, a), (c_values, b)]
    raw = [stats.paired(dict(enumerate(x)), dict(enumerate(y))).p for x, y in pairs]
    assert [r["p_holm"] for r in rows[1:]] == pytest.approx(stats.holm(raw)[:2])
    assert best["diff_mean"] is None and best["p_holm"] is None and best["claim"] == "reference"
    assert second["diff_relative"] == pytest.approx(d.mean / mean) and second["margin"] == pytest.approx(0.005 * mean)


def test_a_clear_winner_is_named_with_its_interval():
    c = compare(sweep({"a": 0.10, "b": 0.13, "c": 0.20}))
    text = verdict(c)
    assert text.startswith("a wins: its final test loss is ") and "paired over 5 seeds, Holm-corrected over all 3 pairs" in text
    assert all(r.diff.low > c.margin_abs for r in c.results[1:])  # a named winner: every interval clears the margin
    assert "the closest, b, by +0.03" in text and "(+3" in text  # the gap, and its size relative to the winner's loss


def test_schedules_that_cannot_be_told_apart_are_named_with_the_seeds_it_would_take():
    c = compare(sweep({"a": 0.100, "b": 0.1005, "c": 0.30}, noise=0.004))
    text = verdict(c)
    assert text.startswith("No winner at 5 seeds: a is best on validation") and "Cannot tell a, b apart" in text
    assert "c is worse by more than the margin" in text and "an interval that includes zero" in text
    n = c.results[1].seeds_needed
    assert n is not None and n > 5 and (f"about {n} seeds" in text or "more than 1000" in text)


def test_an_interval_that_excludes_zero_alone_but_not_after_holm_is_said_to_be_so():
    """Four groups each 0.01 worse than the best with raw p ~ 0.02: significant one at a time, not as a family."""
    gaps = [0.010, 0.002, 0.018, 0.006, 0.014]  # mean 0.01, paired t = 3.5 on 4 df
    runs = [run("best", s, 0.5 + 0.1 * s) for s in range(5)]
    for g, shift in zip("abcd", range(4)):
        runs += [run(g, s, 0.5 + 0.1 * s + gaps[(s + shift) % 5]) for s in range(5)]
    c = compare(runs)
    runner = c.results[1]
    assert runner.diff.excludes_zero and runner.diff.p < 0.05 < runner.p_holm
    text = verdict(c)
    assert "Cannot tell best, " in text and "an interval that excludes zero on its own, but not once corrected for 10 pairs" in text


def test_a_single_run_per_group_gives_no_verdict():
    text = verdict(compare([run("a", 0, 0.1), run("b", 0, 0.2)]))
    assert "no verdict" in text and "wins" not in text


def test_groups_without_shared_seeds_are_compared_unpaired_and_it_says_so():
    runs = [run("a", s, 0.1 + 0.001 * s) for s in range(3)] + [run("b", s, 0.3 + 0.001 * s) for s in range(10, 13)]
    c = compare(runs)
    assert not c.results[1].diff.paired and "unpaired: the groups do not share seeds" in verdict(c)
    assert table(c)[1]["paired"] is False


FALSE = (Claim.WORSE, Claim.WORSE_BY_LITTLE, Claim.BETTER)  # claims of a difference


@pytest.mark.parametrize("groups", [2, 4, pytest.param(9, marks=pytest.mark.slow)])  # 9: 12 s, out of the fast tier
def test_identical_schedules_get_a_false_claim_at_most_5_percent_of_the_time(groups):
    """Simulated null sweeps: every group has the same true loss; only luck differs, and validation and
    test agree exactly (the worst case for choosing the reference: it is also the best on test). Any
    claim of a difference, a winner included, is false here; Holm over the fixed family of every pair
    holds the rate of sweeps with at least one at 5% (the best-on-test reference of old claimed 7.5-11%)."""
    sims, false = 400, 0
    for i in range(sims):
        c = compare(sweep({chr(97 + g): 0.1 for g in range(groups)}, seeds=5, luck=0.05, noise=0.003, rng_seed=i))
        false += any(r.claim in FALSE for r in c.results) or c.winner is not None
    assert false / sims <= 0.05, false / sims


def test_a_gap_below_the_margin_is_negligible_never_a_win():
    """Deterministic runs: a floor of 1e-6 moves every seed's loss by ~1e-7 with a spread of ~1e-9, so the
    paired test is certain (p ~ 1e-9) and the gap meaningless: negligible, no winner, printed with its
    significant figures and relative size."""
    base = [0.0743, 0.0751, 0.0739, 0.0760, 0.0748]
    runs = [run("cosine_full", s, v) for s, v in enumerate(base)]
    runs += [run("floor", s, v + 6.7e-8 + 1e-9 * s) for s, v in enumerate(base)]
    c = compare(runs)
    floor = c.results[1]
    assert floor.diff.p < 1e-6 and floor.p_holm < 0.05 and floor.claim is Claim.NEGLIGIBLE and c.winner is None
    text = verdict(c)
    assert "wins" not in text and "floor differs from cosine_full by a negligible amount" in text
    assert "+6.90e-08 [+6.70e-08, +7.10e-08] (+0.000092%)" in text and not re.search(r"[+-]0\.0+(?![0-9])", text)  # never +0.0000
    # The same gap with a margin of 0 is a real (if tiny) win: the margin is what makes it negligible.
    strict = compare(runs, thresholds=Thresholds(margin=0.0, target=None, target_relax=0.05))
    assert strict.winner is not None and strict.results[1].claim is Claim.WORSE


def test_a_significant_gap_that_may_be_below_the_margin_is_said_to_be_so():
    base = [0.10, 0.12, 0.11, 0.13, 0.09]
    runs = [run("a", s, v) for s, v in enumerate(base)]
    runs += [run("b", s, v + g) for s, (v, g) in enumerate(zip(base, [0.0003, 0.0009, 0.0006, 0.0004, 0.0008]))]
    c = compare(runs)  # margin 0.5% of 0.11 = 0.00055; gap 0.0006 [0.0003, 0.0009]
    assert c.results[1].claim is Claim.WORSE_BY_LITTLE and c.winner is None
    assert "b is worse" in verdict(c) and "possibly by less than the margin" in verdict(c)


def test_two_seeds_are_called_fragile():
    c = compare(sweep({"a": 0.1, "b": 0.2}, seeds=2))
    assert "1 degree of freedom: fragile" in verdict(c)


def test_small_numbers_print_with_significant_figures():
    assert fmt_interval(6.7e-8, 5.7e-8, 7.7e-8, sign=True) == "+6.7e-08 [+5.7e-08, +7.7e-08]"
    assert fmt_interval(0.0093, 0.0043, 0.0144, sign=True) == "+0.0093 [+0.0043, +0.0144]"
    # A mean far inside its interval keeps its own figures (seen in the schedules preset: +0.0000).
    assert fmt_interval(7.3e-6, -0.0028, 0.0028, sign=True) == "+7.3e-06 [-0.0028, +0.0028]"
    assert fmt_interval(-4e-4, -0.031, 0.030, sign=True) == "-0.00040 [-0.031, +0.030]"
    assert fmt_relative(6.7e-8, 0.1) == "+0.000067%" and fmt_relative(0.0093, 0.0741) == "+13%"


def test_a_higher_is_better_loss_ranks_the_highest_first():
    score = Metric("score", Goal.MAX, "score", "linear")

    def scored(group, seed, value):
        s = Summary(Status.COMPLETED, scheduler=group, seed=seed, metrics=[score], final={"val_score": value, "test_score": value})
        return RunRecord(Path(f"/r/{group}{seed}"), s, [], {"scheduler": group, "seed": str(seed)})

    c = compare([scored("low", s, 0.2 + 0.01 * s) for s in range(3)] + [scored("high", s, 0.8 + 0.01 * s) for s in range(3)])
    assert c.groups == ["high", "low"] and verdict(c).startswith("high wins: its final test score is 0.81")
    assert c.results[1].diff.mean == pytest.approx(0.6)  # oriented: positive = worse


# --- diagnostics ---------------------------------------------------------------------------------


def flags_of(runs):
    return {f.kind: f for f in diagnose(compare(runs)).flags}


def test_a_clean_sweep_raises_no_flag():
    assert flags_of(sweep({"a": 0.1, "b": 0.2}, luck=0.005)) == {}


def test_overfitting_fires_when_validation_rises_while_training_falls():
    def overfit(s):
        return 0.1 * (1 + 4 * math.exp(-s / 5)) + 0.0006 * max(0, s - 30)  # best near step 30, then up ~40%

    rows = curve_rows(0.1, val=overfit, train=lambda s: math.exp(-s / 10))
    f = flags_of([run("a", s, 0.14, rows=rows) for s in range(3)] + [run("b", s, 0.2) for s in range(3)])
    assert set(f) == {"overfitting"} and f["overfitting"].groups == ("a",)
    assert "above its best at step 30 of 100" in f["overfitting"].text


def test_still_learning_fires_for_a_high_lr_still_falling_and_not_for_an_annealing_drop():
    def falling(s):
        return 2.0 - 0.01 * s  # still falling fast at the end: 0.25 over the last quarter, 24% of the final value

    def decay(s):
        return 1 - s / STEPS

    high = curve_rows(1.01, val=falling)
    f = flags_of([run("constant", s, 1.0, rows=high) for s in range(3)] + [run("linear", s, 1.1) for s in range(3)])
    assert set(f) == {"still learning"} and f["still learning"].groups == ("constant",)
    assert "at 100% of its peak LR" in f["still learning"].text
    annealing = curve_rows(1.01, val=falling, lr=decay)  # the same fall while the LR decays to zero
    assert flags_of([run("linear", s, 1.0, rows=annealing) for s in range(3)] + [run("b", s, 1.1) for s in range(3)]) == {}


def test_grid_edge_fires_only_when_the_best_lr_is_the_lowest_or_highest():
    def grid(best_lr):
        return [
            run(g, s, 0.1 if lr == best_lr else 0.3, **{"optimizer.lr": lr})
            for g in "ab"
            for lr in ("0.001", "0.01", "0.1")
            for s in range(3)
        ]

    edge = flags_of(grid("0.1"))["grid edge"]
    assert "0.1, is the highest of the grid (0.001, 0.01, 0.1)" in edge.text and "extend the grid up" in edge.text
    assert "grid edge" not in flags_of(grid("0.01"))


def test_too_few_seeds_and_unstable_lr_and_stalled_lr():
    assert "too few seeds" in flags_of([run("a", s, 0.1) for s in range(2)] + [run("b", s, 0.2) for s in range(2)])
    assert "too few seeds" not in flags_of(sweep({"a": 0.1, "b": 0.2}, seeds=3))
    mixed = [run("a", 0, 0.1), run("a", 1, 0.1), run("a", 2, 0.1, status=Status.DIVERGED)] + [run("b", s, 0.2) for s in range(3)]
    assert "1 of 3 seeds diverged" in flags_of(mixed)["unstable LR"].text
    spread = [run("a", s, v) for s, v in enumerate([0.1, 0.2, 0.3])] + [run("b", s, 0.5) for s in range(3)]
    assert "varies by 50% of its mean" in flags_of(spread)["unstable LR"].text
    stalled = [run("a", s, 0.1, stalled=0.77) for s in range(3)] + [run("b", s, 0.2) for s in range(3)]
    assert "for 77% of the run" in flags_of(stalled)["stalled LR"].text


def test_the_verdict_warns_when_the_regime_makes_the_ranking_doubtful():
    rows = curve_rows(1.01, val=lambda s: 2.0 - 0.01 * s)
    c = compare([run("constant", s, 1.0 + 0.001 * s, rows=rows) for s in range(3)] + [run("linear", s, 1.5 + 0.001 * s) for s in range(3)])
    assert "Caution: still learning (constant)" in verdict(c)


def test_rank_robustness_compares_the_ranking_at_each_lr_with_the_tuned_one():
    # a is best tuned (at 0.1); at 0.01 b beats a: the ranking depends on the LR protocol.
    values = {("a", "0.01"): 0.30, ("a", "0.1"): 0.10, ("b", "0.01"): 0.20, ("b", "0.1"): 0.25}
    runs = [run(g, s, v + 0.001 * s, **{"optimizer.lr": lr}) for (g, lr), v in values.items() for s in range(3)]
    rb = compare(runs).robustness
    assert rb.tuned == ["a", "b"]
    assert rb.per_lr == [("0.01", ["b", "a"], -1.0), ("0.1", ["a", "b"], 1.0)]


# --- curves and directories ----------------------------------------------------------------------


def test_band_aligns_runs_by_step_and_drops_runs_that_stopped():
    def r(points):
        return RunRecord(Path("/r"), Summary(Status.COMPLETED), [{"step": s, "m": v} for s, v in points], {})

    b = band([r([(0, 1.0), (10, 3.0)]), r([(0, 3.0)])], "m")
    assert (b.steps, b.mean, b.low, b.high, b.n) == ([0, 10], [2.0, 3.0], [1.0, 3.0], [3.0, 3.0], [2, 1])
    sd = band([r([(0, 1.0)]), r([(0, 3.0)])], "m", spread="std")
    assert (sd.low, sd.high) == ([2.0 - statistics.stdev([1, 3])], [2.0 + statistics.stdev([1, 3])])
    smooth = band([r([(0, 1.0), (1, 3.0)])], "m", smoothing=0.5)
    assert smooth.mean == [1.0, pytest.approx((0.25 * 1 + 0.5 * 3) / 0.75)]  # debiased EMA: no pull towards 0


def test_find_runs_reads_sweep_directories_in_numeric_order(tmp_path):
    for job in (0, 2, 10):
        d = tmp_path / "sweep" / str(job)
        d.mkdir(parents=True)
        (d / "summary.json").write_text(json.dumps({"status": "completed", "seed": job}))
    runs = find_runs([tmp_path / "sweep"])
    assert [r.dir.name for r in runs] == ["0", "2", "10"] and [r.summary.seed for r in runs] == [0, 2, 10]
    with pytest.raises(FileNotFoundError):
        find_runs([tmp_path / "nowhere"])


def test_steps_to_target_counts_a_run_that_never_reaches_it_as_never():
    def falling(final):
        return curve_rows(final, val=lambda s: final * (1 + 4 * math.exp(-s / 10)))

    runs = [run("fast", s, 0.10, rows=falling(0.10)) for s in range(3)]
    runs += [run("slow", s, 0.20, rows=falling(0.20)) for s in range(3)]
    c = compare(runs)
    assert c.target == pytest.approx(0.10 * 1.05)  # the reference's median final validation loss, 5% worse
    fast, slow = c.results
    # 0.1 (1 + 4 exp(-s/10)) <= 0.105 first at s = 50 (rows every 10 steps)
    assert fast.steps_to_target.median == 50 and fast.steps_to_target.reached == 3
    assert slow.steps_to_target.median == math.inf and slow.steps_to_target.reached == 0
    row = table(c)[1]
    assert row["steps_to_target_median"] == math.inf and row["reached_target"] == 0
    given = compare(runs, thresholds=Thresholds(margin=0.005, target=0.3, target_relax=0.05))
    # 0.2 (1 + 4 exp(-s/10)) <= 0.3 from s = 20.8 on: the first row at or after it is step 30
    assert given.target == 0.3 and given.results[1].steps_to_target.median == 30
