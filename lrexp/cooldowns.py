"""Loss vs budget per cooldown, from the run directories of a branched sweep (hydra/sweeper=cooldowns, or
branches made by hand with run.branch_from): the report's section on them.

Each branch is a warmup-stable-decay run of one budget (run.steps) whose cooldown, its last
``num_decay_steps`` in the shape ``decay_type``, started from a trunk's checkpoint (lrexp.branch). Per
cooldown (shape and fraction of the budget) and budget: the final validation and test loss over seeds,
with t intervals; at each budget, the cooldown validation chose and every other's paired test-loss gap to
it, with Bonferroni-simultaneous intervals over that budget's comparisons; the optimizer steps the trunk
and branches took against training every branch from step 0; and, where the sweep also trained branches
from step 0 (``hydra.sweeper.from_scratch``), how far each branch is from its twin (0: exact).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrexp.record import Status
from lrexp.runs import RunRecord
from lrexp.sections import Section
from lrexp.stats import LEVEL, mean_interval, paired


@dataclass(frozen=True)
class Cooldown:
    shape: str
    fraction: float  # of the budget

    @property
    def label(self) -> str:
        return f"{self.shape} {self.fraction:.0%}"


@dataclass
class Point:
    """One cooldown at one budget: its runs' final losses by seed, branched and (where trained) from step 0."""

    cooldown: Cooldown
    budget: int
    val: dict[int, float]
    test: dict[int, float]
    scratch_test: dict[int, float]


@dataclass
class Budgets:
    points: list[Point]
    trunk_test: dict[int, dict[int, float]]  # the trunks' final test loss: steps -> seed -> loss
    steps_trained: int  # by the trunks and the branches (from their branch points on)
    steps_from_scratch: int  # every branch trained from step 0 instead
    metric: str

    @property
    def ratio(self) -> float:
        return self.steps_trained / self.steps_from_scratch

    def budgets(self) -> list[int]:
        return sorted({p.budget for p in self.points})


def _scheduler_node(run: RunRecord) -> dict[str, Any]:
    from omegaconf import OmegaConf

    import lrexp.config  # noqa: F401 - the ${steps:F} resolver

    path = run.dir / ".hydra" / "config.yaml"
    if not path.is_file():
        return {}
    cfg = OmegaConf.load(path)
    node = OmegaConf.to_container(cfg.scheduler, resolve=True)
    return {str(k): v for k, v in node.items()} if isinstance(node, dict) else {}


def read_budgets(runs: Sequence[RunRecord]) -> Budgets | None:
    """The branched sweep among ``runs``, or None when no run started from a trunk."""
    branches = [r for r in runs if r.summary.branch_step is not None]
    if not branches:
        return None
    loss = branches[0].summary.loss
    if loss is None:
        return None
    val_col, test_col = loss.column("val"), loss.column("test")
    trunk_dirs = {Path(str(r.summary.branch_from)).resolve() for r in branches}
    by_key: dict[tuple[Cooldown, int], Point] = {}
    trunk_test: dict[int, dict[int, float]] = defaultdict(dict)
    trained = scratch = 0
    for r in runs:
        s = r.summary
        if r.dir.resolve() in trunk_dirs:
            trained += s.steps_done or 0
            if s.status is Status.COMPLETED and r.seed is not None and test_col in s.final:
                trunk_test[s.steps or 0][r.seed] = s.final[test_col]
            continue
        node = _scheduler_node(r)
        decay, shape = node.get("num_decay_steps"), node.get("decay_type")
        if not (s.steps and decay and shape):
            continue  # not a cooldown run of this family
        if s.branch_step is not None:
            trained += (s.steps_done or 0) - s.branch_step
            scratch += s.steps
        point = by_key.setdefault(
            (Cooldown(str(shape), decay / s.steps), s.steps), Point(Cooldown(str(shape), decay / s.steps), s.steps, {}, {}, {})
        )
        if s.status is not Status.COMPLETED or r.seed is None or test_col not in s.final:
            continue
        if s.branch_step is not None:
            point.val[r.seed], point.test[r.seed] = s.final.get(val_col, math.nan), s.final[test_col]
        else:
            point.scratch_test[r.seed] = s.final[test_col]
    points = sorted(by_key.values(), key=lambda p: (p.budget, p.cooldown.shape, p.cooldown.fraction))
    return Budgets(points, dict(trunk_test), trained, max(scratch, 1), loss.label or loss.name)


def _interval(values: Sequence[float]) -> str:
    if not values:
        return "-"
    mean, lo, hi = mean_interval(list(values))
    return f"{mean:.4g}" + (f" [{lo:.4g}, {hi:.4g}]" if math.isfinite(lo) else "")


def exactness(b: Budgets) -> float | None:
    """The largest |branch - from step 0| final test loss over every seed both trained; None: no twins."""
    gaps = [abs(p.test[s] - p.scratch_test[s]) for p in b.points for s in p.test.keys() & p.scratch_test.keys()]
    return max(gaps) if gaps else None


def choices(b: Budgets) -> list[list[str]]:
    """Per budget: the cooldown with the lowest mean validation loss, and each other's paired test gap to it."""
    rows = []
    for budget in b.budgets():
        here = [p for p in b.points if p.budget == budget and len(p.val) >= 2]
        if len(here) < 2:
            continue
        chosen = min(here, key=lambda p: sum(p.val.values()) / len(p.val))
        others = [p for p in here if p is not chosen]
        level = 1 - (1 - LEVEL) / len(others)  # Bonferroni: the budget's intervals hold together
        gaps = []
        for p in sorted(others, key=lambda p: sum(p.test.values()) / len(p.test)):
            d = paired(p.test, chosen.test, level)
            mark = "" if not d.excludes_zero else (" (worse)" if d.low > 0 else " (better)")
            gaps.append(f"{p.cooldown.label} {d.mean:+.3g} [{d.low:+.3g}, {d.high:+.3g}]{mark}")
        rows.append([str(budget), chosen.cooldown.label, _interval(list(chosen.test.values())), "; ".join(gaps)])
    return rows


def section(b: Budgets, figure: Path | None = None) -> Section:
    has_scratch = any(p.scratch_test for p in b.points)
    head = ["budget (steps)", "cooldown", "seeds", f"final val {b.metric}", f"final test {b.metric} [95% CI]"]
    head += ["from step 0: test", "|branch - step 0|"] if has_scratch else []
    rows = []
    for p in b.points:
        row = [str(p.budget), p.cooldown.label, str(len(p.test)), _interval(list(p.val.values())), _interval(list(p.test.values()))]
        if has_scratch:
            both = p.test.keys() & p.scratch_test.keys()
            row += [
                _interval(list(p.scratch_test.values())),
                f"{max(abs(p.test[s] - p.scratch_test[s]) for s in both):.3g}" if both else "-",
            ]
        rows.append(row)
    for steps, by_seed in sorted(b.trunk_test.items()):
        rows.append([str(steps), "none (the trunk: constant LR)", str(len(by_seed)), "", _interval(list(by_seed.values()))])
    paragraphs = [
        f"Every cooldown at every budget, branched from one trunk per seed at the step where it starts (run.branch_from; lrexp "
        f"checked each branch is the run it would be from step 0). Compute: {b.steps_trained} optimizer steps for the trunks and the "
        f"branches' cooldowns, against {b.steps_from_scratch} to train every branch from step 0: {b.ratio:.1%}.",
    ]
    gap = exactness(b)
    if gap is not None:
        paragraphs.append(
            f"Exactness: each branch against the same schedule trained from step 0, seed by seed: the largest difference in final "
            f"test {b.metric} is {gap:.3g}" + (" (bit for bit)." if gap == 0 else " (not bit for bit: see the runs' devices and threads).")
        )
    choice_rows = choices(b)
    bullets = [
        f"at {budget} steps validation chose {label} (test {test}); the others' test {b.metric} minus it: {gaps}"
        for budget, label, test, gaps in choice_rows
    ]
    if bullets:
        paragraphs.append(
            "At each budget, the cooldown with the lowest mean final validation loss, and every other cooldown's test-loss gap to it "
            "(paired over seeds; 95% intervals made simultaneous over the budget's comparisons by Bonferroni; (worse) or (better) where "
            "an interval excludes 0). A gap whose interval spans 0 is 'cannot tell' at these seeds."
        )
    return Section("Loss vs budget: cooldowns from one trunk", paragraphs, head, rows, bullets, [figure] if figure is not None else [])


def figure(b: Budgets, path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.8))
    ax = fig.subplots()
    shapes = sorted({p.cooldown.shape for p in b.points})
    fractions = sorted({p.cooldown.fraction for p in b.points})
    styles = ["-", "--", ":", "-."]
    for cooldown in sorted({p.cooldown for p in b.points}, key=lambda c: (c.shape, c.fraction)):
        pts = [p for p in b.points if p.cooldown == cooldown and p.test]
        if not pts:
            continue
        xs, means, errs = [], [], []
        for p in pts:
            mean, lo, _ = mean_interval(list(p.test.values()))
            xs.append(p.budget)
            means.append(mean)
            errs.append(0.0 if not math.isfinite(lo) else mean - lo)
        color = f"C{shapes.index(cooldown.shape) % 10}"
        ax.errorbar(
            xs, means, yerr=errs, fmt="o", ls=styles[fractions.index(cooldown.fraction) % 4], color=color, capsize=2, label=cooldown.label
        )
    for steps, by_seed in sorted(b.trunk_test.items()):
        ax.plot([steps], [sum(by_seed.values()) / len(by_seed)], "kx", markersize=8, label="trunk (constant LR)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(b.budgets(), [str(x) for x in b.budgets()])
    ax.minorticks_off()
    ax.set_xlabel("budget (optimizer steps)")
    ax.set_ylabel(f"final test {b.metric} (mean over seeds, 95% CI)")
    ax.set_title("loss vs budget: cooldowns branched from one trunk")
    ax.grid(True, alpha=0.4)
    ax.legend(fontsize="small", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path
