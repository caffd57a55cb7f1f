"""Seven published findings about LR schedules, each tested on a sweep's run directories.

Each finding has a sweep preset (conf/sweep/<preset>.yaml) and an analysis that reads the runs the
preset wrote (summary.json, metrics.csv, .hydra/overrides.yaml: like every report, never the runner)
and returns one or more outcomes: the effect the paper predicts, measured seed by seed with a 95%
interval, and a verdict that follows from the interval alone:

- a directional claim (X beats Y): *reproduced* when the interval excludes zero on the predicted side,
  *not reproduced* when it excludes zero on the other side, *inconclusive* when it contains zero;
- a claim of parity (X matches / is competitive with Y) within a margin fixed in advance (``MARGIN`` of
  the reference's loss): *reproduced* when the interval lies inside the margin, *not reproduced* when it
  lies wholly outside it, *inconclusive* otherwise.

Every choice of peak LR is made on the validation split; the effects are measured on the test split
(scripts/replicate.py runs the sweeps and prints the table; docs/replication.md).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from enum import Enum
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lrexp import stats
from lrexp.compare import compare
from lrexp.diagnostics import diagnose
from lrexp.record import Status
from lrexp.runs import LR_KEY, RunRecord, declared_metrics, find_runs

MARGIN = 0.02  # parity claims: within 2% of the reference's loss (fixed before any sweep was run)
BOOTSTRAP = 4000  # resamples of the seeds for Kendall's tau's interval
TRAINS = 0.5  # a run trains when it completes with its final validation loss below this x its first


class Verdict(str, Enum):
    REPRODUCED = "reproduced"
    NOT_REPRODUCED = "not reproduced"
    INCONCLUSIVE = "inconclusive"


@dataclass(frozen=True)
class Outcome:
    finding: str  # "1a": the finding's number, and a letter where one finding makes several claims
    claim: str
    effect: str  # what is measured, with the side the paper predicts
    mean: float
    low: float
    high: float
    n: int  # seeds (or resamples' seeds)
    verdict: Verdict
    detail: str  # the numbers behind it
    source: str = ""  # the study that made the claim

    def as_dict(self) -> dict[str, Any]:
        return asdict(self) | {"verdict": self.verdict.value}


def directional(low: float, high: float, sign: int) -> Verdict:
    """A claim that the effect is on the ``sign`` side of zero (+1 or -1)."""
    if math.isnan(low) or low <= 0 <= high:
        return Verdict.INCONCLUSIVE
    return Verdict.REPRODUCED if (low > 0) == (sign > 0) else Verdict.NOT_REPRODUCED


def parity(low: float, high: float, margin: float, one_sided: bool = False) -> Verdict:
    """A claim that the effect is within ``margin`` of zero (one-sided: not worse than +margin)."""
    if math.isnan(low):
        return Verdict.INCONCLUSIVE
    if high < margin and (one_sided or low > -margin):
        return Verdict.REPRODUCED
    if low > margin or (not one_sided and high < -margin):
        return Verdict.NOT_REPRODUCED
    return Verdict.INCONCLUSIVE


# --- reading a sweep ------------------------------------------------------------------------------


Cells = dict[tuple[str, ...], dict[int, RunRecord]]  # (value of each key) -> seed -> run


def cells(runs: Iterable[RunRecord], keys: Sequence[str]) -> Cells:
    out: Cells = defaultdict(dict)
    for r in runs:
        if r.seed is not None:
            out[tuple(r.value(k) for k in keys)][r.seed] = r
    return dict(out)


def final(run: RunRecord, column: str) -> float:
    v = run.summary.final.get(column) if run.status is Status.COMPLETED else None
    return float(v) if v is not None and math.isfinite(float(v)) else math.nan


def at_step(run: RunRecord, column: str, step: int) -> float:
    """The column's value in the first row at or after ``step`` that holds it."""
    for row in run.rows:
        if row["step"] >= step and row.get(column) is not None:
            return float(row[column])
    return math.nan


def mean_of(cell: Mapping[int, RunRecord], column: str) -> float:
    values = [final(r, column) for r in cell.values()]
    return statistics.fmean(values) if values and not any(math.isnan(v) for v in values) else math.inf


@dataclass(frozen=True)
class Choice:
    """A tuned cell: its peak LR (as the sweep wrote it), its runs by seed, and whether the LR is at an
    end of the grid (then the best LR may lie beyond it, and the comparison is not at a tuned LR)."""

    lr: str
    runs: dict[int, RunRecord]
    edge: bool

    def __str__(self) -> str:
        return f"{self.lr} (the grid's edge)" if self.edge else self.lr


def tuned(cs: Cells, prefix: tuple[str, ...], val: str) -> Choice:
    """Among the cells whose keys start with ``prefix`` (the peak LR is a cell's last key), the one with
    the lowest mean final validation loss; a cell with a run that did not complete never wins."""
    options = [(mean_of(runs, val), key[-1], runs) for key, runs in cs.items() if key[: len(prefix)] == prefix]
    if not options:
        raise ValueError("no cell to choose from: has the sweep run?")
    _, lr, runs = min(options, key=lambda o: o[0])
    grid = sorted({float(o[1]) for o in options})
    return Choice(lr, runs, len(grid) > 1 and float(lr) in (grid[0], grid[-1]))


def columns(runs: Sequence[RunRecord]) -> tuple[str, str]:
    loss = declared_metrics(runs)[0]
    return loss.column("val"), loss.column("test")


def per_seed(cell: Mapping[int, RunRecord], value: Callable[[RunRecord], float]) -> dict[int, float]:
    return {s: v for s, r in cell.items() if not math.isnan(v := value(r))}


def fmt(x: float, digits: int = 4) -> str:
    return "nan" if math.isnan(x) else f"{x:.{digits}g}"


def interval(d: stats.Difference | tuple[float, float, float], digits: int = 3) -> str:
    mean, low, high = (d.mean, d.low, d.high) if isinstance(d, stats.Difference) else d
    return f"{fmt(mean, digits)} [{fmt(low, digits)}, {fmt(high, digits)}]"


def outcome(finding: str, claim: str, effect: str, d: stats.Difference, verdict: Verdict, detail: str) -> Outcome:
    return Outcome(finding, claim, effect, d.mean, d.low, d.high, d.n, verdict, detail)


# --- 1: straight to zero --------------------------------------------------------------------------


def straight_to_zero(runs: list[RunRecord]) -> list[Outcome]:
    val, test = columns(runs)
    cs = cells(runs, ["scheduler", "run.steps", LR_KEY])
    lengths = sorted({int(k[1]) for k in cs})
    params = next(r.summary.parameters for r in runs if r.summary.parameters)
    tokens = {length: length * _tokens_per_step(runs) / params for length in lengths}
    gaps: dict[int, dict[int, float]] = {}  # length -> seed -> cosine - linear
    diffs: dict[int, stats.Difference] = {}
    notes = []
    for length in lengths:
        chosen = {s: tuned(cs, (s, str(length)), val) for s in ("linear_warmup", "cosine_warmup")}
        lin, cos = (per_seed(chosen[s].runs, lambda r: final(r, test)) for s in ("linear_warmup", "cosine_warmup"))
        gaps[length] = {s: cos[s] - lin[s] for s in lin.keys() & cos.keys()}
        diffs[length] = d = stats.paired(cos, lin)
        notes.append(
            f"{tokens[length]:.0f} tokens/param ({length} steps): cosine-to-10% - linear-to-0 = {interval(d)} "
            f"(best LRs {chosen['cosine_warmup']} and {chosen['linear_warmup']}, mean test loss "
            f"{fmt(statistics.fmean(lin.values()))} linear)"
        )
    short, long = lengths[0], lengths[-1]
    at_long = diffs[long]
    growth = stats.paired(gaps[long], gaps[short])
    claim = "linear decay to 0 beats cosine to 10%, each at its best LR"
    return [
        outcome(
            "1a", claim, f"cosine - linear test loss at {tokens[long]:.0f} tokens/param (> 0)", at_long,
            directional(at_long.low, at_long.high, +1), "; ".join(notes),
        ),
        outcome(
            "1b", "... and the gap grows with tokens per parameter",
            f"gap at {tokens[long]:.0f} - gap at {tokens[short]:.0f} tokens/param (> 0)", growth,
            directional(growth.low, growth.high, +1), f"gap per seed at {tokens[short]:.0f} tokens/param: "
            + ", ".join(fmt(gaps[short][s], 3) for s in sorted(gaps[short])) + f"; at {tokens[long]:.0f}: "
            + ", ".join(fmt(gaps[long][s], 3) for s in sorted(gaps[long])),
        ),
    ]  # fmt: skip


def _tokens_per_step(runs: Sequence[RunRecord]) -> int:
    cfg = _config(runs[0])
    return int(cfg["task"]["batch_size"]) * int(cfg["task"]["context"])


def _config(run: RunRecord) -> dict[str, Any]:
    return yaml.safe_load((run.dir / ".hydra" / "config.yaml").read_text())


# --- 2: warmup-stable-decay -----------------------------------------------------------------------


def wsd_cooldown(runs: list[RunRecord]) -> list[Outcome]:
    val, test = columns(runs)
    cs = cells(runs, ["scheduler", LR_KEY])
    chosen = {s: tuned(cs, (s,), val) for s in {k[0] for k in cs}}
    loss = {s: per_seed(c.runs, lambda r: final(r, test)) for s, c in chosen.items()}
    reference = statistics.fmean(loss["cosine_warmup"].values())
    margin = MARGIN * reference
    means = ", ".join(f"{s} {fmt(statistics.fmean(v.values()))} (LR {chosen[s]})" for s, v in sorted(loss.items()))
    matches = stats.paired(loss["wsd"], loss["cosine_warmup"])
    shape = stats.paired(loss["wsd_linear"], loss["wsd"])
    length = stats.paired(loss["wsd_short"], loss["wsd"])
    return [
        outcome(
            "2a", "WSD (1-sqrt cooldown, last 20%) matches cosine to 10% at the same budget",
            f"wsd - cosine test loss (within +-{fmt(margin, 2)} = {MARGIN:.0%})", matches,
            parity(matches.low, matches.high, margin), f"mean test loss at each one's best LR: {means}",
        ),
        outcome(
            "2b", "the cooldown's shape matters: 1-sqrt beats linear", "wsd_linear - wsd test loss (> 0)", shape,
            directional(shape.low, shape.high, +1), f"linear cooldown wins {shape.wins} of {shape.n} seeds",
        ),
        outcome(
            "2c", "the cooldown's length matters: 20% beats 5%", "wsd_short - wsd test loss (> 0)", length,
            directional(length.low, length.high, +1), f"5% cooldown wins {length.wins} of {length.n} seeds",
        ),
    ]  # fmt: skip


# --- 3: warm-up raises the largest trainable LR ---------------------------------------------------


def trains(run: RunRecord, val: str) -> bool:
    if run.status is not Status.COMPLETED:
        return False
    first = next((float(r[val]) for r in run.rows if r.get(val) is not None), math.nan)
    return final(run, val) < TRAINS * first


def warmup_stability(runs: list[RunRecord]) -> list[Outcome]:
    val, test = columns(runs)
    cs = cells(runs, ["scheduler.warmup", LR_KEY])
    warmups = sorted({k[0] for k in cs}, key=lambda w: w not in ("0", ""))  # no warm-up first
    lrs = sorted({float(k[1]) for k in cs})
    largest: dict[str, dict[int, float]] = {}
    for w in warmups:
        by_seed: dict[int, float] = {}
        for seed in sorted({s for k, c in cs.items() if k[0] == w for s in c}):
            ok = [trains(cs[(w, lr_text)][seed], val) for lr_text in _lr_texts(cs, w, lrs)]
            # the largest LR below which every LR of the grid trains (below the grid: half its smallest)
            n_ok = next((i for i, t in enumerate(ok) if not t), len(ok))
            by_seed[seed] = lrs[n_ok - 1] if n_ok else lrs[0] / 2
        largest[w] = by_seed
    without, with_ = largest[warmups[0]], largest[warmups[-1]]
    ratio = stats.paired({s: math.log2(v) for s, v in with_.items()}, {s: math.log2(v) for s, v in without.items()})
    capped = sum(v == lrs[-1] for v in with_.values())
    detail = (
        f"largest LR that trains (final val loss < {TRAINS} x first), per seed: no warm-up "
        + ", ".join(f"{without[s]:g}" for s in sorted(without))
        + f"; warm-up {warmups[-1]}: "
        + ", ".join(f"{with_[s]:g}" for s in sorted(with_))
        + (f" ({capped} at the grid's top: a lower bound)" if capped else "")
        + f"; {_best_lr_note(cs, warmups, val, test)}"
    )
    return [
        outcome(
            "3", "warm-up raises the largest peak LR that trains",
            "log2(largest LR with warm-up / without) (> 0)", ratio, directional(ratio.low, ratio.high, +1), detail,
        )
    ]  # fmt: skip


def _lr_texts(cs: Cells, warmup: str, lrs: list[float]) -> list[str]:
    by_value = {float(k[1]): k[1] for k in cs if k[0] == warmup}
    return [by_value[lr] for lr in lrs]


def _best_lr_note(cs: Cells, warmups: list[str], val: str, test: str) -> str:
    """The other half of "mainly": at each one's own best LR, does warm-up change the loss reached?"""
    best = {w: tuned(cs, (w,), val) for w in warmups}
    loss = {w: per_seed(c.runs, lambda r: final(r, test)) for w, c in best.items()}
    d = stats.paired(loss[warmups[-1]], loss[warmups[0]])
    return f"at each one's best LR ({best[warmups[0]]} without, {best[warmups[-1]]} with), test loss with - without = {interval(d)}"


# --- 4: schedule-free -----------------------------------------------------------------------------


def schedule_free(runs: list[RunRecord]) -> list[Outcome]:
    val, test = columns(runs)
    cs = cells(runs, ["scheduler", "run.steps", LR_KEY])
    lengths = sorted({int(k[1]) for k in cs})
    longest = lengths[-1]
    # One schedule-free run per seed for every stopping point: its LR chosen on its final validation loss.
    sf = tuned(cs, ("schedule_free", str(longest)), val)
    out = []
    for length in lengths:
        options = {s: tuned(cs, (s, str(length)), val) for s in {k[0] for k in cs} - {"schedule_free"}}
        name = min(options, key=lambda s: mean_of(options[s].runs, val))  # the better tuned schedule, on validation
        reference = per_seed(options[name].runs, lambda r: final(r, test))
        # The schedule-free run's test row at the stopping point (row `length`: one update past the
        # decaying run's last row `length - 1`; test rows are at multiples of run.test_every).
        free = {seed: at_step(r, test, length) if length < longest else final(r, test) for seed, r in sf.runs.items()}
        d = stats.paired(free, reference)
        margin = MARGIN * statistics.fmean(reference.values())
        out.append(
            outcome(
                f"4 @{length}",
                "schedule-free AdamW at a constant LR is competitive with tuned decaying schedules at every stopping point"
                if length == lengths[0] else "...",
                f"schedule-free - best tuned schedule test loss at step {length} "
                f"(< {fmt(margin, 2)} = {MARGIN:.0%})", d, parity(d.low, d.high, margin, one_sided=True),
                f"{name} at LR {options[name]} ({fmt(statistics.fmean(reference.values()))}) vs one schedule-free run of "
                f"{longest} steps at LR {sf} ({fmt(statistics.fmean(free.values()))}); schedule-free wins "
                f"{d.wins} of {d.n} seeds",
            )
        )  # fmt: skip
    return out


# --- 5: the article's ExponentialLR stalls --------------------------------------------------------


def learned_after(run: RunRecord, val: str, fraction: float = 0.25) -> float:
    """The share of the run's validation-loss decrease that comes after its first ``fraction``."""
    points = [(r["step"], float(r[val])) for r in run.rows if r.get(val) is not None]
    start, end = points[0][1], points[-1][1]
    steps = run.summary.steps or points[-1][0] + 1
    at = next(v for step, v in points if step >= fraction * steps)
    return (at - end) / (start - end)


def exp_stall(runs: list[RunRecord]) -> list[Outcome]:
    val, _ = columns(runs)
    cs = cells(runs, ["scheduler"])
    share = {s[0]: per_seed(c, lambda r: learned_after(r, val) if r.status is Status.COMPLETED else math.nan) for s, c in cs.items()}
    d = stats.paired(share["exp"], share["cosine_full"])
    exp_runs = list(cs[("exp",)].values())
    steps = exp_runs[0].summary.steps or 0
    stalled = {r.summary.lr_stalled_from_step for r in exp_runs}
    detail = (
        f"share of the validation-loss decrease after step {steps // 4}: exp "
        f"{interval(stats.mean_interval(list(share['exp'].values())))}, cosine_full "
        f"{interval(stats.mean_interval(list(share['cosine_full'].values())))}; exp's LR is below 1e-3 x peak "
        f"from step {', '.join(map(str, sorted(s for s in stalled if s is not None))) or 'never'} of {steps}"
    )
    return [
        outcome(
            "5", "the article's per-step ExponentialLR(0.99) stops learning within the first quarter",
            "exp - cosine_full share of learning after the first quarter (< 0)", d, directional(d.low, d.high, -1), detail,
        )
    ]  # fmt: skip


# --- 6: the tuning protocol changes rankings ------------------------------------------------------


def tuning_protocol(runs: list[RunRecord], fixed_lr: str = "1e-3", seed: int = 0) -> list[Outcome]:
    val, test = columns(runs)
    cs = cells(runs, ["scheduler", LR_KEY])
    schedules = sorted({k[0] for k in cs})
    lrs = sorted({k[1] for k in cs}, key=float)
    seeds = sorted(set.intersection(*(set(c) for c in cs.values())))
    fixed = next(i for i, lr in enumerate(lrs) if float(lr) == float(fixed_lr))
    # seed x schedule x lr x (val, test): a seed's values stay together, so resampling seeds keeps the pairing
    table = np.array([[[[final(cs[(s, lr)][seed], col) for col in (val, test)] for lr in lrs] for s in schedules] for seed in seeds])
    table = np.where(np.isnan(table), np.inf, table)  # a run that did not complete: its cell is never chosen

    def rankings(sample: np.ndarray, at: int) -> tuple[float, list[str], list[str], np.ndarray]:
        """Kendall's tau between the ranking at LR index ``at`` and the tuned one (each schedule at its
        LR of lowest mean validation loss), both by mean test loss; the rankings; the tuned LR indices."""
        mean = sample.mean(axis=0)
        choice = mean[:, :, 0].argmin(axis=1)
        tuned_rank = [schedules[i] for i in np.argsort(mean[np.arange(len(schedules)), choice, 1], kind="stable")]
        fixed_rank = [schedules[i] for i in np.argsort(mean[:, at, 1], kind="stable")]
        return stats.kendall_tau(fixed_rank, tuned_rank), fixed_rank, tuned_rank, choice

    tau, fixed_rank, tuned_rank, choice = rankings(table, fixed)
    rng = np.random.default_rng(seed)
    boot = [rankings(table[rng.integers(0, len(seeds), len(seeds))], fixed)[0] for _ in range(BOOTSTRAP)]
    low, high = (float(x) for x in np.nanpercentile(boot, [2.5, 97.5]))
    verdict = Verdict.REPRODUCED if high < 1 else Verdict.NOT_REPRODUCED if low >= 1 else Verdict.INCONCLUSIVE
    edges = (0, len(lrs) - 1)
    chosen = ", ".join(f"{schedules[i]} {lrs[c]}{' (edge)' if c in edges else ''}" for i, c in enumerate(choice))
    per_lr = ", ".join(f"{lr}: {fmt(rankings(table, i)[0], 2)}" for i, lr in enumerate(lrs))
    detail = (
        f"at lr {lrs[fixed]}: {' > '.join(fixed_rank)}; tuned: {' > '.join(tuned_rank)}; tuned LRs: {chosen}; "
        f"tau at each fixed LR: {per_lr}; interval: percentile bootstrap over the {len(seeds)} seeds ({BOOTSTRAP} resamples)"
    )
    return [
        Outcome(
            "6", "the ranking at one fixed LR differs from the ranking at tuned LRs",
            f"Kendall's tau, ranking at lr {lrs[fixed]} vs tuned (< 1)", tau, low, high, len(seeds), verdict, detail,
        )
    ]  # fmt: skip


# --- 7: schedule-loss laws predict unseen schedules -----------------------------------------------

LAW_MARGIN = 0.005  # the laws' claim: a mean relative error below 0.5% on unseen schedules (fixed before any run)


def schedule_laws(runs: list[RunRecord]) -> list[Outcome]:
    """Each law fitted to the constant, cosine and two-stage runs (lrexp.predict), scored on every other
    schedule by the mean relative error of its validation-loss curve; the interval is over schedules."""
    from lrexp import predict

    sweep = runs[0].dir.parent
    prediction, *_ = predict.predict(sweep, predict.FIT_DEFAULT, ["mpl", "momentum"])
    held = [m for m in prediction.measured if not m.fitted]
    seeds = min(m.seeds for m in held)
    out = []
    for finding, law in (("7a", "mpl"), ("7b", "momentum")):
        errors = [m.accuracy[law].mean_relative for m in held]
        mean, low, high = stats.mean_interval(errors)
        label = prediction.laws[law]["label"]
        worst = max(held, key=lambda m: m.accuracy[law].worst_relative)
        spread = statistics.fmean(m.accuracy[law].final_seed_spread for m in held)
        detail = (
            f"fitted to {', '.join(prediction.fit)} (R² {prediction.laws[law]['fit_r2']:.4f} on log loss); mean relative error per "
            f"held-out schedule: " + ", ".join(f"{m.schedule} {m.accuracy[law].mean_relative:.2%}" for m in held) + f"; worst point "
            f"{worst.accuracy[law].worst_relative:.2%} ({worst.schedule}); the seeds' own spread at the last point: {spread:.2%} of the loss"
        )
        if law == "mpl" and prediction.optimal:
            best = min(held + [m for m in prediction.measured if m.fitted], key=lambda m: m.measured_final)
            detail += (
                f"; its law-optimal schedule is predicted to reach {prediction.optimal['predicted_final']:.4g}, the best measured "
                f"schedule ({best.schedule}) reached {best.measured_final:.4g}"
            )
        claim = (
            "a schedule-loss law fitted to a constant, a cosine and a two-stage run predicts the loss curves of schedules it has not seen"
        )
        out.append(
            Outcome(
                finding, claim if law == "mpl" else "... the simpler momentum law too",
                f"{label}: mean relative error over the {len(held)} unseen schedules (< {LAW_MARGIN:.1%})",
                mean, low, high, seeds, parity(low, high, LAW_MARGIN, one_sided=True), detail,
            )
        )  # fmt: skip
    return out


# --- the suite ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    number: int
    preset: str  # conf/sweep/<preset>.yaml
    source: str
    analysis: Callable[[list[RunRecord]], list[Outcome]]
    reduced: tuple[str, ...] = ()  # overrides of the small version CI runs (empty: none)


FINDINGS = (
    Finding(1, "straight_to_zero", "Bergsma et al. 2025, arXiv:2502.15938", straight_to_zero),
    Finding(2, "wsd_cooldown", "Hägele et al. 2024, arXiv:2405.18392", wsd_cooldown),
    # Reduced: 0.16 lies one doubling above the largest LR that trains without warm-up (0.08 on all 6 seeds of the
    # full sweep) and one below the smallest with it (0.16): the outcome is decided far from either edge, where
    # CPU roundings cannot flip it (0.32, the old top, is at warm-up's edge: one seed died there on an AMD CPU).
    Finding(3, "warmup_stability", "Kalra and Barkeshli 2024, arXiv:2406.09405", warmup_stability,
            ("seed=0,1,2,3", "optimizer.lr=0.04,0.16")),
    Finding(4, "schedule_free", "Defazio et al. 2024, arXiv:2405.15682", schedule_free),
    Finding(5, "exp_stall", "the article lrexp grew out of", exp_stall, ("seed=0,1,2",)),
    Finding(6, "tuning_protocol", "Choi et al. 2019, arXiv:1910.05446", tuning_protocol),
    Finding(7, "schedule_laws", "Luo et al. 2025, arXiv:2503.12811; Tissue et al. 2024, arXiv:2408.11029", schedule_laws,
            ("seed=0,1", "run.steps=80", "run.eval_every=10", "scheduler=constant,cosine_full,two_stage,linear,wsd")),
)  # fmt: skip


def analyse(finding: Finding, sweep_dir: Path) -> list[Outcome]:
    """The finding's outcomes; the first also says what lrexp's own report on the sweep flagged."""
    runs = find_runs([sweep_dir])
    outcomes = [replace(o, source=finding.source) for o in finding.analysis(runs)]
    return [replace(outcomes[0], detail=f"{outcomes[0].detail}; the sweep's report flags: {report_flags(runs)}"), *outcomes[1:]]


def report_flags(runs: Sequence[RunRecord]) -> str:
    """The diagnostics lrexp's comparison report raises on the sweep (the same comparison and diagnosis
    its summary.csv holds), each with its groups and their chosen settings: where a ranking means little
    (still learning, overfitting, grid edge...)."""
    c = compare(runs)
    diagnosis = diagnose(c)
    by_flag: dict[str, list[str]] = defaultdict(list)
    for r in c.results:
        for flag in diagnosis.of(r.group).flags:
            by_flag[flag.value].append(f"{c.group_key}={r.group}" + (f" at {r.cell.label()}" if r.cell.keys else ""))
    return "; ".join(f"{flag} ({', '.join(groups)})" for flag, groups in by_flag.items()) or "none"


def markdown_table(outcomes: Sequence[Outcome]) -> str:
    lines = [
        "| # | claim | effect (predicted side) | measured [95% interval] | seeds | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for i, o in enumerate(outcomes):
        cite = f" ({o.source})" if o.source and (i == 0 or outcomes[i - 1].source != o.source) else ""  # once a finding
        lines.append(
            f"| {o.finding} | {o.claim}{cite} | {o.effect} | {interval((o.mean, o.low, o.high))} | {o.n} | **{o.verdict.value}** |"
        )
    lines.append("")
    lines += [f"- **{o.finding}**: {o.detail}" for o in outcomes]
    return "\n".join(lines)
