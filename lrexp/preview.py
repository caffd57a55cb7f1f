"""LR curves without training, composed from the same config groups and overrides as a run.

    python -m lrexp.preview                                  # the article's five schedules
    python -m lrexp.preview experiment=article               # ... at the article's exact settings
    python -m lrexp.preview scheduler=cosine,wsd run.steps=600 --out curves

Writes one figure per schedule (the article's conventions: title, grid, legend, dashed red lines at
warm-up end and milestones, each kind labelled once), ``overlay.png`` with every curve, and ``lr.csv``
(step, then one column per schedule). The schedulers are the real objects a run would build, stepped
once per optimizer step; only metric-driven ones (ReduceLROnPlateau) cannot be previewed.
"""

from __future__ import annotations

import argparse
import csv
import sys
from collections.abc import Sequence
from pathlib import Path

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig

from lrexp.errors import ConfigError

ARTICLE_FIVE = "scheduler=exp,cosine,step,poly_warmup,multistep"


def expand(overrides: Sequence[str]) -> list[list[str]]:
    """Sweep syntax (a,b,c; range(); glob()) expanded into one override list per combination, by Hydra."""
    if not any(o.split("=", 1)[0].lstrip("+~") == "scheduler" for o in overrides):
        overrides = [ARTICLE_FIVE, *overrides]
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    (batch,) = BasicSweeper.split_arguments(parsed, max_batch_size=None)
    return [list(combo) for combo in batch]


def compose_one(overrides: list[str]) -> tuple[DictConfig, dict[str, str]]:
    """The run config for these overrides (inside ``initialize_config_module``) and its group choices."""
    from hydra import compose

    cfg = compose("config", overrides=overrides, return_hydra_config=True)
    return cfg, dict(cfg.hydra.runtime.choices)


def label_of(overrides: list[str], choices: dict[str, str], varying: list[str]) -> str:
    extra = [o for o in overrides if o.split("=", 1)[0] in varying and not o.startswith("scheduler=")]
    return " ".join([choices["scheduler"], *extra])


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrexp.preview", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("preview"), help="output folder (default: ./preview)")
    p.add_argument("--dpi", type=int, default=110)
    p.add_argument("overrides", nargs="*", help="Hydra overrides, sweep syntax allowed (scheduler=a,b)")
    a = p.parse_args(argv)
    try:
        combos = expand(a.overrides)
        varying = [
            k for k in {o.split("=", 1)[0] for c in combos for o in c} if len({o for c in combos for o in c if o.startswith(k + "=")}) > 1
        ]
        curves, skipped = [], []
        from hydra import initialize_config_module

        import lrexp.config  # noqa: F401 - schemas and ${steps:...}
        from lrexp.build import lr_sequence
        from lrexp.schedule_spec import ScheduleSpec
        from lrexp.validate import validate

        with initialize_config_module("lrexp.conf", version_base="1.3"):
            for overrides in combos:
                cfg, choices = compose_one(overrides)
                validate(cfg)
                spec = ScheduleSpec.of(cfg.scheduler)
                lrs = lr_sequence(spec, cfg.optimizer, cfg.run.steps)
                label = label_of(overrides, choices, varying)
                if lrs is None:
                    skipped.append(label)
                    continue
                curves.append((label, spec, lrs, cfg.run.steps))
    except (ConfigError, HydraException) as e:
        print(f"lrexp.preview: error: {str(e).splitlines()[0]}", file=sys.stderr)
        return 2
    for label in skipped:
        print(f"{label}: metric-driven (stepped with the validation loss): needs a training run to draw", file=sys.stderr)
    if curves:
        for path in draw(curves, a.out, a.dpi):
            print(path)
    return 0


def draw(curves, out: Path, dpi: int) -> list[Path]:
    from matplotlib.figure import Figure

    from lrexp.plots import draw_lr, schedule_title

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for label, spec, lrs, steps in curves:
        fig = Figure(figsize=(8, 4.5))
        title = schedule_title(label, spec.target)
        draw_lr(fig.subplots(), {"learning rate": (range(steps), lrs)}, spec.markers(steps), title=title)
        fig.tight_layout()
        paths.append(out / f"{label.replace(' ', '_').replace('/', '-')}.png")
        fig.savefig(paths[-1], dpi=dpi)
    fig = Figure(figsize=(9, 5))
    draw_lr(fig.subplots(), {label: (range(steps), lrs) for label, _, lrs, steps in curves}, title="learning rate schedules")
    fig.tight_layout()
    paths.append(out / "overlay.png")
    fig.savefig(paths[-1], dpi=dpi)

    longest = max(steps for *_, steps in curves)
    with open(out / "lr.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", *(f"lr/{label}" for label, *_ in curves)])  # a schedule may be called "step"
        for s in range(longest):
            w.writerow([s, *(lrs[s] if s < len(lrs) else "" for _, _, lrs, _ in curves)])
    paths.append(out / "lr.csv")
    return paths


if __name__ == "__main__":
    sys.exit(main())
