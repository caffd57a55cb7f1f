"""How often does a comparison claim a difference that is not there? Measured on real runs.

    python scripts/false_claims.py                  # runs digits cosine_full x 20 seeds (300 steps), then measures
    python scripts/false_claims.py --sweep DIR      # measures on runs already on disk (one schedule, many seeds)

The runs of one schedule are dealt at random into ARMS "schedules" x SEEDS "seeds", DRAWS times; every
arm has the same distribution and the pairing means nothing, so every claim of a difference is false.
Each run keeps its own validation and test numbers (a run lucky on one is often lucky on the other),
so choosing a reference on either split is a selection, as in a real sweep. Printed, for each rule,
the share of draws with at least one false claim (a winner included):

- lrexp's protocol (lrexp.compare): reference chosen on validation, every pair Holm-corrected, a gap
  counted only beyond report.margin;
- the reference chosen on validation, Holm over its ARMS - 1 comparisons only;
- the reference chosen on test, Holm over its ARMS - 1 comparisons (lrexp before issue 19).
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from lrexp import stats
from lrexp.compare import Claim, Comparison, compare
from lrexp.protocol import recorded_thresholds
from lrexp.runs import RunRecord, find_runs

DIFFERENCE = (Claim.WORSE, Claim.WORSE_BY_LITTLE, Claim.BETTER)


def deal(runs: list[RunRecord], arms: int, seeds: int, rng: random.Random) -> list[RunRecord]:
    dealt = rng.sample(runs, arms * seeds)
    return [
        dataclasses.replace(
            r, summary=dataclasses.replace(r.summary, seed=i % seeds), overrides={"scheduler": f"arm{i // seeds}", "seed": str(i % seeds)}
        )
        for i, r in enumerate(dealt)
    ]


def against_one_reference(c: Comparison, split: str) -> bool:
    """A claim under the rule 'the best mean on ``split`` is the reference; Holm over the others vs it'."""
    ranked = c.ranked
    reference = min(ranked, key=lambda r: r.cell.stat(c.loss.column(split)).mean or 0.0)
    p = [stats.difference(r.values, reference.values).p for r in ranked if r is not reference]
    return any(q < stats.ALPHA for q in stats.holm(p))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sweep", type=Path, help="runs of one schedule over many seeds (default: run 20 seeds of digits cosine_full)")
    p.add_argument("--arms", type=int, default=4)
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--draws", type=int, default=1000)
    a = p.parse_args()
    sweep = a.sweep
    if sweep is None:
        sweep = Path(tempfile.mkdtemp(prefix="lrexp-false-claims-")) / "sweep"
        n = a.arms * a.seeds
        command = [sys.executable, "-m", "lrexp", "-m", "scheduler=cosine_full", f"seed=range({n})", "run.steps=300"]
        command += ["logger.local.plots=false", "run.progress=false", "hydra/launcher=batched", f"hydra.sweep.dir={sweep}"]
        subprocess.run(command, check=True, capture_output=True)
    runs = [r for r in find_runs([sweep]) if r.status.has_result]
    if len(runs) < a.arms * a.seeds:
        raise SystemExit(f"false_claims.py: error: --sweep={sweep}: {len(runs)} runs, fewer than --arms x --seeds")
    thresholds = recorded_thresholds(r.dir for r in runs)
    rng = random.Random(0)
    counts = {"protocol": 0, "validation reference": 0, "test reference": 0}
    for _ in range(a.draws):
        c = compare(deal(runs, a.arms, a.seeds, rng), thresholds=thresholds)
        counts["protocol"] += c.winner is not None or any(r.claim in DIFFERENCE for r in c.results)
        counts["validation reference"] += against_one_reference(c, "val")
        counts["test reference"] += against_one_reference(c, "test")
    val, test = ([r.summary.final[f"{s}_loss"] for r in runs] for s in ("val", "test"))
    print(f"{len(runs)} runs in {sweep}: final test loss {statistics.fmean(test):.4g} (seed sd {statistics.stdev(test):.2g}); ", end="")
    print(f"correlation of validation and test loss across runs {statistics.correlation(val, test):.2f}")
    print(f"{a.draws} draws of {a.arms} arms x {a.seeds} seeds; share of draws with a false claim:")
    for rule, n in counts.items():
        print(f"  {rule:<22} {n / a.draws:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
