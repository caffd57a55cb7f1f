"""Replay the adaptive sweeper's policy over a pool of real runs, seeds dealt at random, hundreds of times.

    python scripts/replay_sweeper.py POOL [POOL ...] [--replays 500] [--seeds-min 2 --seeds-max 12] [--spending pocock]
    python scripts/replay_sweeper.py --null POOL [--arms 3]     # one schedule's seeds dealt into 3 "schedules"

A pool is run directories made once (any sweep: several schedules x LRs x >= seeds.max seeds). Each replay
draws seeds.max of the pool's seeds in a random order (the same for every cell: runs that share a seed
share the init and the data order) and relabels them 0, 1, ...; the sweeper's own policy
(lrexp.sequential.replay, what hydra/sweeper=adaptive calls after every round) then sees seed after seed
as it would have, and the fixed designs (lrexp.compare's protocol) see every cell at seeds.max and at
seeds.min + 1 seeds. Printed and written (--out, JSON): how many pairs each decides, how often the
adaptive verdict agrees with the fixed one at seeds.max, and the compute it used.

--null deals one schedule's runs into ``arms`` groups that share no run (arm j's seed i is real seed
perm[j x seeds.max + i]): every claim of a difference is then false, and the rate of replays with any
false claim, over every pair and every look, is the design's false-claim rate on real runs. The same
deals are judged by a fixed-n test repeated after every round (what peeking does) for comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from lrexp import sequential, stats
from lrexp.compare import Comparison, compare
from lrexp.protocol import Thresholds
from lrexp.runs import RunRecord, find_runs
from lrexp.sequential import CellKey, Design


def pool_of(paths: Sequence[Path]) -> tuple[dict[CellKey, dict[int, RunRecord]], Thresholds]:
    """The pool's runs by cell and real seed, and the report thresholds its runs recorded."""
    runs = find_runs(paths)
    c = compare(runs, "scheduler")  # what an adaptive sweep compares, even where the pool varies only the LR
    by_cell = {(cell.group, cell.label()): {r.seed: r for r in cell.runs if r.seed is not None} for cell in c.cells}
    return by_cell, c.thresholds


def dealt(by_cell: Mapping[CellKey, Mapping[int, RunRecord]], deal: Mapping[tuple[str, int], tuple[CellKey, int]]) -> list[RunRecord]:
    """Run records relabelled as a deal says: (new group, new seed) of each (pool cell, real seed)."""
    out = []
    for (group, new_seed), ((g, label), real) in deal.items():
        r = by_cell[(g, label)][real]
        summary = replace(r.summary, seed=new_seed, scheduler=group)
        out.append(RunRecord(r.dir, summary, r.rows, {**r.overrides, "scheduler": group, "seed": str(new_seed)}))
    return out


def fixed_decisions(c: Comparison) -> dict[tuple[str, str], str]:
    """The fixed protocol's decision on every pair of its family (lrexp.compare: Holm p < 0.05 and the 95%
    interval beyond the margin, or the interval within it), in the sequential design's words."""
    margin, out = c.margin_abs, {}
    for p in c.pairs:
        a, b = sorted((p.lower, p.higher))
        d = p.diff
        if not (math.isfinite(d.low) and math.isfinite(d.high)):
            out[(a, b)] = "open"
        elif -margin < d.low and d.high < margin:
            out[(a, b)] = "negligible"
        elif p.p_holm < stats.ALPHA and d.low > margin:
            out[(a, b)] = f"{p.lower} worse"
        elif p.p_holm < stats.ALPHA and d.high < -margin:
            out[(a, b)] = f"{p.higher} worse"
        else:
            out[(a, b)] = "open"
    return out


def winner(c: Comparison) -> str | None:
    return c.winner.group if c.winner else None


def replay_real(by_cell, thresholds: Thresholds, design: Design, replays: int, rng: random.Random) -> dict:
    seeds = sorted(set.intersection(*(set(v) for v in by_cell.values())))
    if len(seeds) < design.seeds_max:
        raise SystemExit(
            f"replay_sweeper.py: error: the pool has {len(seeds)} seeds in every cell; seeds.max={design.seeds_max} needs more"
        )
    rows = []
    for _ in range(replays):
        order = rng.sample(seeds, design.seeds_max)
        runs = [r for cell in by_cell for r in dealt(by_cell, {(cell[0], new): (cell, real) for new, real in enumerate(order)})]
        c_max = compare(runs, thresholds=thresholds)
        c_few = compare([r for r in runs if r.seed is not None and r.seed < design.seeds_min + 1], thresholds=thresholds)
        adaptive, rp = sequential.judged(c_max, design)
        last = rp.last
        assert last is not None
        seq = {key: p.decision for key, p in last.pairs.items()}
        fixed, few = fixed_decisions(c_max), fixed_decisions(c_few)
        decided = {k for k, v in seq.items() if v != "open"}
        rows.append(
            {
                "decided": len(decided),
                "decided_fixed_max": sum(v != "open" for v in fixed.values()),
                "decided_fixed_few": sum(v != "open" for v in few.values()),
                "decided_where_few_cannot": sum(1 for k in decided if few.get(k) == "open"),
                "contradicts": sum(1 for k in decided if fixed.get(k) not in ("open", seq[k])),
                "same_pairs": sum(seq[k] == fixed.get(k) for k in seq) / len(seq),
                "agrees": winner(adaptive) == winner(c_max) and all(fixed.get(k) in ("open", seq[k]) for k in decided),
                "winner": winner(adaptive),
                "winner_fixed": winner(c_max),
                "steps": rp.steps / rp.fixed_steps,
                "runs": rp.runs,
                "looks": len(rp.looks),
            }
        )
    return summarise(rows, len(seq))


def replay_null(by_cell, thresholds: Thresholds, design: Design, replays: int, arms: int, rng: random.Random, peeking: int) -> dict:
    groups = sorted({g for g, _ in by_cell})
    if len(groups) != 1:
        raise SystemExit(f"replay_sweeper.py: error: --null needs a pool of one schedule; this one has {', '.join(groups)}")
    labels = [label for _, label in by_cell]
    seeds = sorted(set.intersection(*(set(v) for v in by_cell.values())))
    if len(seeds) < arms * design.seeds_max:
        raise SystemExit(
            f"replay_sweeper.py: error: {arms} arms x seeds.max={design.seeds_max} need {arms * design.seeds_max} seeds; the pool has {len(seeds)}"
        )
    pooled = {label: by_cell[(groups[0], label)] for label in labels}
    rows, peeked = [], []
    for i in range(replays):
        order = rng.sample(seeds, arms * design.seeds_max)
        runs = []
        for j in range(arms):
            for label in labels:
                deal = {(f"arm{j}", i): ((groups[0], label), order[j * design.seeds_max + i]) for i in range(design.seeds_max)}
                runs += dealt({(groups[0], label): pooled[label]}, deal)
        c = compare(runs, thresholds=thresholds)
        rp = sequential.replay(sequential.table_of(c), design, thresholds.margin)  # the decisions alone: no report to build
        false_any_look = any(p.decision.endswith("worse") for look in rp.looks for p in look.pairs.values())
        last = rp.last
        assert last is not None
        false_final = any(p.rejected for p in last.pairs.values())
        if i < peeking:  # a compare() per look: the slow part, so on the first deals only
            peeked.append(
                any(peek(compare([r for r in runs if r.seed is not None and r.seed < n], thresholds=thresholds)) for n in design.looks())
            )
        rows.append(
            {
                "false_claim": false_any_look or false_final,
                "false_fixed_max": any(p.p_holm < stats.ALPHA for p in c.pairs),
                "negligible": sum(p.decision == "negligible" for p in last.pairs.values()),
                "steps": rp.steps / rp.fixed_steps,
                "looks": len(rp.looks),
            }
        )
    out = summarise(rows, arms * (arms - 1) // 2)
    if peeked:
        out["false_peeking"] = summarise([{"x": v} for v in peeked], 0)["x"] | {"replays": len(peeked)}
    return out


def peek(c: Comparison) -> bool:
    """The fixed protocol's test read after a round: any pair with Holm p < 0.05 (a claim of a difference)."""
    return any(p.p_holm < stats.ALPHA for p in c.pairs)


def summarise(rows: list[dict], pairs: int) -> dict:
    out: dict = {"replays": len(rows), "pairs": pairs}
    for key in rows[0]:
        values = [r[key] for r in rows]
        if isinstance(values[0], bool):
            k = sum(values)
            low, high = clopper_pearson(k, len(values))
            out[key] = {"rate": k / len(values), "low": low, "high": high}
        elif isinstance(values[0], int | float):
            out[key] = {"mean": statistics.fmean(values), "max": max(values), "min": min(values)}
        else:
            counts: dict = {}
            for v in values:
                counts[str(v)] = counts.get(str(v), 0) + 1
            out[key] = counts
    return out


def clopper_pearson(k: int, n: int, level: float = 0.95) -> tuple[float, float]:
    from scipy.stats import beta

    a = (1 - level) / 2
    return (0.0 if k == 0 else float(beta.ppf(a, k, n - k + 1)), 1.0 if k == n else float(beta.ppf(1 - a, k + 1, n - k)))


SNAPSHOT_FILES = ("summary.json", ".hydra/overrides.yaml", ".hydra/config.yaml")  # all a comparison reads of a run


def snapshot(paths: Sequence[Path], out: Path) -> int:
    """Copy what a comparison reads of every run (its record and its overrides, not its curves or checkpoint)
    into ``out``: a pool small enough to keep, read back by the same lrexp.runs.find_runs."""
    import shutil

    runs = find_runs(paths)
    for i, r in enumerate(runs):
        for name in SNAPSHOT_FILES:
            if (r.dir / name).is_file():
                (out / str(i) / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(r.dir / name, out / str(i) / name)
    return len(runs)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("pools", nargs="+", type=Path, help="directories of real runs (searched recursively)")
    p.add_argument("--null", action="store_true", help="deal one schedule's runs into --arms groups: every claim is false")
    p.add_argument("--arms", type=int, default=3)
    p.add_argument("--replays", type=int, default=500)
    p.add_argument("--seeds-min", type=int, default=2)
    p.add_argument("--seeds-max", type=int, default=12)
    p.add_argument("--seeds-step", type=int, default=1)
    p.add_argument("--spending", default="obrien_fleming")
    p.add_argument("--seed", type=int, default=0, help="of the deals")
    p.add_argument("--out", type=Path, help="write the summary here (JSON)")
    p.add_argument("--snapshot", type=Path, help="copy the pool's run records (no curves, no checkpoints) here, and replay nothing")
    p.add_argument("--peeking", type=int, default=100, help="--null: judge this many deals by the fixed test read after every round too")
    a = p.parse_args(argv)
    if a.snapshot:
        print(f"{snapshot(a.pools, a.snapshot)} runs copied into {a.snapshot}")
        return 0
    design = Design(seeds_min=a.seeds_min, seeds_max=a.seeds_max, seeds_step=a.seeds_step, spending=a.spending).check()
    started = time.perf_counter()
    by_cell, thresholds = pool_of(a.pools)
    rng = random.Random(a.seed)
    if a.null:
        result = replay_null(by_cell, thresholds, design, a.replays, a.arms, rng, a.peeking)
    else:
        result = replay_real(by_cell, thresholds, design, a.replays, rng)
    result |= {
        "design": design.as_node(),
        "pools": [str(x) for x in a.pools],
        "null": a.null,
        "seconds": round(time.perf_counter() - started, 1),
    }
    text = json.dumps(result, indent=1)
    print(text)
    if a.out:
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
