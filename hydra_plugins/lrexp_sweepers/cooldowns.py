"""``hydra/sweeper=cooldowns``: every budget's cooldowns branched from one constant-LR trunk (Hägele et al. 2024).

    python -m lrexp -m +sweep=cooldowns hydra/launcher=parallel
    python -m lrexp -m hydra/sweeper=cooldowns 'hydra.sweeper.budgets=[200,400,800]' seed=0,1,2

Every override sweeps as under Hydra's basic sweeper and defines the *arms* (``seed=0,1,2``,
``optimizer.lr=...``): each arm gets one trunk, ``hydra.sweeper.trunk`` (warm-up, then the peak LR) trained
to the longest budget, keeping a checkpoint at every branch point. Then, for every budget B, cooldown
fraction f and decay shape, a branch: ``hydra.sweeper.branch`` (warmup-stable-decay) with run.steps=B and
a decay over the last round(f x B) steps, started from the trunk's checkpoint at B - round(f x B)
(``run.branch_from``/``run.branch_step``: lrexp.branch checks it is exactly the run it would be from step 0).

Two rounds through the configured launcher (basic, parallel, batched, submitit_local, submitit_slurm): the
trunks (and, with ``from_scratch``, every branch's twin trained from step 0), then the branches. So no
branch waits inside a job: its trunk's checkpoints are on disk when it starts, under any launcher. Killed
and started again with the same command and ``hydra.sweep.dir``, a finished job is kept, an unfinished
one resumes (``run.resume=true``), and no run is trained twice. The comparison report, with its loss-vs-
budget section (lrexp.cooldowns), is written when the sweep ends.
"""

import itertools
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.plugins.sweeper import Sweeper

from hydra_plugins.lrexp_sweepers import rounds

log = logging.getLogger("lrexp")

RESUME = "run.resume=true"
# What the sweeper sets in every job: an override of these would break the trunk/branch design.
OWNED = ("scheduler", "run.steps", "run.branch_from", "run.branch_step", "run.keep_checkpoints_at")


# No `from __future__ import annotations` here: Hydra imports plugin modules without registering them in
# sys.modules, where dataclasses cannot resolve string annotations.
@dataclass(frozen=True)
class Design:
    budgets: tuple[int, ...]
    cooldowns: tuple[float, ...]
    shapes: tuple[str, ...]
    warmup_steps: int
    trunk: str
    branch: str
    from_scratch: bool

    @classmethod
    def of(cls, node: dict[str, Any]) -> "Design":
        from lrexp.errors import ConfigError

        def listed(key: str, ok: Any, rule: str) -> tuple[Any, ...]:
            values = node.get(key)
            if not isinstance(values, (list, tuple)) or not values or not all(ok(v) for v in values):
                raise ConfigError(f"hydra.sweeper.{key}", values, rule)
            return tuple(values)

        budgets = listed(
            "budgets", lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 1, "must list run lengths (optimizer steps) > 1"
        )
        cooldowns = listed("cooldowns", lambda v: isinstance(v, (int, float)) and 0 < v < 1, "must list fractions of a budget in (0, 1)")
        shapes = listed("shapes", lambda v: v in SHAPES, f"must list decay shapes of {', '.join(SHAPES)}")
        warmup = node.get("warmup_steps")
        if not (isinstance(warmup, int) and not isinstance(warmup, bool) and 0 <= warmup):
            raise ConfigError("hydra.sweeper.warmup_steps", warmup, "must be a number of steps >= 0, shared by the trunk and every branch")
        d = cls(tuple(sorted(set(budgets))), tuple(sorted(set(cooldowns))), tuple(dict.fromkeys(shapes)), warmup,
                str(node.get("trunk")), str(node.get("branch")), bool(node.get("from_scratch")))  # fmt: skip
        for b in d.budgets:
            for f in d.cooldowns:
                if not warmup < d.branch_point(b, f) < b:
                    raise ConfigError(
                        "hydra.sweeper.cooldowns",
                        f,
                        f"a cooldown of {d.decay(b, f)} steps at budget {b} leaves no stable phase after warmup_steps={warmup}",
                    )
        return d

    @staticmethod
    def decay(budget: int, fraction: float) -> int:
        return max(1, round(fraction * budget))

    def branch_point(self, budget: int, fraction: float) -> int:
        return budget - self.decay(budget, fraction)

    @property
    def trunk_steps(self) -> int:
        return max(self.budgets)

    def kept(self) -> list[int]:
        return sorted({self.branch_point(b, f) for b in self.budgets for f in self.cooldowns})

    def trunk_overrides(self) -> list[str]:
        return [
            f"scheduler={self.trunk}", f"scheduler.num_warmup_steps={self.warmup_steps}", f"run.steps={self.trunk_steps}",
            f"run.keep_checkpoints_at=[{','.join(map(str, self.kept()))}]",
        ]  # fmt: skip

    def branch_overrides(self, budget: int, fraction: float, shape: str) -> list[str]:
        return [
            f"scheduler={self.branch}", f"scheduler.num_warmup_steps={self.warmup_steps}", f"run.steps={budget}",
            f"scheduler.num_decay_steps={self.decay(budget, fraction)}", f"scheduler.decay_type={shape}",
        ]  # fmt: skip

    def branches(self) -> list[tuple[int, float, str]]:
        return list(itertools.product(self.budgets, self.cooldowns, self.shapes))


SHAPES = ("linear", "1-sqrt", "cosine")  # transformers.get_wsd_schedule's decay_type


class CooldownSweeper(rounds.LaunchesRounds, Sweeper):
    def sweep(self, arguments: list[str]) -> Any:
        from omegaconf import OmegaConf

        from lrexp.errors import ConfigError

        assert self.config is not None
        try:
            design = Design.of(OmegaConf.to_container(OmegaConf.create(self.node), resolve=True))  # type: ignore[arg-type]
            arms = self.arms(arguments)
        except ConfigError as e:  # one line naming the key, before anything is written
            print(f"lrexp: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        jobs = Jobs(self.launcher, sweep_dir)
        # Round 1: the trunks (and the from-scratch twins, which need no trunk).
        first = [[*arm, *design.trunk_overrides()] for arm in arms]
        if design.from_scratch:
            first += [[*arm, *design.branch_overrides(*b)] for arm in arms for b in design.branches()]
        log.info("cooldown sweep: %d trunks of %d steps, kept at steps %s", len(arms), design.trunk_steps, design.kept())
        returns = [jobs.launch(first, 0)]
        trunks = [jobs.dir_of(i) for i in range(len(arms))]
        # Round 2: the branches, each from its arm's trunk.
        second = [
            [*arm, *design.branch_overrides(*b), f"run.branch_from={trunk}", f"run.branch_step={design.branch_point(b[0], b[1])}"]
            for arm, trunk in zip(arms, trunks)
            for b in design.branches()
        ]
        log.info("cooldown sweep: %d branches (%d budgets x %d cooldowns x %d shapes per trunk)",
                 len(second), len(design.budgets), len(design.cooldowns), len(design.shapes))  # fmt: skip
        returns.append(jobs.launch(second, len(first)))
        jobs.check_interrupted()
        return returns

    def arms(self, arguments: Sequence[str]) -> list[list[str]]:
        """Every combination of the swept overrides, as the basic sweeper expands them."""
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper

        from lrexp.errors import ConfigError

        assert self.hydra_context is not None
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        overrides = parser.parse_overrides(given)
        for o in overrides:
            key = o.get_key_element().lstrip("+~")
            owned = next((k for k in OWNED if key == k or key.startswith(k + ".")), None)
            if owned is not None:
                raise ConfigError(key, (o.input_line or "").partition("=")[2], "the cooldown sweeper sets it in every job: set hydra.sweeper.budgets, cooldowns, shapes, warmup_steps, trunk or branch instead")  # fmt: skip
        (batch,) = BasicSweeper.split_arguments(overrides, None)
        return batch


class Jobs:
    """The sweep's jobs by number: launched in order, each number its directory; a finished one is not launched again."""

    def __init__(self, launcher: Launcher | None, sweep_dir: Path) -> None:
        assert launcher is not None
        self.launcher, self.sweep_dir = launcher, sweep_dir

    def dir_of(self, num: int) -> Path:
        return rounds.job_dirs(self.sweep_dir)[num][0].resolve()

    def launch(self, jobs: list[list[str]], start: int) -> list[Sequence[JobReturn]]:
        """Jobs ``start``, ``start + 1``, ...; those already finished are skipped, the others (re)started with
        run.resume=true."""
        from lrexp.record import SUMMARY_FILE, Status, read_summary

        known = rounds.job_dirs(self.sweep_dir)

        def finished(num: int) -> bool:
            d = known[num][0] if num in known else None
            return d is not None and (d / SUMMARY_FILE).is_file() and read_summary(d).status in (Status.COMPLETED, Status.DIVERGED)

        todo = [(start + i, [*o, RESUME]) for i, o in enumerate(jobs) if not finished(start + i)]
        return rounds.launch_numbered(self.launcher, todo)

    def check_interrupted(self) -> None:
        rounds.stop_if_interrupted((d for d, _ in rounds.job_dirs(self.sweep_dir).values()), "cooldown sweep")
