"""Diagnostics: when a ranking of schedules means less than it seems, and the numbers that say so.

Each check reads a finished comparison (lrexp.compare): the run directories' rows (validation and
training loss, LR) of the cells it chose, and returns flags a report prints as notes and writes to
summary.csv:

- overfitting: validation loss ended clearly above its best while training loss kept falling. The
  ranking then measures where each schedule happened to stop overfitting, not what it did to
  optimisation (digits at 3000 steps: best near step 500, final 10-26% above it).
- still learning: validation loss was still falling steeply over the last quarter of the run, for a
  schedule that kept its LR high there (so the fall is learning, not the annealing drop every decaying
  schedule shows at its end). Schedules that keep the LR high are then favoured, and a longer run can
  reverse the ranking (tinylm at 300 steps: constant LR first).
- grid edge: a schedule's best peak LR is the lowest or highest of the grid: the optimum may lie outside.
- too few seeds: fewer than MIN_SEEDS completed runs in a chosen cell.
- stalled LR: the LR stayed below 1e-3 x its peak for a notable part of the run.
- unstable LR: at some peak LR, seeds disagree strongly: some diverged and some did not, or the
  seed-to-seed spread of the final loss is large.

Thresholds are named constants below, calibrated on lrexp's own tasks (docs/reading-a-verdict.md, Reading a report).
"""

from __future__ import annotations

import enum
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from lrexp.compare import Comparison
from lrexp.record import STALL_NOTABLE, STALL_RATIO, TRAIN_LOSS, Goal, Metric, Row, Status
from lrexp.runs import LR_KEY

# Overfitting: the final validation loss this much (relative) above its best, and the training loss at
# least this much lower at the end than at the best step.
OVERFIT_RISE = 0.05
OVERFIT_TRAIN_FALL = 0.10
# Still learning: over the last LATE_WINDOW of the run, validation loss fell by more than STILL_FALLING
# (relative to its final value), for a schedule whose mean LR over that window stayed >= HIGH_LR x peak.
LATE_WINDOW = 0.25
STILL_FALLING = 0.03
HIGH_LR = 0.5
# Too few seeds for an interval worth the name.
MIN_SEEDS = 3
# Unstable: seed-to-seed coefficient of variation of the final validation loss above this.
UNSTABLE_CV = 0.10


class FlagKind(str, enum.Enum):
    """What a flag says, in the order a report lists them; the value is its name in summary.csv."""

    OVERFITTING = "overfitting"
    STILL_LEARNING = "still learning"
    GRID_EDGE = "grid edge"
    TOO_FEW_SEEDS = "too few seeds"
    STALLED_LR = "stalled LR"
    UNSTABLE_LR = "unstable LR"

    @property
    def regime(self) -> bool:
        """The ranking itself may mean little in this regime (the verdict points at it)."""
        return self in (FlagKind.OVERFITTING, FlagKind.STILL_LEARNING)


@dataclass(frozen=True)
class Flag:
    kind: FlagKind
    groups: tuple[str, ...]  # the groups (schedules) it concerns; empty for the whole sweep
    text: str  # the note, with the numbers behind it


@dataclass
class CurveShape:
    """What the checks read off one run: its loss on validation, training loss and LR over steps."""

    rise: float  # final validation loss above its best, relative (>= 0)
    best_step: int
    train_fall: float  # 1 - training loss at the end / at the best step
    late_drop: float  # validation loss fall over the last LATE_WINDOW, relative to the final value
    late_lr: float  # mean LR over the last LATE_WINDOW / the run's peak LR


@dataclass
class GroupDiagnosis:
    """Medians over the completed runs of a group's chosen cell, and the flags they raise."""

    rise: float = math.nan
    best_step: float = math.nan
    train_fall: float = math.nan
    late_drop: float = math.nan
    late_lr: float = math.nan
    flags: list[FlagKind] = field(default_factory=list)


@dataclass
class Diagnosis:
    """Every flag of a comparison, in FlagKind order, and each group's numbers."""

    groups: dict[str, GroupDiagnosis]
    flags: list[Flag]

    def of(self, group: str) -> GroupDiagnosis:
        return self.groups.get(group) or GroupDiagnosis()

    @property
    def regime(self) -> list[Flag]:
        return [f for f in self.flags if f.kind.regime]


def curve(rows: Sequence[Row], loss: Metric, steps: int) -> CurveShape | None:
    column = loss.column("val")
    val = [(r["step"], r[column]) for r in rows if r.get(column) is not None and math.isfinite(r[column])]
    lrs = [(r["step"], r["lr"]) for r in rows if r.get("lr") is not None]
    train = [(r["step"], r[TRAIN_LOSS.name]) for r in rows if r.get(TRAIN_LOSS.name) is not None]
    if len(val) < 2 or not lrs or not train:
        return None
    sign = 1.0 if loss.goal is Goal.MIN else -1.0
    best_step, best = min(val, key=lambda sv: sign * sv[1])
    final = val[-1][1]
    scale = abs(final) or 1.0
    late_from = (1 - LATE_WINDOW) * (steps - 1)
    _, late_start = min(val, key=lambda sv: abs(sv[0] - late_from))
    train_at_best = next(v for s, v in reversed(train) if s <= best_step)
    peak = max(lr for _, lr in lrs) or 1.0
    late_lrs = [lr for s, lr in lrs if s >= late_from] or [lrs[-1][1]]
    return CurveShape(
        rise=sign * (final - best) / (abs(best) or 1.0),
        best_step=best_step,
        train_fall=1 - train[-1][1] / train_at_best if train_at_best else 0.0,
        late_drop=sign * (late_start - final) / scale,
        late_lr=statistics.fmean(late_lrs) / peak,
    )


def diagnose(c: Comparison) -> Diagnosis:
    """Per-group numbers and every flag of a comparison, in FlagKind order."""
    per_group: dict[str, GroupDiagnosis] = {}
    flags: list[Flag] = []
    overfit, still = [], []
    for g, cell in c.best.items():
        curves = [k for k in (curve(r.rows, c.loss, r.summary.steps or 0) for r in cell.completed()) if k]
        d = per_group[g] = GroupDiagnosis()
        if not curves:
            continue
        d.rise, d.best_step = _median(k.rise for k in curves), _median(k.best_step for k in curves)
        d.train_fall, d.late_drop, d.late_lr = (_median(getattr(k, a) for k in curves) for a in ("train_fall", "late_drop", "late_lr"))
        if d.rise > OVERFIT_RISE and d.train_fall > OVERFIT_TRAIN_FALL:
            overfit.append(g)
            d.flags.append(FlagKind.OVERFITTING)
        if d.late_lr >= HIGH_LR and d.late_drop > STILL_FALLING:
            still.append(g)
            d.flags.append(FlagKind.STILL_LEARNING)

    steps = _median(r.summary.steps or 0 for r in c.runs)
    if overfit:
        worst = max(overfit, key=lambda g: per_group[g].rise)
        w = per_group[worst]
        flags.append(
            Flag(
                FlagKind.OVERFITTING,
                tuple(overfit),
                (
                    f"Overfitting ({', '.join(overfit)}): validation {c.loss.label} ended clearly above its best while training "
                    f"loss kept falling (for {worst}: {w.rise:.0%} above its best at step {w.best_step:.0f} of {steps:.0f}, training "
                    f"loss {w.train_fall:.0%} lower at the end). The ranking reflects where each schedule stopped overfitting more "
                    f"than what it did to optimisation: shorten the run, or regularise."
                ),
            )
        )
    if still:
        fastest = max(still, key=lambda g: per_group[g].late_drop)
        f = per_group[fastest]
        flags.append(
            Flag(
                FlagKind.STILL_LEARNING,
                tuple(still),
                (
                    f"Still learning ({', '.join(still)}): validation {c.loss.label} was still falling steeply at the end although "
                    f"the LR stayed high (for {fastest}: {f.late_drop:.1%} over the last {LATE_WINDOW:.0%} of the run, at "
                    f"{f.late_lr:.0%} of its peak LR). Training is far from its noise floor: schedules that keep the LR high are "
                    f"favoured, and a longer run may reverse the ranking."
                ),
            )
        )
    flags += _grid_edges(c, per_group) + _few_seeds(c, per_group) + _stalls(c, per_group) + _unstable(c, per_group)
    return Diagnosis(per_group, flags)


def _grid_edges(c: Comparison, per_group: dict[str, GroupDiagnosis]) -> list[Flag]:
    if LR_KEY not in c.varying or c.group_key == LR_KEY:
        return []
    out = []
    for g, cell in c.best.items():
        grid = sorted({x.lr for x in c.cells if x.group == g and x.lr is not None})
        chosen = cell.lr
        if chosen is not None and len(grid) >= 2 and chosen in (grid[0], grid[-1]):
            side = "lowest" if chosen == grid[0] else "highest"
            per_group[g].flags.append(FlagKind.GRID_EDGE)
            out.append(
                Flag(
                    FlagKind.GRID_EDGE,
                    (g,),
                    (
                        f"Grid edge ({g}): its best peak LR, {chosen:g}, is the {side} of the grid ({', '.join(f'{x:g}' for x in grid)}): "
                        f"its optimum may lie beyond it; extend the grid {'down' if side == 'lowest' else 'up'}."
                    ),
                )
            )
    return out


def _few_seeds(c: Comparison, per_group: dict[str, GroupDiagnosis]) -> list[Flag]:
    few = {g: len(cell.completed()) for g, cell in c.best.items() if len(cell.completed()) < MIN_SEEDS}
    for g in few:
        per_group[g].flags.append(FlagKind.TOO_FEW_SEEDS)
    if not few:
        return []
    counts = ", ".join(f"{g}: {n}" for g, n in few.items())
    return [
        Flag(
            FlagKind.TOO_FEW_SEEDS,
            tuple(few),
            (
                f"Too few seeds ({counts} completed): fewer than {MIN_SEEDS} per cell give intervals too wide to tell schedules "
                f"apart, or none at all; sweep seed=0,1,2 or more."
            ),
        )
    ]


def _stalls(c: Comparison, per_group: dict[str, GroupDiagnosis]) -> list[Flag]:
    out = []
    for g, cell in c.best.items():
        frac = max((r.summary.lr_stalled_fraction or 0.0) for r in cell.runs)
        if frac > STALL_NOTABLE:
            per_group[g].flags.append(FlagKind.STALLED_LR)
            out.append(
                Flag(
                    FlagKind.STALLED_LR,
                    (g,),
                    (
                        f"Stalled LR ({g}): the LR stays below {STALL_RATIO:g} x its peak for {frac:.0%} of the run: "
                        f"training effectively stopped early."
                    ),
                )
            )
    return out


def _unstable(c: Comparison, per_group: dict[str, GroupDiagnosis]) -> list[Flag]:
    column = c.loss.column("val")
    out = []
    for cell in c.cells:
        ran = [r for r in cell.runs if r.status.has_result]
        diverged = sum(r.status is Status.DIVERGED for r in ran)
        values = [v for v in (r.summary.final.get(column) for r in cell.completed()) if v is not None and math.isfinite(v)]
        cv = statistics.stdev(values) / abs(statistics.fmean(values)) if len(values) > 1 and statistics.fmean(values) else 0.0
        where = f"{cell.group}" + (f" at {cell.label()}" if cell.keys else "")
        if 0 < diverged < len(ran):
            why = f"{diverged} of {len(ran)} seeds diverged"
        elif cv > UNSTABLE_CV:
            why = f"the seeds' final validation {c.loss.label} varies by {cv:.0%} of its mean (spread {statistics.stdev(values):.3g})"
        else:
            continue
        if cell is c.best.get(cell.group):
            per_group[cell.group].flags.append(FlagKind.UNSTABLE_LR)
        out.append(
            Flag(FlagKind.UNSTABLE_LR, (cell.group,), f"Unstable LR ({where}): {why}: at this peak LR the outcome depends on the seed.")
        )
    return out


def _median(values: Iterable[float]) -> float:
    finite = [float(v) for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan
