"""Scores that count the tuning it took: what a schedule is worth when its peak LR must be found in k
trials, and how schedules compare across many sweeps. From runs already on disk: no new runs.

    python -m lrexp.budget DIR [DIR ...] [--out OUT] [--k 1,2,3,4] [--draws 2000]

Tuning budget (AlgoPerf's external tuning ruleset, Dahl et al. 2023): a *study* draws k trials from the
search space, here the sweep's peak-LR grid (each LR drawn uniformly, with replacement, and one of its
seeds at random), keeps the trial with the best final validation loss and scores it by its final test
loss; a schedule's score at budget k is the median over studies, with the interquartile range. A study
whose every trial diverged scores infinite: it found nothing that trains. A schedule that is good only
at one LR of the grid needs a large k to show it; one that is good anywhere is good at k = 1.

Performance profiles (Dolan and Moré 2002; AlgoPerf's aggregate): over several sweeps (tasks, run
lengths, the replication suite's presets), each schedule's score in a sweep divided by the best score
there (r >= 1; infinite where it did not run or never trained), and rho(tau) = the share of sweeps where
r <= tau. A schedule whose curve rises first and reaches 1 is best nearly everywhere; rho(1) is the
share of sweeps it wins outright. The score is the tuned one (each schedule at the LR validation chose,
its mean test loss: the report's table), or best-of-k with ``--profile-k``.

Writes into OUT (default: DIR, or required with several): budget.md, budget.csv, budget.png (one per
sweep with an LR grid, named after it with several), and with several sweeps profiles.csv and
profiles.png. The comparison report shows a sweep's own tuning-budget figure and table (lrexp.report).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrexp.compare import Comparison, compare
from lrexp.errors import ConfigError
from lrexp.record import Status
from lrexp.runs import LR_KEY, find_runs, signed
from lrexp.sections import Section, to_markdown

DRAWS = 2000  # studies per budget: the median's own resampling noise is then well below a seed's spread


@dataclass(frozen=True)
class BudgetCurve:
    """One group's score at each budget k: the median over studies and its interquartile range."""

    group: str
    k: list[int]
    median: list[float]
    q25: list[float]
    q75: list[float]


def has_grid(c: Comparison) -> bool:
    """The sweep varies the peak LR of its groups: there is something to tune."""
    return LR_KEY in c.varying and c.group_key != LR_KEY


def trials(c: Comparison, group: str) -> list[list[tuple[float, float]]]:
    """The group's search space: per LR cell, each seed's (final validation, final test) loss, oriented
    so that lower is better; a run that diverged or failed is (inf, inf)."""
    val, test = c.loss.column("val"), c.loss.column(c.split)
    out = []
    for cell in c.cells:
        if cell.group != group:
            continue
        runs = []
        for r in cell.runs:
            v, t = r.summary.final.get(val), r.summary.final.get(test)
            if r.status is Status.COMPLETED and v is not None and t is not None and math.isfinite(v) and math.isfinite(t):
                runs.append((signed(c.loss, v), signed(c.loss, t)))
            else:
                runs.append((math.inf, math.inf))
        if runs:
            out.append(runs)
    return out


def studies(space: list[list[tuple[float, float]]], k: int, draws: int, rng: np.random.Generator) -> np.ndarray:
    """``draws`` studies of k trials: each draws an LR cell uniformly and one of its seeds; the best trial
    on validation is scored on test (inf when every trial diverged)."""
    scores = np.empty(draws)
    for i in range(draws):
        picks = [space[j][rng.integers(len(space[j]))] for j in rng.integers(len(space), size=k)]
        scores[i] = min(picks)[1]  # lowest validation first; its test number
    return scores


def budget(c: Comparison, ks: Sequence[int] | None = None, draws: int = DRAWS, seed: int = 0) -> list[BudgetCurve]:
    """Each ranked group's score against the number of trials spent finding its LR (default: 1 to the
    grid's size). The same random numbers for every group: their curves differ by the runs alone."""
    out = []
    for r in c.ranked:
        space = trials(c, r.group)
        budgets = list(ks) if ks else list(range(1, len(space) + 1))
        rng = np.random.default_rng(seed)
        rows = [studies(space, k, draws, rng) for k in budgets]
        sign = 1.0 if signed(c.loss, 1.0) > 0 else -1.0  # back to the metric's own direction
        # A sample value, never an interpolation: a median between two infinite studies is infinite, not nan.
        quantiles = [sign * np.quantile(s, [0.5, 0.25, 0.75], method="inverted_cdf") for s in rows]
        out.append(BudgetCurve(r.group, budgets, *(list(map(float, q)) for q in zip(*quantiles))))
    return out


def tuned_score(c: Comparison) -> dict[str, float]:
    """Each group at the cell validation chose: its mean reported (test) loss, oriented lower-is-better."""
    return {r.group: signed(c.loss, r.mean) if r.mean is not None else math.inf for r in c.results}


def profiles(scores: Sequence[dict[str, float]], taus: np.ndarray) -> dict[str, np.ndarray]:
    """rho_s(tau) for every schedule over the given sweeps' scores (lower is better, positive)."""
    groups = sorted({g for s in scores for g in s})
    ratios = {g: [] for g in groups}  # type: dict[str, list[float]]
    for s in scores:
        best = min((v for v in s.values() if math.isfinite(v)), default=math.inf)
        for g in groups:
            v = s.get(g, math.inf)
            ratios[g].append(v / best if math.isfinite(v) and best > 0 else math.inf)
    return {g: np.array([np.mean([r <= tau for r in ratios[g]]) for tau in taus]) for g in groups}


# --- outputs -----------------------------------------------------------------------------------------


def section(curves: Sequence[BudgetCurve], metric: str, figure: Path | None = None) -> Section:
    """A sweep's tuning budget: a paragraph, the table, the figure."""
    ks = curves[0].k if curves else []
    rows = [
        [
            c.group,
            *(
                _fmt(m) + (f" [{_fmt(lo)}, {_fmt(hi)}]" if math.isfinite(lo) and math.isfinite(hi) else "")
                for m, lo, hi in zip(c.median, c.q25, c.q75)
            ),
        ]
        for c in curves
    ]
    return Section(
        "Tuning budget",
        [
            f"What each schedule is worth when its peak LR must be found in k trials (AlgoPerf's external tuning): the median final "
            f"test {metric} of the trial a study keeps (its best on validation) over {DRAWS} studies, with the interquartile range; "
            f"each trial draws an LR of the grid and one of its seeds; inf: every trial of the study diverged."
        ],
        ["schedule", *(f"k = {k}" for k in ks)],
        rows,
        figures=[figure] if figure is not None else [],
    )


def budget_figure(curves: Sequence[BudgetCurve], metric: str, path: Path, colors: dict[str, str] | None = None) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for i, c in enumerate(curves):
        color = (colors or {}).get(c.group, f"C{i % 10}")
        finite = [j for j, m in enumerate(c.median) if math.isfinite(m)]
        ax.plot([c.k[j] for j in finite], [c.median[j] for j in finite], "o-", color=color, label=c.group)
        band = [j for j in finite if math.isfinite(c.q25[j]) and math.isfinite(c.q75[j])]
        ax.fill_between([c.k[j] for j in band], [c.q25[j] for j in band], [c.q75[j] for j in band], color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("trials spent finding the peak LR (k)")
    ax.set_ylabel(f"final test {metric} of the best-on-validation trial")
    ax.set_title(f"tuning budget: median over {DRAWS} studies, band = interquartile range")
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def write_budget(c: Comparison, out: Path, name: str = "budget") -> list[BudgetCurve]:
    curves = budget(c)
    with open(out / f"{name}.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([c.group_key, "k", "median", "q25", "q75"])
        for curve in curves:
            for row in zip(curve.k, curve.median, curve.q25, curve.q75):
                w.writerow([curve.group, *row])
    budget_figure(curves, c.loss.label or c.loss.name, out / f"{name}.png")
    return curves


def profile_figure(rho: dict[str, np.ndarray], taus: np.ndarray, n: int, path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for i, (g, values) in enumerate(sorted(rho.items(), key=lambda kv: -kv[1].sum())):
        ax.step(taus, values, where="post", color=f"C{i % 10}", label=g)
    ax.set_xlabel("tau: score / best score in the sweep")
    ax.set_ylabel(f"share of the {n} sweeps within tau of the best")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("performance profiles")
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _fmt(v: float) -> str:
    return "inf" if math.isinf(v) else f"{v:.4g}"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrexp.budget", description=__doc__.splitlines()[0])
    p.add_argument("dirs", nargs="+", type=Path, help="sweep directories (each with an LR grid for its budget curve)")
    p.add_argument("--out", type=Path, help="where to write (default: the one DIR given)")
    p.add_argument("--profile-k", type=int, help="score each sweep by best-of-k instead of the tuned result")
    p.add_argument("--tau-max", type=float, default=1.1, help="the profiles' right end (default 1.1: within 10%% of the best)")
    a = p.parse_args(argv)
    try:
        if a.out is None and len(a.dirs) > 1:
            raise ConfigError("--out", None, "required with several directories")
        out = a.out or a.dirs[0]
        out.mkdir(parents=True, exist_ok=True)
        comparisons = {d: compare(find_runs([d])) for d in a.dirs}
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"lrexp.budget: error: {e}", file=sys.stderr)
        return 2
    text = []
    for d, c in comparisons.items():
        name = "budget" if len(a.dirs) == 1 else f"budget-{d.name}"
        if not has_grid(c):
            text.append(f"## {d}\n\nNo peak-LR grid in this sweep: nothing to tune, no budget curve.\n")
            continue
        curves = write_budget(c, out, name)
        text.append(
            to_markdown(section(curves, c.loss.label or c.loss.name, out / f"{name}.png"), base=out).replace("Tuning budget", str(d), 1)
        )
    if len(a.dirs) > 1:
        scores = []
        for c in comparisons.values():
            if a.profile_k:
                scores.append({b.group: b.median[0] if c.loss.goal.value == "min" else -b.median[0] for b in budget(c, [a.profile_k])})
            else:
                scores.append(tuned_score(c))
        taus = np.linspace(1.0, a.tau_max, 201)
        rho = profiles(scores, taus)
        profile_figure(rho, taus, len(scores), out / "profiles.png")
        with open(out / "profiles.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["schedule", "best (tau = 1)", "within 1%", "within 5%", *(f"sweep {i}" for i in range(len(scores)))])
            at = {tau: int(np.searchsorted(taus, tau - 1e-12)) for tau in (1.0, 1.01, 1.05)}
            for g, values in rho.items():
                w.writerow([g, *(values[i] for i in at.values()), *(s.get(g, math.inf) for s in scores)])
        lines = ["| schedule | best | within 1% | within 5% |", "|---|---|---|---|"]
        for g, values in sorted(rho.items(), key=lambda kv: -kv[1].sum()):
            lines.append(f"| {g} | " + " | ".join(f"{values[i]:.0%}" for i in at.values()) + " |")
        score = f"best-of-{a.profile_k}" if a.profile_k else "tuned (each at the LR validation chose)"
        text.append(
            f"## Performance profiles over {len(scores)} sweeps\n\nScore: {score} final test loss; share of the sweeps where each "
            f"schedule is within tau of the best.\n\n" + "\n".join(lines) + "\n\n![profiles](profiles.png)\n"
        )
    (out / "budget.md").write_text("# Tuning budget\n\n" + "\n".join(text))
    print(out / "budget.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
