"""``hydra/launcher=parallel``: Hydra's joblib launcher, made to survive a worker the OS kills.

joblib's loky executor treats a worker that dies (the OOM killer, ``kill -9``) as fatal: the Parallel
call raises TerminatedWorkerError, every job still running dies with it, no queued job runs, and Hydra's
joblib launcher loses the whole sweep (and its report). loky cannot say whose worker died, so this
launcher runs the same jobs (with the same joblib settings) in rounds and narrows it down:

- a round runs every pending job in parallel, keeping each result as it arrives;
- when a worker dies, the jobs that had started and not finished (a job directory without summary.json)
  go into the next round with ``run.resume=true``, continuing from their checkpoints (from the start if
  they had none); jobs that had not started simply run; a job that finished is kept;
- a job in flight at a second death is run again on its own, in a worker of its own: if that worker dies
  too, the OS is killing this job, and its failure is recorded in its own directory (rows and checkpoint
  kept); if not, it was a bystander and it finishes.

Every job returns to Hydra, so the sweep and its report complete; failures are in the run records, where
every lrexp job records its own.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import DictConfig, OmegaConf, open_dict

from lrexp.jobs import choices_of, job_result, record_failure
from lrexp.record import SUMMARY_FILE, read_summary

log = logging.getLogger(__name__)

RESUME = "run.resume=true"


def execute(idx: int, overrides: Sequence[str], *args: Any) -> tuple[int, JobReturn]:
    """Hydra's own joblib job, tagged with its index (results arrive in completion order)."""
    from hydra_plugins.hydra_joblib_launcher import _core

    return idx, _core.execute_job(idx, overrides, *args)


try:  # an optional extra: without it, importing this module (Hydra's plugin scan does, for every command) stays silent
    from hydra_plugins.hydra_joblib_launcher.joblib_launcher import JoblibLauncher
except ImportError:
    from hydra.plugins.launcher import Launcher

    class JoblibLauncher(Launcher):  # type: ignore[no-redef]
        """Stands in for Hydra's joblib launcher where it is not installed: choosing the launcher says so."""

        def __init__(self, **_: Any) -> None:
            print("lrexp: error: hydra/launcher=parallel needs Hydra's joblib launcher: pip install 'lrexp[joblib]'", file=sys.stderr)
            raise SystemExit(2)


class ParallelLauncher(JoblibLauncher):
    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from joblib import Parallel, delayed
        from joblib.externals.loky.process_executor import TerminatedWorkerError

        from hydra_plugins.hydra_joblib_launcher import _core  # imports joblib: only when a sweep launches

        setup_globals()
        assert self.config is not None and self.task_function is not None and self.hydra_context is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        joblib_cfg = dict(self.joblib, backend="loky")
        _core.process_joblib_cfg(joblib_cfg)
        log.info(
            "Parallel launcher: %d jobs, %s", len(job_overrides), ", ".join(f"{k}={v}" for k, v in joblib_cfg.items() if v is not None)
        )
        for i, overrides in enumerate(job_overrides):
            log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(overrides)))

        pending = {initial_job_idx + i: list(o) for i, o in enumerate(job_overrides)}
        alone: dict[int, list[str]] = {}  # in flight at two deaths: run on their own
        suspects: set[int] = set()  # in flight at one death
        results: dict[int, JobReturn] = {}
        singleton_state = Singleton.get_state()

        def run(jobs: dict[int, list[str]], **settings: Any) -> Iterator[tuple[int, JobReturn]]:
            # A snapshot: joblib draws from the generator while results arrive and leave ``pending``.
            calls = (
                delayed(execute)(i, o, self.hydra_context, self.config, self.task_function, singleton_state) for i, o in list(jobs.items())
            )
            return Parallel(**settings, return_as="generator_unordered")(calls)

        while pending:
            try:
                for idx, ret in run(pending, **joblib_cfg):
                    results[idx] = ret
                    del pending[idx]
            except TerminatedWorkerError:
                for idx in list(pending):
                    job_dir = self._job_dir(idx, pending[idx])
                    if (job_dir / SUMMARY_FILE).exists():  # finished before its result came back
                        results[idx] = self._returned(idx, pending.pop(idx), job_dir)
                    elif job_dir.is_dir():  # started: continue from its checkpoint
                        pending[idx] = resumed(pending[idx])
                        if idx in suspects:
                            alone[idx] = pending.pop(idx)
                        suspects.add(idx)
                log.warning("Parallel launcher: a worker process was killed (by the OS?); %d jobs run again", len(pending) + len(alone))
        for idx, overrides in alone.items():
            try:
                # n_jobs=2 keeps the job out of this process (joblib runs n_jobs=1 in the caller).
                ((_, results[idx]),) = run({idx: overrides}, **dict(joblib_cfg, n_jobs=2))
            except TerminatedWorkerError:
                results[idx] = self._record_killed(idx, overrides)
        return [results[i] for i in sorted(results)]

    # --- a job's directory, seen from the launcher ---------------------------------------------------

    def _job_config(self, idx: int, overrides: Sequence[str]) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(cfg):
            cfg.hydra.job.num = idx
            cfg.hydra.job.id = f"{cfg.hydra.job.name}_{idx}"
        return cfg

    def _job_dir(self, idx: int, overrides: Sequence[str]) -> Path:
        cfg = self._job_config(idx, overrides)
        HydraConfig.instance().set_config(cfg)  # ${hydra:...} in the directory names resolve against this job
        return Path(str(cfg.hydra.sweep.dir)) / str(cfg.hydra.sweep.subdir)

    def _returned(self, idx: int, overrides: Sequence[str], job_dir: Path, value: Any = None) -> JobReturn:
        """What Hydra's job would have returned for a job whose record the launcher read or wrote."""
        cfg = self._job_config(idx, overrides)
        ret = JobReturn(
            overrides=list(overrides), cfg=OmegaConf.create({}), hydra_cfg=cfg, working_dir=str(job_dir), task_name=cfg.hydra.job.name
        )
        if value is None and (job_dir / SUMMARY_FILE).exists():
            value = job_result(read_summary(job_dir))  # what the job itself returns
        ret.status, ret.return_value = JobStatus.COMPLETED, value
        return ret

    def _record_killed(self, idx: int, overrides: Sequence[str]) -> JobReturn:
        """A job whose own worker was killed: its failure written where every job records its own."""
        cfg = self._job_config(idx, overrides)
        job_dir = self._job_dir(idx, overrides)
        error = (
            "its worker process was killed, twice in the sweep and once on its own (the OS: out of memory?); rows and checkpoint are kept"
        )
        job_dir.mkdir(parents=True, exist_ok=True)
        record_failure(job_dir, cfg, choices_of(cfg.hydra), error)
        log.error("Parallel launcher: job %d failed: %s", idx, error)
        return self._returned(idx, overrides, job_dir)


def resumed(overrides: Sequence[str]) -> list[str]:
    return [o for o in overrides if not o.startswith(("run.resume=", "+run.resume=", "++run.resume="))] + [RESUME]
