"""Deciding with the fewest runs: the adaptive sweep's group-sequential design and its statistics.

An adaptive sweep (``hydra/sweeper=adaptive``, hydra_plugins/lrexp_sweepers) runs its cells in rounds of
seeds and looks at the data after each round. A fixed-n test repeated after every round would claim too
much (five looks at a 5% test give about 14%, Armitage et al. 1969), so both halves of the fixed protocol
(lrexp.compare) are made sequential, with the same structure:

- *is there a difference at all*: a group-sequential t test per pair, whose boundaries c_1..c_K over the
  planned looks come from a Lan-DeMets alpha-spending function (Pocock's or O'Brien-Fleming's shape, over
  the information fraction n_k / n_max); the family of every pair, fixed before the first run, is
  corrected by Holm's step-down made sequential (Maurer and Bretz 2013): a pair not yet rejected is tested
  at alpha / (pairs not yet rejected), so each rejection passes its share on, at this and later looks;
- *by how much*: a repeated confidence interval per pair (Jennison and Turnbull 1989), mean +- c_k x
  sd / sqrt(n) at level alpha, whose coverage holds at every look at once, so it may be read at whatever
  look the sweep stops. While a pair compares the same two cells its interval is the intersection of its
  looks' intervals.

A pair is decided *worse* (its difference rejected, its whole interval beyond the margin) or *negligible*
(its whole interval within the margin: an equivalence claim, valid at any look for the same reason);
anything else stays open and gets the next seeds, until seeds.max or the run budget, or until, from half
of seeds.max on, its conditional power (the chance that seeds.max decides it, given its seeds so far and
at its present difference and spread) falls below 10%: a non-binding futility stop, which forgoes claims
and never makes one. The boundaries are computed on the t scale by simulating null paths of normal seed
differences (t is scale-free, so they are exact for normal differences at any spread, one degree of
freedom included); how the design does on real, non-normal runs is measured by scripts/replay_sweeper.py
on null pools.

Every look is a prefix of seeds (look k: seeds 0..n_k - 1 of the cells still open), so everything here
is recomputed from the run directories alone; the sweeper adds only its design (DESIGN_FILE). The
policy and the report share ``replay``; scripts/replay_sweeper.py replays it over a pool of real runs.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats as sp

from lrexp import stats
from lrexp.compare import Claim, Comparison, Pair, compare
from lrexp.errors import ConfigError
from lrexp.record import Status, is_finite_number, is_neutral
from lrexp.runs import RunRecord, signed
from lrexp.sections import Section

DESIGN_FILE = "adaptive.json"  # in the sweep directory: the design the sweeper ran (what marks a sweep adaptive)
SPENDING = ("pocock", "obrien_fleming")
BOUNDARY_PATHS = 200_000  # simulated null paths per boundary: +-8% on a look's spent alpha at alpha / m = 0.0017
BOUNDARY_SEED = 20261207  # the boundaries are a fixed function of the design
MAX_SEEDS = 64  # a design is simulated over seeds.max seeds; past this, a sequential design buys nothing


@dataclass(frozen=True)
class Design:
    """The adaptive sweeper's settings (``hydra.sweeper.*``; conf/hydra/sweeper/adaptive.yaml says what each
    means), fixed before the first run: the looks and the boundaries follow from them."""

    seeds_min: int = 2  # seeds every cell gets in the first round
    seeds_max: int = 12  # the most seeds any cell gets
    seeds_step: int = 1  # seeds added per round to the cells still open
    alpha: float = 0.05  # the family-wise error rate of every claim, over every look
    spending: str = "obrien_fleming"  # the alpha-spending function's shape (docs/adaptive.md, Adaptive sweeps: why this default)
    drop_se: float = 3.0  # a cell worse on validation than its group's best by this x the gap's standard error is dropped
    futility: bool = True  # from half of seeds.max, stop a pair unlikely to be decided by it (conditional power; adds no claim)
    max_runs: int | None = None  # the compute cap: no round starts that would exceed it

    def looks(self) -> list[int]:
        """The seeds each look has: seeds_min, seeds_min + step, ..., seeds_max."""
        return sorted({*range(self.seeds_min, self.seeds_max, self.seeds_step), self.seeds_max})

    def check(self) -> Design:
        """One ConfigError naming the first ``hydra.sweeper`` key out of range."""

        def bad(key: str, value: Any, allowed: str) -> ConfigError:
            return ConfigError(f"hydra.sweeper.{key}", value, allowed)

        if not _int(self.seeds_min) or self.seeds_min < 2:
            raise bad("seeds.min", self.seeds_min, "must be an integer >= 2 (a paired interval needs two seeds)")
        if not _int(self.seeds_max) or self.seeds_max < self.seeds_min:
            raise bad("seeds.max", self.seeds_max, f"must be an integer >= seeds.min ({self.seeds_min})")
        if self.seeds_max > MAX_SEEDS:
            raise bad("seeds.max", self.seeds_max, f"must be at most {MAX_SEEDS}")
        if not _int(self.seeds_step) or self.seeds_step < 1:
            raise bad("seeds.step", self.seeds_step, "must be an integer >= 1 (seeds added per round)")
        if not (isinstance(self.alpha, float | int) and 0 < self.alpha < 1):
            raise bad("alpha", self.alpha, "must be in (0, 1)")
        if self.spending not in SPENDING:
            raise bad("spending", self.spending, f"allowed: {', '.join(SPENDING)}")
        if not isinstance(self.futility, bool):
            raise bad("futility", self.futility, "must be true or false")
        if not (isinstance(self.drop_se, float | int) and self.drop_se > 0):
            raise bad("drop_se", self.drop_se, "must be a number > 0 (a multiple of the gap's standard error)")
        if self.max_runs is not None and (not _int(self.max_runs) or self.max_runs < 1):
            raise bad("max_runs", self.max_runs, "must be an integer >= 1, or null (no cap)")
        return self

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> Design:
        """From the sweeper's config node (``seeds: {min, max, step}`` and the rest) or DESIGN_FILE's dict."""
        seeds = node.get("seeds") or {}
        flat = {f"seeds_{k}": v for k, v in seeds.items()} | {k: v for k, v in node.items() if k != "seeds"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(flat) - known)
        if unknown:
            key = unknown[0].replace("seeds_", "seeds.", 1)
            raise ConfigError(f"hydra.sweeper.{key}", flat[unknown[0]], f"no such setting; allowed: {', '.join(sorted(_keys()))}")
        return cls(**flat).check()

    def as_node(self) -> dict[str, Any]:
        d = asdict(self)
        return {"seeds": {k: d.pop(f"seeds_{k}") for k in ("min", "max", "step")}, **d}

    def method(self, pairs: int) -> str:
        """The design in one phrase, for the report's sentences."""
        shape = "Pocock" if self.spending == "pocock" else "O'Brien-Fleming"
        return (
            f"a group-sequential design ({len(self.looks())} looks, {self.seeds_min} to {self.seeds_max} seeds, {shape} alpha "
            f"spending): sequential Holm over {pairs} pair{'s' if pairs != 1 else ''}, repeated {1 - self.alpha:.0%} intervals"
        )


def _keys() -> list[str]:
    return [f.name.replace("seeds_", "seeds.", 1) for f in fields(Design)]


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


# --- boundaries ------------------------------------------------------------------------------------


def spent(design: Design, fraction: float, alpha: float) -> float:
    """Lan-DeMets alpha spending: the error probability used up by information fraction ``fraction``."""
    if design.spending == "pocock":
        return alpha * math.log(1 + (math.e - 1) * fraction)
    return 2 * (1 - sp.norm.cdf(sp.norm.ppf(1 - alpha / 2) / math.sqrt(fraction)))  # O'Brien-Fleming


@functools.lru_cache(maxsize=64)
def _boundaries(looks: tuple[int, ...], alpha: float, spending: str) -> tuple[float, ...]:
    design = Design(seeds_min=looks[0], seeds_max=looks[-1], spending=spending)
    rng = np.random.default_rng(BOUNDARY_SEED)
    total, squares = np.zeros(BOUNDARY_PATHS), np.zeros(BOUNDARY_PATHS)
    alive = np.ones(BOUNDARY_PATHS, dtype=bool)
    used, seen, out = 0.0, 0, []
    for n in looks:
        while seen < n:
            x = rng.standard_normal(BOUNDARY_PATHS)
            total += x
            squares += x * x
            seen += 1
        mean = total / n
        sd = np.sqrt(np.maximum(squares - n * mean * mean, 0) / (n - 1))
        t = np.abs(mean) / np.maximum(sd / math.sqrt(n), 1e-300)
        k = round((spent(design, n / looks[-1], alpha) - used) * BOUNDARY_PATHS)  # paths this look may reject
        survivors = np.sort(t[alive])[::-1]
        c = math.inf if k <= 0 else float(survivors[min(k, len(survivors) - 1)])
        crossed = alive & (t > c)
        used += crossed.sum() / BOUNDARY_PATHS
        alive &= ~crossed
        out.append(c)
    return tuple(out)


def boundaries(design: Design, level: float) -> list[float]:
    """c_k for each planned look: under no difference, |t| passes c_k at some look with probability ``level``."""
    return list(_boundaries(tuple(design.looks()), level, design.spending))


def critical(c: float, planned: int, n: int) -> float:
    """The boundary for a pair with n seeds at a look planned for ``planned`` (a seed lost to a failed run):
    the same nominal level on n - 1 degrees of freedom."""
    if n == planned or not math.isfinite(c):
        return c
    nominal = 2 * float(sp.t.sf(c, planned - 1))
    return float(sp.t.isf(nominal / 2, n - 1))


# --- the data the design reads ---------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """One run's final numbers as the design reads them, oriented so that lower is better."""

    val: float | None  # final validation loss; None without a result
    test: float | None  # final loss on the reported split
    status: Status
    steps: int = 0  # optimizer steps it took (compute)
    length: int = 0  # the steps it was configured to take (what the fixed design would spend on it)


CellKey = tuple[str, str]  # (group, cell label): one schedule at one setting
Table = Mapping[CellKey, Mapping[int, Outcome]]  # cell -> seed -> outcome


def table_of(c: Comparison, cells: Mapping[CellKey, Sequence[str]] | None = None) -> dict[CellKey, dict[int, Outcome]]:
    """The comparison's runs as the design's table: grouped into lrexp.compare's cells, or, given the
    planned ``cells`` (cell -> its overrides), each run into the cell whose overrides it was launched with
    (what a sweep that has not run every cell yet needs: compare labels cells by what varies so far)."""
    val_col, test_col = c.loss.column("val"), c.loss.column(c.split)

    def outcome(r: RunRecord) -> Outcome:
        ok = r.status is Status.COMPLETED
        val, test = (r.summary.final.get(col) for col in (val_col, test_col))
        return Outcome(
            signed(c.loss, float(val)) if ok and val is not None and is_finite_number(val) else None,
            signed(c.loss, float(test)) if ok and test is not None and is_finite_number(test) else None,
            r.status,
            r.summary.steps_done or 0,
            r.summary.steps or r.summary.steps_done or 0,
        )

    out: dict[CellKey, dict[int, Outcome]] = {}
    if cells is None:
        for cell in c.cells:
            by_seed = out.setdefault((cell.group, cell.label()), {})
            for r in cell.runs:
                if r.seed is not None:
                    by_seed[r.seed] = outcome(r)
        return out
    by_overrides = {_key(overrides): key for key, overrides in cells.items()}
    for r in c.runs:
        key = by_overrides.get(_key(f"{k}={v}" for k, v in r.overrides.items()))
        if key is not None and r.seed is not None:
            out.setdefault(key, {})[r.seed] = outcome(r)
    return out


def _key(overrides: Iterable[str]) -> frozenset[str]:
    """A run's identity among a sweep's cells: its overrides but the seed and the keys that change no number."""
    out = set()
    for o in overrides:
        k, _, v = o.partition("=")
        k = k.lstrip("+~")
        if k != "seed" and not is_neutral(k):
            out.add(f"{k}={v}")
    return frozenset(out)


# --- looks -----------------------------------------------------------------------------------------


@dataclass
class PairState:
    """A pair of groups (a < b by name) at its latest evaluation: a - b, + = a worse."""

    a: str
    b: str
    n: int = 0
    mean: float = math.nan
    low: float = math.nan  # the repeated interval: the intersection over the looks with these cells
    high: float = math.nan
    sd: float = math.nan
    wins: int = 0  # seeds where a beat b
    t: float = 0.0  # |mean| / standard error: the sequential test's statistic against no difference
    rejected: bool = False  # no difference rejected by the family's sequential test (Holm-type, every look so far)
    futile: bool = False  # open, and no difference its interval allows could be decided by seeds.max
    cells: tuple[str, str] = ("", "")
    decision: str = "open"  # open | negligible | <group> worse
    decided_at: int | None = None  # the look that decided it (1-based)

    def worse(self) -> str | None:
        return self.decision.removesuffix(" worse") if self.decision.endswith(" worse") else None

    def oriented(self, other: str) -> tuple[float, float, float]:
        """(mean, low, high) of ``other`` minus the pair's other group."""
        if other == self.a:
            return self.mean, self.low, self.high
        return -self.mean, -self.high, -self.low


@dataclass
class Drop:
    group: str
    cell: str
    look: int
    reason: str


@dataclass
class Look:
    index: int  # 1-based: look k follows round k
    seeds: int  # n_k: the open cells have seeds 0..n_k - 1
    launched: list[CellKey]  # the cells round k gave seeds to
    runs: int  # runs round k launched
    chosen: dict[str, str]  # group -> its cell at this look (best on validation among those not dropped)
    counts: dict[str, int]  # group -> the seeds it has
    pairs: dict[tuple[str, str], PairState]
    drops: list[Drop]  # made at this look
    decided: list[tuple[str, str]]  # pairs decided at this look
    needed: list[tuple[str, str]]  # the open pairs the verdict still needs: why the next round runs
    open_groups: list[str]  # the groups the next round gives seeds to
    reference: str | None  # the best on validation
    margin: float  # absolute, on the reported loss
    stop: str | None = None  # why the design ends here; None: the next round follows


@dataclass
class Replay:
    """Every look the data hold, and what the design does next."""

    design: Design
    looks: list[Look]
    next_cells: list[CellKey] = field(default_factory=list)  # the cells that need the next seeds (empty: stopped)
    next_seeds: range = range(0)
    stop: str | None = None
    runs: int = 0  # runs the looks used
    steps: int = 0  # optimizer steps the looks' runs took
    fixed_runs: int = 0  # what the fixed design would run: every planned cell at seeds.max
    fixed_steps: int = 0
    unused: int = 0  # runs in the directory beyond the design's looks: not compared (lrexp.sequential.judged)

    @property
    def last(self) -> Look | None:
        return self.looks[-1] if self.looks else None


def replay(table: Table, design: Design, margin: float, cells: Sequence[CellKey] | None = None) -> Replay:
    """The design's looks over ``table`` (seeds 0, 1, ... of each cell), as the sweeper took them, up to the
    first look whose data are not all there; ``cells``: every planned cell, run or not (default: the table's)."""
    cells = list(cells) if cells is not None else list(table)
    groups = sorted({g for g, _ in cells})
    cells_of = {g: [label for gg, label in cells if gg == g] for g in groups}
    plan = design.looks()
    dropped: set[CellKey] = set()
    open_groups, counts = list(groups), dict.fromkeys(groups, 0)
    pairs = {(a, b): PairState(a, b) for a, b in itertools.combinations(groups, 2)}
    out = Replay(design, [], fixed_runs=len(cells) * design.seeds_max)
    out.fixed_steps = design.seeds_max * sum(max((o.length for o in table.get(key, {}).values()), default=0) for key in cells)
    for k, n in enumerate(plan):
        before = {g: counts[g] for g in groups}
        launched = [(g, label) for g in open_groups for label in cells_of[g] if (g, label) not in dropped]
        missing = [key for key in launched if any(s not in table.get(key, {}) for s in range(before[key[0]], n))]
        if missing:
            out.next_cells, out.next_seeds = launched, range(min(before[g] for g in open_groups), n)
            return out
        for g in open_groups:
            counts[g] = n
        look = _look(k, n, table, design, margin, cells_of, dropped, counts, pairs, launched, plan)
        look.runs = sum(n - before[g] for g, _ in launched)
        out.runs += look.runs
        out.steps += sum(table[key][s].steps for key in launched for s in range(before[key[0]], n))
        out.looks.append(look)
        nxt = plan[k + 1] if k + 1 < len(plan) else None
        cost = sum(1 for g in look.open_groups for label in cells_of[g] if (g, label) not in dropped) * ((nxt or n) - n)
        if not look.open_groups:
            futile = sum(p.futile for p in look.pairs.values())
            look.stop = "every pair the verdict needs is decided" + (f" or unlikely to be by seeds.max ({futile})" if futile else "")
        elif nxt is None:
            look.stop = f"seeds.max={design.seeds_max} reached"
        elif design.max_runs is not None and out.runs + cost > design.max_runs:
            look.stop = f"max_runs={design.max_runs} reached: the next round needs {cost} runs, {out.runs} ran"
        if look.stop:
            out.stop = look.stop
            return out
        open_groups = look.open_groups
    return out


def first_round(design: Design, cells: Sequence[CellKey]) -> int:
    return len(cells) * design.seeds_min


def _look(
    k: int,
    n: int,
    table: Table,
    design: Design,
    margin_fraction: float,
    cells_of: Mapping[str, list[str]],
    dropped: set[CellKey],
    counts: Mapping[str, int],
    pairs: dict[tuple[str, str], PairState],
    launched: list[CellKey],
    plan: list[int],
) -> Look:
    groups = list(cells_of)
    chosen, complete = {}, {}
    for g in groups:
        eligible = [label for label in cells_of[g] if (g, label) not in dropped]
        ranked = sorted(eligible, key=lambda label: _order(table[(g, label)], counts[g]))
        chosen[g] = ranked[0]
        complete[g] = _complete(table[(g, chosen[g])], counts[g])
    val_means = {g: _mean(table[(g, chosen[g])], counts[g], "val") for g in groups if complete[g]}
    reference = min(val_means, key=lambda g: val_means[g]) if val_means else None
    ref_test = _mean(table[(reference, chosen[reference])], counts[reference], "test") if reference else math.nan
    margin = margin_fraction * abs(ref_test) if math.isfinite(ref_test) else math.nan

    # Cells dropped on evidence, within the groups this round gave seeds to (validation chooses, so validation drops).
    drops = []
    for g in {g for g, _ in launched}:
        best = table[(g, chosen[g])]
        if not complete[g]:
            continue
        for label in cells_of[g]:
            if label == chosen[g] or (g, label) in dropped:
                continue
            reason = _drop_reason(table[(g, label)], best, counts[g], design.drop_se, margin_fraction, chosen[g])
            if reason:
                dropped.add((g, label))
                drops.append(Drop(g, label, k + 1, reason))

    # Each pair's interval (per pair at level alpha: the margin and equivalence), then the family's test
    # against no difference: Holm's step-down made sequential (Maurer and Bretz 2013): each pair not yet
    # rejected is tested at alpha / (pairs not yet rejected), so a rejection passes its share to the rest,
    # and the boundaries at that level apply to this and every later look.
    interval_bounds = boundaries(design, design.alpha)
    for p in pairs.values():
        _evaluate(p, table, chosen, counts, interval_bounds[k], plan[k])
    while True:
        left = [p for p in pairs.values() if not p.rejected]
        level = design.alpha / max(1, len(left))
        c = boundaries(design, level)[k]
        newly = [p for p in left if p.n >= 2 and p.t > critical(c, plan[k], p.n)]
        if not newly:
            break
        for p in newly:
            p.rejected = True
    decided = []
    for (a, b), p in pairs.items():
        _decide(p, margin, k + 1)
        if p.decided_at == k + 1:
            decided.append((a, b))
        p.futile = design.futility and p.decision == "open" and _futile(p, margin, interval_bounds[-1], plan[-1])
    # A group that another is decided better than (beyond the margin), or that has no complete cell to rank,
    # cannot be the answer: its remaining pairs are not needed.
    beaten = {p.worse() for p in pairs.values() if p.worse()} | {g for g in groups if not complete[g]}
    needed = [p for p in pairs.values() if p.decision == "open" and not p.futile and p.a not in beaten and p.b not in beaten]
    open_groups = sorted({g for p in needed for g in (p.a, p.b)})
    return Look(k + 1, n, launched, 0, chosen, dict(counts), {key: replace(p) for key, p in pairs.items()}, drops, decided,
                [(p.a, p.b) for p in needed], open_groups, reference, margin)  # fmt: skip


def _order(cell: Mapping[int, Outcome], n: int) -> tuple:
    """Complete cells first, then by mean validation loss over seeds 0..n-1 (lrexp.compare.cell_order's rule)."""
    mean = _mean(cell, n, "val")
    return (not _complete(cell, n), not math.isfinite(mean), mean if math.isfinite(mean) else math.inf)


def _complete(cell: Mapping[int, Outcome], n: int) -> bool:
    return all(s in cell and cell[s].status is Status.COMPLETED and cell[s].val is not None for s in range(n))


def _values(cell: Mapping[int, Outcome], n: int, split: str) -> dict[int, float]:
    out = {}
    for s in range(n):
        o = cell.get(s)
        v = None if o is None else (o.val if split == "val" else o.test)
        if v is not None:
            out[s] = v
    return out


def _mean(cell: Mapping[int, Outcome], n: int, split: str) -> float:
    values = list(_values(cell, n, split).values())
    return statistics.fmean(values) if values else math.nan


def _drop_reason(cell: Mapping[int, Outcome], best: Mapping[int, Outcome], n: int, limit: float, margin: float, best_label: str) -> str:
    """Why a cell is clearly worse than its group's best one on validation, or ''. Clearly worse is worse by
    more than ``limit`` standard errors of the gap between the two means, sqrt(var / n + var' / n'): the
    seeds' spread, scaled to the seeds the means rest on, so that the evidence asked for grows with them
    (at 2 seeds, 3 standard errors are 3 x the spread; at 8, 1.5 x). Unpaired, though the seeds pair the
    cells: within a schedule the LRs' validation losses share little of their seed luck (correlation about
    0.3 on digits), and a paired spread at 2 seeds rests on one difference."""
    for s in range(n):
        o = cell.get(s)
        if o is not None and o.status in (Status.DIVERGED, Status.FAILED) and best[s].status is Status.COMPLETED:
            return f"{o.status.value} on seed {s}"
    mine, theirs = list(_values(cell, n, "val").values()), list(_values(best, n, "val").values())
    if len(mine) < 2 or len(theirs) < 2:
        return ""
    gap = statistics.fmean(mine) - statistics.fmean(theirs)
    se = math.sqrt(statistics.variance(mine) / len(mine) + statistics.variance(theirs) / len(theirs))
    if gap > limit * se and gap > margin * abs(statistics.fmean(theirs)):
        times = f"{gap / se:.1f}" if se > 0 else "infinitely many"
        return (
            f"worse on validation than {best_label or 'the best cell'} by {gap:.3g} at {len(mine)} seeds, "
            f"{times} standard errors (limit {limit:g})"
        )
    return ""


def _evaluate(p: PairState, table: Table, chosen: Mapping[str, str], counts: Mapping[str, int], c: float, planned: int) -> None:
    """The pair's statistic and repeated interval at this look; the interval is intersected with its earlier
    ones while the pair compares the same two cells (a new cell is a new hypothesis: it starts afresh)."""
    cells = (chosen[p.a], chosen[p.b])
    n_seeds = min(counts[p.a], counts[p.b])
    a, b = _values(table[(p.a, cells[0])], n_seeds, "test"), _values(table[(p.b, cells[1])], n_seeds, "test")
    shared = sorted(a.keys() & b.keys())
    same_cells = cells == p.cells
    if same_cells and len(shared) == p.n:
        return  # no new data
    if not same_cells:
        p.rejected, p.decided_at, p.low, p.high = False, None, math.nan, math.nan
    diffs = [a[s] - b[s] for s in shared]
    p.cells, p.n = cells, len(diffs)
    p.mean = statistics.fmean(diffs) if diffs else math.nan
    p.wins = sum(d < 0 for d in diffs)
    if len(diffs) < 2:
        p.sd, p.t, p.low, p.high = math.nan, 0.0, math.nan, math.nan
        return
    p.sd = statistics.stdev(diffs)
    if p.sd <= 1e-12 * max(1.0, abs(p.mean)):  # every seed moved by the same amount, up to rounding
        p.sd, p.t = 0.0, (math.inf if p.mean != 0 else 0.0)
    else:
        p.t = abs(p.mean) / (p.sd / math.sqrt(len(diffs)))
    half = critical(c, planned, len(diffs)) * p.sd / math.sqrt(len(diffs))
    low, high = p.mean - half, p.mean + half
    if same_cells and math.isfinite(p.low) and max(low, p.low) <= min(high, p.high):
        low, high = max(low, p.low), min(high, p.high)
    p.low, p.high = low, high


FUTILITY_POWER = 0.1  # a pair whose chance of being decided by seeds.max is below this stops (non-binding)


def conditional_power(p: PairState, margin: float, c_last: float, n_max: int) -> float:
    """The chance that the last look (seeds.max seeds) decides the pair, given the seeds it has and were its
    difference and spread what they are now (conditional power under the current trend, Jennison and
    Turnbull 2000, ch. 10): the last mean is the n seeds' mean, already fixed, and n_max - n new ones, so it
    lies at the present mean with a spread of sd x sqrt(n_max - n) / n_max, and is decided when its interval
    (c_last x sd / sqrt(n_max) either side) lies beyond the margin or within it."""
    gap, spread = abs(p.mean), p.sd * math.sqrt(n_max - p.n) / n_max
    half = c_last * p.sd / math.sqrt(n_max)
    beyond = sp.norm.cdf((gap - margin - half) / spread) + sp.norm.cdf((-gap - margin - half) / spread)
    within = sp.norm.cdf((margin - half - gap) / spread) - sp.norm.cdf((half - margin - gap) / spread) if half < margin else 0.0
    return float(beyond + within)


def _futile(p: PairState, margin: float, c_last: float, n_max: int) -> bool:
    """Open, at least half-way to seeds.max, and unlikely to be decided by it: conditional power below
    FUTILITY_POWER. Non-binding: stopping forgoes claims and never makes one, so every claim keeps its error
    rate; a stopped pair is reported as cannot tell, with its interval. Not before half-way: the power rests
    on the spread measured so far, which at 3 seeds has 2 degrees of freedom; stopped that early, one pair in
    ten on the digits pool ended with a bound 8 times the loss itself (docs/adaptive.md, what changed)."""
    if p.n < max(3, math.ceil(n_max / 2)) or p.n >= n_max or not (math.isfinite(p.mean) and math.isfinite(p.sd) and math.isfinite(margin)):
        return False
    if p.sd == 0:
        return False
    return conditional_power(p, margin, c_last, n_max) < FUTILITY_POWER


def _decide(p: PairState, margin: float, look: int) -> None:
    """Worse: no difference rejected by the family's test and the interval beyond the margin; negligible:
    the interval within the margin; otherwise open."""
    before = p.decision
    if not (math.isfinite(p.low) and math.isfinite(margin)):
        p.decision = "open"
    elif -margin < p.low and p.high < margin:
        p.decision = "negligible"
    elif p.rejected and p.low > margin:
        p.decision = f"{p.a} worse"
    elif p.rejected and p.high < -margin:
        p.decision = f"{p.b} worse"
    else:
        p.decision = "open"
    if p.decision == "open":
        p.decided_at = None
    elif before != p.decision or p.decided_at is None:
        p.decided_at = look


# --- the comparison a report shows ------------------------------------------------------------------


def read_design(sweep_dir: Path) -> Design | None:
    """The design an adaptive sweep ran (its DESIGN_FILE), or None for any other directory."""
    path = Path(sweep_dir) / DESIGN_FILE
    if not path.is_file():
        return None
    try:
        return Design.of(json.loads(path.read_text())["design"])
    except ConfigError as e:  # a design of another lrexp (a setting since renamed): its looks cannot be redone
        raise ConfigError(
            "hydra.sweep.dir",
            str(sweep_dir),
            f"holds an adaptive sweep whose design this lrexp cannot judge ({e}): judge it with the lrexp that made it, or sweep into another directory",
        ) from None


def write_design(sweep_dir: Path, design: Design, cells: Mapping[CellKey, Sequence[str]]) -> None:
    """The design and the planned cells (with the overrides that make each), before the first round."""
    Path(sweep_dir).mkdir(parents=True, exist_ok=True)
    planned = [{"group": g, "cell": label, "overrides": list(o)} for (g, label), o in cells.items()]
    (Path(sweep_dir) / DESIGN_FILE).write_text(json.dumps({"design": design.as_node(), "cells": planned}, indent=1) + "\n")


def planned_cells(sweep_dir: Path) -> dict[CellKey, list[str]] | None:
    path = Path(sweep_dir) / DESIGN_FILE
    if not path.is_file():
        return None
    return {(c["group"], c["cell"]): list(c["overrides"]) for c in json.loads(path.read_text())["cells"]}


def judged(c: Comparison, design: Design, cells: Mapping[CellKey, Sequence[str]] | None = None) -> tuple[Comparison, Replay]:
    """The comparison judged by the design: each group at the cell its last look chose, every claim from
    the pairs' repeated intervals (the fixed protocol's Holm p-values and seeds-needed do not apply)."""
    rp = replay(table_of(c, cells), design, c.thresholds.margin, list(cells) if cells is not None else None)
    last = rp.last
    if last is None:
        return c, rp
    # The runs the design's looks used, and no others: each group's seeds up to its count at the last look
    # (a directory may hold more: runs added by hand, or a sweep made by another version of the design).
    used = [r for r in c.runs if r.seed is not None and r.seed < last.counts.get(r.value(c.group_key), 0)]
    rp.unused = len(c.runs) - len(used)
    out = compare(used or c.runs, c.group_key, c.thresholds, chosen=last.chosen)
    ranked = out.ranked
    out.design = design.method(len(last.pairs))
    out.pairs = []
    for p in last.pairs.values():
        lower, higher = (p.a, p.b) if p.mean >= 0 else (p.b, p.a)
        out.pairs.append(Pair(lower, higher, _difference(p, lower), math.nan))
    if not ranked:
        return out, rp
    ref, margin = ranked[0], out.margin_abs
    for r in ranked[1:]:
        p = last.pairs[tuple(sorted((r.group, ref.group)))]  # type: ignore[index]
        r.diff, r.p_holm, r.seeds_needed = _difference(p, r.group), math.nan, None
        d = r.diff
        if not (math.isfinite(d.low) and math.isfinite(d.high)):
            r.claim = Claim.NONE
        elif -margin < d.low and d.high < margin:
            r.claim = Claim.NEGLIGIBLE
        elif p.rejected and d.mean > 0:
            r.claim = Claim.WORSE if d.low > margin else Claim.WORSE_BY_LITTLE
        elif p.rejected and d.mean < 0:
            r.claim = Claim.BETTER
        else:
            r.claim = Claim.UNRESOLVED
    return out, rp


def _difference(p: PairState, other: str) -> stats.Difference:
    mean, low, high = p.oriented(other)
    wins = p.wins if other == p.a else p.n - p.wins
    return stats.Difference(p.n, mean, low, high, math.nan, p.sd, paired=True, wins=wins)


# --- what the report says of the design -------------------------------------------------------------


def _seeds(r: range) -> str:
    return f"seed {r.start}" if len(r) == 1 else f"seeds {r.start}-{r.stop - 1}"


def section(rp: Replay, c: Comparison) -> Section:
    """The rounds (what each launched and why, what it decided and dropped), the compute against the fixed
    design at seeds.max, and why the sweep stopped."""
    from lrexp.verdict import fmt_interval, fmt_num

    d = rp.design
    rows, bullets = [], []
    prev: Look | None = None
    for look in rp.looks:
        start = prev.seeds if prev else 0
        seeds = f"{start}" if look.seeds - start == 1 else f"{start}-{look.seeds - 1}"
        groups = sorted({g for g, _ in look.launched})
        if prev is None:
            why = f"every cell ({len(look.launched)}): seeds.min={d.seeds_min}"
        else:
            why = f"{len(look.launched)} cells of {', '.join(groups)}: open " + "; ".join(f"{a} vs {b}" for a, b in prev.needed)
        decided = []
        for a, b in look.decided:
            p = look.pairs[(a, b)]
            decided.append(f"{a} vs {b}: {p.decision} ({fmt_interval(p.mean, p.low, p.high, sign=True)}, {p.n} seeds)")
        rows.append([str(look.index), seeds, str(look.runs), why, "; ".join(decided) or "-", str(len(look.drops)) if look.drops else "-"])
        bullets += [f"{x.cell} of {x.group} dropped after round {x.look}: {x.reason}" for x in look.drops]
        prev = look
    share = rp.steps / rp.fixed_steps if rp.fixed_steps else math.nan
    paragraphs = [
        f"Design: {d.method(len(rp.last.pairs) if rp.last else 0)}; report.margin {c.thresholds.margin:g}; drop_se {d.drop_se:g}"
        + (f"; max_runs {d.max_runs}" if d.max_runs is not None else "")
        + ".",
        f"Compute: {rp.runs} runs, {rp.steps:,} optimizer steps, against {rp.fixed_runs} runs and {rp.fixed_steps:,} steps for the "
        f"fixed design (every cell at seeds.max={d.seeds_max}): {fmt_num(100 * share, 2)}% of its steps.",
    ]
    if rp.stop:
        paragraphs.append(f"Stopped after round {len(rp.looks)}: {rp.stop}.")
    if rp.unused:
        paragraphs.append(f"{rp.unused} runs of the directory lie beyond the design's looks (seeds it did not ask for): not compared.")
    if not rp.stop and rp.next_cells:
        paragraphs.append(f"Not finished: round {len(rp.looks) + 1} needs {_seeds(rp.next_seeds)} of {len(rp.next_cells)} cells.")
    last = rp.last
    if last is not None:
        still = [p for p in last.pairs.values() if p.decision == "open"]
        if still:
            bounds = [f"{p.a} vs {p.b}: cannot tell at {p.n} seeds, |gap| < {fmt_num(max(abs(p.low), abs(p.high)), 2)}" for p in still]
            paragraphs.append("Open at the end: " + "; ".join(bounds) + ".")
    return Section("Adaptive design", paragraphs, ["round", "seeds", "runs", "launched for", "decided after it", "dropped"], rows, bullets)
