"""``hydra/sweeper=adaptive``: a sweep that adds seeds and drops settings only where the verdict needs them.

    python -m lrexp -m hydra/sweeper=adaptive scheduler=cosine_full,linear,wsd optimizer.lr=1e-3,3e-3,1e-2

Every override sweeps as under Hydra's basic sweeper (``a,b,c``, ``range(...)``, a single value) and
defines the *cells*; the sweeper owns ``seed``. It launches rounds through the configured launcher (basic,
parallel, batched, submitit...): first every cell at seeds 0..seeds.min - 1, then, after each round, the
next seeds for the cells of the groups whose pairs are still open, until every pair the verdict needs is
decided, seeds.max is reached or the next round would pass max_runs. What to run next is decided by
lrexp.sequential from the run directories alone (the same reading and statistics as the report), so a
sweep killed at any point and started again with the same command and ``hydra.sweep.dir`` finds what
is on disk: finished runs are kept, unfinished ones resume (``run.resume=true``), no run trains twice.
The comparison report is rewritten after every round and at the end.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.utils import JobReturn
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

from hydra_plugins.lrexp_sweepers import rounds

log = logging.getLogger("lrexp")

GROUP_KEY = "scheduler"  # what an adaptive sweep compares
RESUME = "run.resume=true"


class AdaptiveSweeper(rounds.LaunchesRounds, Sweeper):
    def __init__(self, seeds: Any = None, params: Any = None, **settings: Any) -> None:
        super().__init__(params, seeds=dict(seeds or {}), **settings)

    def sweep(self, arguments: list[str]) -> Any:
        from lrexp.errors import ConfigError

        assert self.config is not None and self.hydra_context is not None
        try:
            plan = self.plan(arguments)
        except ConfigError as e:  # one line naming the key, before anything is written
            print(f"lrexp: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        return plan.run()

    def plan(self, arguments: Sequence[str]) -> Plan:
        from lrexp import sequential
        from lrexp.errors import ConfigError
        from lrexp.record import is_neutral

        assert self.config is not None and self.hydra_context is not None and self.launcher is not None
        design = sequential.Design.of(OmegaConf.to_container(OmegaConf.create(self.node), resolve=True))  # type: ignore[arg-type]
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        given = [f"{k}={v}" for k, v in self.params.items()] + list(arguments)
        swept: dict[str, list[str]] = {}
        fixed: dict[str, str] = {}  # key -> override; a key given twice keeps its last value, as Hydra does
        for o in parser.parse_overrides(given):
            key, text = o.get_key_element(), o.input_line or ""
            name = key.lstrip("+~")
            if name == "seed":
                raise ConfigError(
                    "seed", text.partition("=")[2], "the adaptive sweeper owns the seed: set hydra.sweeper.seeds.min/max instead"
                )
            if not o.is_sweep_override():
                swept.pop(key, None)
                fixed[key] = f"{key}={o.get_value_element_as_str()}"
                continue
            if not o.is_discrete_sweep():
                raise ConfigError(key, text.partition("=")[2], "the adaptive sweeper sweeps lists (a,b,c) and ranges, not intervals")
            if is_neutral(name):
                raise ConfigError(key, text.partition("=")[2], "does not change a run's numbers: the adaptive sweeper cannot vary it")
            fixed.pop(key, None)
            swept[key] = [str(v) for v in o.sweep_string_iterator()]
        group = next((k for k in swept if k.lstrip("+~") == GROUP_KEY), None)
        if group is None or len(set(swept[group])) < 2:
            shown = ",".join(swept[group]) if group else fixed.get(GROUP_KEY, f"{GROUP_KEY}=cosine").partition("=")[2]
            raise ConfigError(GROUP_KEY, shown, "an adaptive sweep compares schedules: list at least two (scheduler=cosine_full,linear)")
        cells = Plan.cells_of(swept, list(fixed.values()), group)
        if design.max_runs is not None and sequential.first_round(design, list(cells)) > design.max_runs:
            raise ConfigError(
                "hydra.sweeper.max_runs", design.max_runs,
                f"the first round alone needs {len(cells) * design.seeds_min} runs ({len(cells)} cells x seeds.min={design.seeds_min})",
            )  # fmt: skip
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        before_design, before_cells = sequential.read_design(sweep_dir), sequential.planned_cells(sweep_dir)
        if before_design is not None and (before_design != design or before_cells != cells):
            what = next(
                (f"hydra.sweeper.{k}={v}, not {before_design.as_node().get(k)}" for k, v in design.as_node().items() if before_design.as_node().get(k) != v),
                f"its cells were {', '.join(f'{g} {c}'.strip() for g, c in before_cells or [])}",
            )  # fmt: skip
            raise ConfigError(
                "hydra.sweep.dir",
                str(sweep_dir),
                f"holds an adaptive sweep of another design ({what}): use its command, or another directory",
            )
        return Plan(self, design, cells, sweep_dir)


class Plan:
    """One adaptive sweep: its cells (group, label) -> the overrides that make them, and its rounds."""

    def __init__(self, sweeper: AdaptiveSweeper, design: Any, cells: dict[tuple[str, str], list[str]], sweep_dir: Path) -> None:
        self.sweeper, self.design, self.cells, self.sweep_dir = sweeper, design, cells, sweep_dir

    @staticmethod
    def cells_of(swept: dict[str, list[str]], fixed: list[str], group: str) -> dict[tuple[str, str], list[str]]:
        """Every combination of the swept values, labelled as lrexp.compare labels a cell (the varying keys
        other than the group, sorted, ``key=value``)."""
        import itertools

        keys = list(swept)
        labelled = sorted(k for k in keys if k != group and len(set(swept[k])) > 1)
        out: dict[tuple[str, str], list[str]] = {}
        for values in itertools.product(*(swept[k] for k in keys)):
            chosen = dict(zip(keys, values))
            label = ", ".join(f"{k.lstrip('+~')}={chosen[k]}" for k in sorted(labelled, key=lambda k: k.lstrip("+~")))
            out[(chosen[group], label)] = [*fixed, *(f"{k}={v}" for k, v in chosen.items())]
        return out

    def run(self) -> list[Sequence[JobReturn]]:
        from omegaconf import OmegaConf

        from lrexp import sequential
        from lrexp.compare import compare
        from lrexp.protocol import recorded_thresholds
        from lrexp.runs import find_runs

        assert self.sweeper.config is not None and self.sweeper.launcher is not None
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.sweeper.config, self.sweep_dir / "multirun.yaml")
        sequential.write_design(self.sweep_dir, self.design, self.cells)
        margin = float(self.sweeper.config.report.margin)
        returns: list[Sequence[JobReturn]] = []
        tried: set[tuple[tuple[str, str], int]] = set()
        round_no = 0
        while True:
            runs = find_runs([self.sweep_dir])
            table = sequential.table_of(compare(runs, GROUP_KEY, recorded_thresholds(r.dir for r in runs)), self.cells) if runs else {}
            rp = sequential.replay(table, self.design, margin, list(self.cells))
            if round_no:
                self.report(rp)
            if rp.stop:
                log.info("adaptive sweep: stopped after %d rounds: %s (%d runs)", len(rp.looks), rp.stop, rp.runs)
                return returns
            missing = [(cell, s) for cell in rp.next_cells for s in rp.next_seeds if not self.has_result(table.get(cell, {}).get(s))]
            again = [job for job in missing if job in tried]
            if again:
                (group, label), seed = again[0]
                raise RuntimeError(
                    f"adaptive sweep: {group} {label} seed {seed} was launched and recorded no result: see its directory's log"
                )
            tried.update(missing)
            round_no += 1
            log.info(
                "adaptive sweep: round %d: %d runs, seeds %s of %d cells (%s)", len(rp.looks) + 1, len(missing),
                _seeds_text(rp.next_seeds), len(rp.next_cells), ", ".join(sorted({g for g, _ in rp.next_cells})),
            )  # fmt: skip
            returns += self.launch(missing)

    @staticmethod
    def has_result(outcome: Any) -> bool:
        from lrexp.record import Status

        return outcome is not None and outcome.status is not Status.INTERRUPTED

    def launch(self, jobs: list[tuple[tuple[str, str], int]]) -> list[Sequence[JobReturn]]:
        """New jobs get the next job numbers; a job that started before keeps its number (its directory) and
        resumes. The launcher numbers a call's jobs consecutively, so each run of consecutive numbers is one call."""
        launcher = self.sweeper.launcher
        assert launcher is not None
        known = self.known_jobs()
        numbered = sorted((known[job][0], [*self.overrides(job), RESUME]) for job in jobs if job in known)
        start = max((num for num, _ in known.values()), default=-1) + 1
        numbered += [(start + i, self.overrides(job)) for i, job in enumerate(j for j in jobs if j not in known)]
        out = rounds.launch_numbered(launcher, numbered)
        self.check_interrupted(jobs)
        return out

    def overrides(self, job: tuple[tuple[str, str], int]) -> list[str]:
        cell, seed = job
        return [*self.cells[cell], f"seed={seed}"]

    def known_jobs(self) -> dict[tuple[tuple[str, str], int], tuple[int, Path]]:
        """(cell, seed) -> (job number, directory) of every job already in the sweep (its .hydra files say both)."""
        by_overrides = {tuple(sorted(self.overrides((cell, s)))): (cell, s) for cell in self.cells for s in range(self.design.seeds_max)}
        return {by_overrides[given]: (num, d) for num, (d, given) in rounds.job_dirs(self.sweep_dir).items() if given in by_overrides}

    def check_interrupted(self, jobs: list[tuple[tuple[str, str], int]]) -> None:
        known = self.known_jobs()
        rounds.stop_if_interrupted((known[job][1] for job in jobs if job in known), "adaptive sweep")

    def report(self, rp: Any) -> None:
        from lrexp.report import write_report  # matplotlib only once a round has ended

        try:
            path = write_report([self.sweep_dir], self.sweep_dir)
        except ValueError as e:
            log.warning("no comparison report for %s: %s", self.sweep_dir, e)
            return
        log.info("adaptive sweep: after round %d: %s", len(rp.looks), path)


def _seeds_text(seeds: range) -> str:
    return str(seeds.start) if len(seeds) == 1 else f"{seeds.start}-{seeds.stop - 1}"
