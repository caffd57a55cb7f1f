"""What lrexp's sweepers share: launching numbered jobs in rounds through any launcher, finding a sweep's
jobs again on disk (a sweep started again with the same ``hydra.sweep.dir``), and stopping on a job a
signal interrupted."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig


class LaunchesRounds:
    """What a sweeper that launches rounds keeps: its settings node, its swept params, and the configured
    launcher (Hydra calls ``setup`` before ``sweep``). A mixin, not a Sweeper: Hydra registers every Sweeper
    subclass it finds under hydra_plugins as a plugin of its own."""

    def __init__(self, params: Any = None, **settings: Any) -> None:
        self.node: dict[str, Any] = settings
        self.params = dict(params or {})
        self.config: DictConfig | None = None
        self.hydra_context: HydraContext | None = None
        self.launcher: Launcher | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        from hydra.core.plugins import Plugins

        self.config, self.hydra_context = config, hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(hydra_context=hydra_context, task_function=task_function, config=config)


def launch_numbered(launcher: Launcher, numbered: Sequence[tuple[int, list[str]]]) -> list[Sequence[JobReturn]]:
    """Launch each job under its own number (its directory, ``hydra.sweep.subdir``). The launcher numbers a
    call's jobs consecutively from ``initial_job_idx``, so each run of consecutive numbers is one call."""
    batches: list[tuple[int, list[list[str]]]] = []
    for num, overrides in sorted(numbered, key=lambda t: t[0]):
        if batches and batches[-1][0] + len(batches[-1][1]) == num:
            batches[-1][1].append(overrides)
        else:
            batches.append((num, [overrides]))
    out = []
    for initial, batch in batches:
        results = launcher.launch(batch, initial_job_idx=initial)
        for r in results:
            _ = r.return_value  # a job Hydra itself failed raises here, as under the basic sweeper
        out.append(results)
    return out


def job_dirs(sweep_dir: Path) -> dict[int, tuple[Path, tuple[str, ...]]]:
    """Job number -> (directory, its overrides sorted, without run.resume) of every job already in the sweep,
    as its .hydra files record them."""
    import yaml

    out = {}
    for hydra_yaml in sweep_dir.glob("**/.hydra/hydra.yaml"):
        overrides_file = hydra_yaml.parent / "overrides.yaml"
        if not overrides_file.is_file():
            continue
        given = tuple(sorted(str(o) for o in yaml.safe_load(overrides_file.read_text()) or [] if not str(o).startswith("run.resume=")))
        out[int(yaml.safe_load(hydra_yaml.read_text())["hydra"]["job"]["num"])] = (hydra_yaml.parent.parent, given)
    return out


def stop_if_interrupted(dirs: Iterable[Path], what: str) -> None:
    """A run stopped by a signal (SLURM preemption, Ctrl-C) stops the sweep: the same command continues it."""
    from lrexp.record import SUMMARY_FILE, Status, read_summary

    for d in dirs:
        if (d / SUMMARY_FILE).is_file() and read_summary(d).status is Status.INTERRUPTED:
            raise SystemExit(f"lrexp: {what} interrupted ({d} was stopped): run the same command to continue it")
