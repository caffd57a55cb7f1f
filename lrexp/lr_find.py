"""The LR range test (Smith 2017): where to put a sweep's peak-LR grid.

    python -m lrexp.lr_find [OVERRIDES] [--out DIR] [--start 1e-7] [--end 10] [--steps 200]

Composes the config exactly as a run would (same groups, same overrides) and trains it as a run, through
lrexp's one training loop (so gradient clipping, accumulation, autocast and the device apply as in any
run), with an exponentially growing LR (torch's ExponentialLR, from --start to --end over --steps
optimizer steps) and every step logged; the test ends where the smoothed training loss exceeds
--divergence x its lowest value. Writes lr_find.png (loss against LR, log scale, with the steepest
descent and the minimum marked and the suggested grid shaded), lr_find.csv, lr_find.json and the run's
own directory (run/) into --out, and prints a suggested grid for +sweep=fair as an override.

It suggests and does not pick: the steepest point and the minimum of a range test move with the seed,
the smoothing and the ramp's speed (automatic picks from it are known to be unreliable), so the
suggestion is a grid that brackets the useful range, to be checked against the plot.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf, open_dict

from lrexp.errors import ConfigError


@dataclass
class RangeTest:
    lrs: list[float]  # the LR of each step taken
    losses: list[float]  # its training loss
    smoothed: list[float]  # a centred running median of the loss (no lag): what the plot and suggestions use
    steepest: float | None  # the LR where the smoothed loss falls fastest (per unit of log LR)
    minimum: float | None  # the LR of the lowest smoothed loss
    grid: list[float]  # the suggested peak LRs: half decades from steepest / 3 up to the minimum
    stopped: str  # why the test ended


# The range test is a run of lrexp's one training loop (lrexp.train): whatever a run does to a step
# (optimizer.clip_grad_norm, task.grad_accum, autocast, the device) the test does too. These keys make it
# a range test: torch's ExponentialLR from --start to --end, every step logged, evaluation only at the ends.
def ramp_overrides(start: float, steps: int) -> list[str]:
    return [
        "scheduler=exp", "scheduler.warmup=0", "scheduler.floor=0.0", f"optimizer.lr={start!r}",
        f"run.steps={steps}", "run.log_every=1", f"run.eval_every={steps}", "run.test_every=0", f"run.checkpoint_every={steps}",
        "run.progress=false", "logger=local", "logger.local.plots=false",
    ]  # fmt: skip


def run(cfg: DictConfig, choices: dict[str, str | None], run_dir: Path, divergence: float, smooth: float) -> RangeTest:
    """Train the composed range-test config as a run into ``run_dir``, then read its rows: the LR and the
    training loss of every step, until the smoothed loss blew up (``divergence`` x its lowest)."""
    from lrexp.device import free_threads
    from lrexp.loggers import RunInfo
    from lrexp.loggers.local import LocalLogger
    from lrexp.record import read_metrics
    from lrexp.train import RunSpec, train

    run_dir.mkdir(parents=True, exist_ok=True)
    info = RunInfo(run_dir=run_dir, config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True))  # type: ignore[arg-type]
    spec = RunSpec(cfg, run_dir, choices=choices, loggers=[LocalLogger(run=info, plots=False, dpi=110)])
    summary = train(spec, threads=int(cfg.run.threads) or free_threads("lr_find"))
    rows = [r for r in read_metrics(run_dir) if r.get("train_loss") is not None]
    lrs: list[float] = []
    losses: list[float] = []
    running, lowest = 0.0, math.inf  # a causal average (what is known at each step): it decides where the test ends
    stopped = f"reached --end={float(cfg.optimizer.lr) * float(cfg.scheduler.gamma) ** (len(rows) - 1):g}"
    for row in rows:
        value, lr = float(row["train_loss"]), float(row["lr"])
        if not math.isfinite(value):
            stopped = f"the loss became {value} at lr {lr:.3g}"
            break
        lrs.append(lr)
        losses.append(value)
        running = smooth * running + (1 - smooth) * value
        current = running / (1 - smooth ** len(losses))
        lowest = min(lowest, current)
        if current > divergence * lowest:
            stopped = f"the loss blew up at lr {lr:.3g} (smoothed loss > {divergence:g} x its lowest)"
            break
    else:
        if summary.status.value == "diverged":  # the loop's own stop (run.diverge_factor x the first loss)
            stopped = f"the loss blew up at lr {lrs[-1]:.3g} (above run.diverge_factor x the first loss)" if lrs else "diverged at once"
    # The causal average lags the loss by about 1 / (1 - smooth) steps, which on a fast ramp shifts every
    # feature to a higher LR. After the fact, a centred running median has no lag, and neither a spike nor
    # the blown-up tail leaks more than a few steps into its neighbours.
    smoothed = centred_median(losses, half=max(2, round(0.5 / (1 - smooth)) // 2))
    steepest, minimum = suggestions(lrs, smoothed)
    return RangeTest(lrs, losses, smoothed, steepest, minimum, grid(steepest, minimum), stopped)


def centred_median(values: Sequence[float], half: int) -> list[float]:
    """The median of each value and its ``half`` neighbours on each side (fewer at the ends)."""
    return [statistics.median(values[max(0, i - half) : i + half + 1]) for i in range(len(values))]


def suggestions(lrs: Sequence[float], smoothed: Sequence[float]) -> tuple[float | None, float | None]:
    """(steepest, minimum): the LR where the smoothed loss falls fastest per unit of log LR, before its
    minimum; and the LR of that minimum."""
    if len(lrs) < 3:
        return None, None
    low = min(range(len(smoothed)), key=lambda i: smoothed[i])
    slopes = [(smoothed[i + 1] - smoothed[i - 1]) / (math.log(lrs[i + 1]) - math.log(lrs[i - 1])) for i in range(1, max(2, low))]
    steep = 1 + min(range(len(slopes)), key=lambda i: slopes[i]) if slopes else 0
    return lrs[steep], lrs[low]


def grid(steepest: float | None, minimum: float | None) -> list[float]:
    """Half decades (1, 3, 10, 30, ...) from below steepest / 3 up to the minimum: a grid that brackets
    where a schedule's best peak LR usually lies, each schedule then tuned on it (+sweep=fair)."""
    if steepest is None or minimum is None or minimum <= steepest:
        return []
    nice = [m * 10.0**e for e in range(-10, 3) for m in (1, 3)]
    low, high = steepest / 3, minimum
    return [float(f"{v:.0e}") for v in nice if low / 1.5 <= v <= high * 1.5]


def draw(result: RangeTest, out: Path, title: str) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.8))
    ax = fig.subplots()
    ax.plot(result.lrs, result.losses, color="lightgrey", linewidth=1, label="training loss")
    ax.plot(result.lrs, result.smoothed, color="C0", linewidth=1.8, label="smoothed")
    if result.grid:
        ax.axvspan(
            result.grid[0], result.grid[-1], color="C2", alpha=0.12, label=f"suggested grid ({', '.join(f'{g:g}' for g in result.grid)})"
        )
    for lr, label, color in ((result.steepest, "steepest descent", "C1"), (result.minimum, "minimum", "C3")):
        if lr is not None:
            ax.axvline(lr, color=color, linestyle="--", label=f"{label} ({lr:.2g})")
    ax.set_xscale("log")
    if result.smoothed:  # from the lowest loss to a little above the first: the blown-up tail is off the chart
        ax.set_ylim(min(result.smoothed) * 0.95, max(result.smoothed[0], min(result.smoothed)) * 1.25)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("training loss")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(fontsize="small")
    fig.tight_layout()
    path = out / "lr_find.png"
    fig.savefig(path, dpi=110)
    return path


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrexp.lr_find", description=__doc__.splitlines()[0])
    p.add_argument("overrides", nargs="*", help="Hydra overrides, as for a run (task=tinylm optimizer=sgd ...)")
    p.add_argument("--out", type=Path, default=Path("lr_find"), help="output folder (default: ./lr_find)")
    p.add_argument("--start", type=float, default=1e-7, help="the first LR")
    p.add_argument("--end", type=float, default=10.0, help="the last LR, if the loss has not blown up before")
    p.add_argument("--steps", type=int, default=200, help="optimizer steps from --start to --end")
    p.add_argument("--divergence", type=float, default=4.0, help="stop when the smoothed loss exceeds this x its lowest")
    p.add_argument("--smooth", type=float, default=0.95, help="EMA weight of the smoothed loss, 0 <= x < 1")
    a = p.parse_args(argv)
    try:
        for name, ok, allowed in (
            ("--start", 0 < a.start < a.end, f"must be > 0 and below --end ({a.end:g})"),
            ("--steps", a.steps >= 10, "must be at least 10"),
            ("--divergence", a.divergence > 1, "must be > 1"),
            ("--smooth", 0 <= a.smooth < 1, "must be in [0, 1)"),
        ):
            if not ok:
                raise ConfigError(name, getattr(a, name[2:]), allowed)
        from hydra import compose, initialize_config_module

        import lrexp.config  # noqa: F401 - schemas and resolvers
        from lrexp.validate import validate

        with initialize_config_module("lrexp.conf", version_base="1.3"):
            cfg = compose("config", overrides=[*a.overrides, *ramp_overrides(a.start, a.steps)], return_hydra_config=True)
        choices = {g: cfg.hydra.runtime.choices.get(g) for g in ("task", "optimizer", "scheduler")}
        with open_dict(cfg):
            del cfg["hydra"]
        validate(cfg)
        # A ramp up: the one ExponentialLR lrexp's checks refuse (gamma > 1 for a schedule is a mistake; here it is the test).
        OmegaConf.update(cfg, "scheduler.gamma", (a.end / a.start) ** (1 / max(1, a.steps - 1)))
        run_dir = a.out / "run"
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError("--out", str(a.out), f"already holds a range test ({run_dir}): choose another folder")
        result = run(cfg, choices, run_dir, a.divergence, a.smooth)
    except (ConfigError, HydraException) as e:
        print(f"lrexp.lr_find: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    with open(a.out / "lr_find.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "lr", "loss", "smoothed_loss"])
        w.writerows(zip(range(len(result.lrs)), result.lrs, result.losses, result.smoothed))
    (a.out / "lr_find.json").write_text(json.dumps({"overrides": list(a.overrides), **asdict(result)}, indent=1) + "\n")
    title = f"LR range test: {choices.get('task')}, {choices.get('optimizer')}"
    print(draw(result, a.out, title))
    print(f"{result.stopped}; {len(result.lrs)} steps")
    if not result.grid:
        print("no suggestion: the loss never fell enough to find a steepest point before a minimum (try a wider --start/--end)")
        return 0
    print(f"steepest descent at lr {result.steepest:.2g}, lowest loss at lr {result.minimum:.2g}")
    print("suggested peak-LR grid (a suggestion to check against the plot, not a choice):")
    command = [
        "python -m lrexp -m +sweep=fair",
        *a.overrides,
        f"'hydra.sweeper.params.optimizer.lr={','.join(f'{g:g}' for g in result.grid)}'",
    ]
    print("  " + " ".join(command))
    return 0


if __name__ == "__main__":
    sys.exit(main())
