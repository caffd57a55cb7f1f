"""How a comparison judges: the protocol every report follows, word for word, and the report.* settings
that must be fixed before a sweep (the margin below which a gap is negligible, the steps-to-target
target). Each run records the settings it was launched with (its .hydra/config.yaml), so a report
rebuilt later judges as announced. Cheap to import (no scipy, no torch): the config checks use it too.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lrexp.errors import ConfigError
from lrexp.record import is_finite_number

# The comparison protocol, word for word as lrexp carries it out (docs/reading-a-verdict.md quotes it; a test keeps
# the two equal). The margin and the target are the report.* settings of the runs (conf/config.yaml).
PROTOCOL = (
    "Validation chooses, test reports. Each group is taken at its best setting by mean final validation loss "
    "and the groups are ranked by that same validation number; the best on validation is the reference. "
    "Every number in the table and the verdict is on the held-out test split, which chose nothing. "
    "Runs that share a seed share the initialisation and the data order, so every difference is taken seed "
    "by seed (paired; Welch's unpaired test where two groups share fewer than two seeds) with its 95% t "
    "interval. The family of comparisons is fixed before any number is seen: every pair of ranked groups, "
    "Holm-corrected together. A group is worse than the reference when that correction leaves p < 0.05 and "
    "the whole 95% interval of its difference lies beyond the margin (report.margin, a fraction of the "
    "reference's loss fixed before the sweep); a difference whose interval lies within the margin is "
    "negligible. A winner is named only when every other group is worse; otherwise the verdict says which "
    "groups cannot be told apart, which differ negligibly, and about how many seeds would resolve the rest."
)

# An adaptive sweep's protocol (hydra/sweeper=adaptive, lrexp.sequential), word for word as carried out;
# docs/adaptive.md quotes it and a test keeps the two equal.
SEQUENTIAL_PROTOCOL = (
    "Validation chooses, test reports, and the design decides when to stop. The sweep runs in rounds: every "
    "cell at seeds.min seeds, then the next seeds for the cells of schedules whose comparisons are still open, "
    "until every pair the verdict needs is decided, seeds.max is reached or the run budget ends. After each "
    "round every schedule is taken at its best setting by mean final validation loss among the settings not "
    "dropped; a setting is dropped when a run of it diverged or failed on a seed where the schedule's best "
    "setting trained, or when its mean validation loss is worse than the best setting's by more than "
    "drop_se standard errors of the gap (the seeds' spread scaled to the seeds the two means rest on) and by "
    "more than the margin. No run is stopped early: every decision "
    "uses final values. Each pair of schedules is compared seed by seed on the held-out test split. Whether "
    "they differ at all is a group-sequential paired t test, its boundaries for the planned rounds set by "
    "Lan-DeMets alpha spending and computed on the t scale; the family of every pair of schedules, fixed "
    "before the first run, is corrected by Holm's step-down made sequential (a pair not yet rejected is tested "
    "at 0.05 divided by the pairs not yet rejected, at this and every later round), so that the chance of any "
    "false claim of a difference, over every pair and every round, is at most 0.05. By how much is a repeated "
    "95% confidence interval per pair (the paired mean difference plus or minus the round's boundary times its "
    "standard error), which holds at every round at once; while a pair compares the same two settings its "
    "interval is the intersection of its rounds' intervals. The margin is report.margin, a fraction of the "
    "reference's loss fixed before the sweep. A pair is decided when its interval lies within the margin "
    "(negligible), or when its difference is rejected and its interval lies beyond the margin (one schedule "
    "is worse); a schedule "
    "decided worse than another, or without a complete setting, no longer needs its other pairs, and a pair "
    "with half of seeds.max or more whose chance of being decided by seeds.max, given its seeds so far and "
    "were its difference and spread what they are now, is below 10% stops (futility: it forgoes claims and "
    "never makes one). A winner is named only when every other schedule is worse than the best on validation; "
    "a pair still open at the end is reported as cannot tell, with the largest gap its interval allows."
)


@dataclass(frozen=True)
class Thresholds:
    """How a comparison judges: the report.* settings (conf/config.yaml says what each means and holds
    the defaults), fixed before the sweep: each run records the ones it was launched with."""

    margin: float  # a gap below this fraction of the reference's loss is negligible
    target: float | None  # steps to target: this validation loss (None: derived from the reference)
    target_relax: float  # ... the reference's median final validation loss made this fraction worse

    @classmethod
    def of(cls, node: Mapping[str, Any]) -> Thresholds:
        fractions = {}
        for key in ("margin", "target_relax"):
            value: Any = node.get(key)
            if not (is_finite_number(value) and 0 <= value < 1):
                raise ConfigError(f"report.{key}", value, "must be a fraction in [0, 1) (of the reference's loss)")
            fractions[key] = float(value)
        target = node.get("target")
        if target is not None and not is_finite_number(target):
            raise ConfigError("report.target", target, "must be a number (a validation loss), or null")
        return cls(fractions["margin"], None if target is None else float(target), fractions["target_relax"])


@functools.lru_cache(maxsize=1)
def default_thresholds() -> Thresholds:
    """lrexp's own report.* defaults, from the config every run composes."""
    from importlib.resources import files

    return Thresholds.of(yaml.safe_load(files("lrexp.conf").joinpath("config.yaml").read_text())["report"])


def recorded_thresholds(run_dirs: Iterable[Path]) -> Thresholds:
    """The report.* settings the runs were launched with (each run's .hydra/config.yaml); lrexp's
    defaults for runs that recorded none. Runs that disagree are refused: pass the setting explicitly."""
    nodes = [node for node in (read_config(d).get("report") for d in run_dirs) if node]
    if not nodes:
        return default_thresholds()
    settings = {Thresholds.of(node) for node in nodes}
    if len(settings) > 1:
        raise ConfigError(
            "report",
            "; ".join(f"margin={s.margin:g} target={s.target} target_relax={s.target_relax:g}" for s in settings),
            "the runs were launched with different report settings: choose with --margin, --target, --target-relax",
        )
    return settings.pop()


def read_config(run_dir: Path) -> dict[str, Any]:
    """The run's composed config as Hydra saved it (.hydra/config.yaml), or {} for a run made elsewhere."""
    path = run_dir / ".hydra" / "config.yaml"
    # libyaml's loader where PyYAML has it: a report reads one config per run (10 ms each in pure Python).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return (yaml.load(path.read_text(), Loader=loader) or {}) if path.is_file() else {}
