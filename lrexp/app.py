"""``python -m lrexp``: the Hydra entry point.

Everything that depends on Hydra's runtime lives here (the job's output directory, the launcher, the
sweep it belongs to); ``lrexp.train.train`` receives plain values. A bad config ends a single run with
one line on stderr and exit code 2; inside a multirun the job is recorded as failed in its own directory
and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

import lrexp.config  # noqa: F401 - registers the schemas and ${steps:...} before Hydra composes
from lrexp.errors import ConfigError, RunInUse, SecretInConfig, describe
from lrexp.loggers import Logger, RunInfo
from lrexp.preemption import HandedOver
from lrexp.record import CHECKPOINT_FILE, ERROR_FILE, Status, Summary, holds_run, is_neutral, write_summary, writing

log = logging.getLogger("lrexp")

# A file system that cannot take what the run writes: full, over quota, read-only, a file too large.
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)

# The config groups a run is named and grouped by (their option names, not their contents).
CHOICE_GROUPS = ("task", "optimizer", "scheduler")


def register_launchers() -> None:
    """Make ``hydra/launcher=batched`` and ``hydra/launcher=parallel`` known to Hydra in every install.

    Hydra finds plugins by walking the ``hydra_plugins`` namespace package with pkgutil, which cannot see
    into an editable install (setuptools serves it through an import hook, not a directory): from any
    other working directory Hydra would answer "Unknown plugin class". Plugins.register is Hydra's API for
    exactly this. The parallel launcher builds on Hydra's joblib launcher, an optional extra: without it,
    ``hydra/launcher=parallel`` fails as ``hydra/launcher=joblib`` would.
    """
    from importlib.util import find_spec

    from hydra.core.plugins import Plugins

    from hydra_plugins.lrexp_launchers.batched import BatchedLauncher

    Plugins.instance().register(BatchedLauncher)
    if find_spec("hydra_plugins.hydra_joblib_launcher") is not None:
        from hydra_plugins.lrexp_launchers.parallel import ParallelLauncher

        Plugins.instance().register(ParallelLauncher)


register_launchers()


@hydra.main(version_base="1.3", config_path="pkg://lrexp.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    hc = HydraConfig.get()
    multirun = hc.mode == RunMode.MULTIRUN
    try:
        with writing(Path(hc.runtime.output_dir), "hydra.sweep.dir" if multirun else "hydra.run.dir"):
            return run_job(cfg, hc)
    except RunInUse as e:
        # Another process is writing this directory: refused, touching nothing there (no failure record).
        if not multirun:
            print(f"lrexp: error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        log.error("job %s refused: %s", hc.job.num, e)
        return None


def run_job(cfg: DictConfig, hc: Any) -> float | None:
    job = HydraJob(cfg, hc)
    with job.failures():
        job.prepare()
        from lrexp.train import train  # torch is imported here, not for --help or --cfg

        summary = train(cfg, job.run_dir, choices=job.choices, loggers=job.loggers, hydra_dir=job.hydra_dir, threads=job_threads(cfg, hc))
        return job.result(summary)
    return None


class HydraJob:
    """One Hydra job as lrexp runs it: its directory, its choices, its loggers, and what its failures
    become (one line and an exit code for a single run; a record in its directory inside a sweep)."""

    def __init__(self, cfg: DictConfig, hc: Any, job_log: logging.Logger = log) -> None:
        self.cfg, self.hc, self.log = cfg, hc, job_log
        self.run_dir = Path(hc.runtime.output_dir)
        self.multirun = hc.mode == RunMode.MULTIRUN
        self.choices = {g: hc.runtime.choices.get(g) for g in CHOICE_GROUPS}
        self.held_a_run = holds_run(self.run_dir)
        self.hydra_dir = self.run_dir / hc.output_subdir if hc.output_subdir else None
        self.loggers: list[Logger] = []

    def prepare(self, concurrent: bool = False) -> None:
        """The config checked, the loggers built (they open nothing before the run starts)."""
        from lrexp.loggers import build_loggers
        from lrexp.validate import validate

        validate(self.cfg)
        self.loggers = build_loggers(self.cfg.logger, run_info(self.cfg, self.hc, self.choices, concurrent))

    @staticmethod
    def result(summary: Summary) -> float | None:
        """The value sweepers minimise (hydra-optuna-sweeper, for one): the task's validation loss."""
        return summary.final.get(summary.loss.column("val")) if summary.loss else None

    @contextlib.contextmanager
    def failures(self) -> Iterator[None]:
        """What an exception in the block becomes."""
        run_dir, cfg, choices, job_log = self.run_dir, self.cfg, self.choices, self.log
        try:
            yield
        except HandedOver as e:
            # The checkpoint and the interrupted record are written; the launcher ends the job its own way.
            raise e.error from None
        except RunInUse as e:
            # Another process is writing this directory: refused, touching nothing there (no failure record).
            if not self.multirun:
                print(f"lrexp: error: {e}", file=sys.stderr)
                raise SystemExit(2) from None
            job_log.error("job %s refused: %s", self.hc.job.num, e)
        except ConfigError as e:
            if isinstance(e, SecretInConfig) and self.hydra_dir is not None:
                scrub(self.hydra_dir, e.secret)
            abort(self.loggers, str(e))
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            # A refused re-run must not touch the run it refused; anything else records its failure.
            if not self.held_a_run:
                record_failure(run_dir, cfg, choices, str(e))
            if not self.multirun:
                print(f"lrexp: error: {e}", file=sys.stderr)
                raise SystemExit(2) from None
            job_log.error("job %s failed: %s", self.hc.job.num, e)
        except OSError as e:
            if e.errno not in STORAGE_ERRORS:
                raise
            # The disk filled up (or went read-only) under the run: no traceback, the cause in one line.
            # What was written whole is kept: every flushed row, the last checkpoint (record.replacing).
            abort(self.loggers, describe(e))
            kept = "the last checkpoint and every row written" if (run_dir / CHECKPOINT_FILE).exists() else "every row written"
            message = f"{e.filename or run_dir}: {e.strerror}; {kept} are kept in {run_dir} (make room, then run.resume=true)"
            try:
                record_failure(run_dir, cfg, choices, message)
            except OSError:
                pass  # the disk is still full: the record says what it held before
            if not self.multirun:
                print(f"lrexp: error: {message}", file=sys.stderr)
                raise SystemExit(1) from None
            job_log.error("job %s failed: %s", self.hc.job.num, message)
        except Exception as e:
            abort(self.loggers, describe(e))
            record_failure(run_dir, cfg, choices, describe(e), traceback.format_exc())
            if not self.multirun:
                raise
            job_log.exception("job %s failed; the sweep goes on (traceback in %s)", self.hc.job.num, run_dir / ERROR_FILE)


def run_together(jobs: Sequence[tuple[DictConfig, Any, logging.Logger]], *, progress: bool = True) -> list[float | None]:
    """Jobs of one sweep trained together in this process (hydra/launcher=batched): each checked, built,
    recorded and failing exactly as alone (HydraJob), their steps computed as one (lrexp.batched). If the
    task cannot be batched, or fewer than two jobs are left to batch, they train one after another."""
    from lrexp.batched import CannotBatch, Job, build_batch, train_together
    from lrexp.train import train

    hydra_jobs = [HydraJob(cfg, hc, job_log) for cfg, hc, job_log in jobs]
    results: list[float | None] = [None] * len(hydra_jobs)
    with contextlib.ExitStack() as locks:
        ready: list[int] = []
        for i, job in enumerate(hydra_jobs):
            with job.failures():
                locks.enter_context(writing(job.run_dir, "hydra.sweep.dir"))
                job.prepare(concurrent=True)
                ready.append(i)
        specs = [Job(j.cfg, j.run_dir, j.choices, j.loggers, j.hydra_dir, j.log) for j in (hydra_jobs[i] for i in ready)]
        threads = job_threads(hydra_jobs[0].cfg, hydra_jobs[0].hc)
        try:
            batch, built = build_batch(specs, threads=threads) if len(specs) > 1 else (None, [])
        except CannotBatch as e:
            log.warning("these %d jobs cannot train as one batch (%s): they train one after another", len(specs), e)
            batch, built = None, []
        if batch is None:
            for i in ready:
                job = hydra_jobs[i]
                with job.failures():
                    summary = train(
                        job.cfg, job.run_dir, choices=job.choices, loggers=job.loggers, hydra_dir=job.hydra_dir, threads=threads
                    )
                    results[i] = job.result(summary)
            return results
        in_batch = []
        for i, run in zip(ready, built):
            if isinstance(run, BaseException):  # could not be built: its own failure, the others go on
                with hydra_jobs[i].failures():
                    raise run
            else:
                in_batch.append(i)
        try:
            summaries = train_together(batch, progress=progress)
        except Exception as e:  # the batch as a whole failed: every job in it records it
            for i in in_batch:
                with hydra_jobs[i].failures():
                    raise e
            return results
        for i, summary in zip(in_batch, summaries):
            results[i] = hydra_jobs[i].result(summary)
    return results


def abort(loggers: list[Logger], error: str) -> None:
    for logger in loggers:
        logger.abort(error)


def scrub(hydra_dir: Path, secret: str) -> None:
    """Replace a refused secret in the config files Hydra saved for this job (a ``+key=SECRET`` override)."""
    for path in hydra_dir.glob("*.yaml"):
        text = path.read_text()
        if secret and secret in text:
            path.write_text(text.replace(secret, "***"))


def record_failure(run_dir: Path, cfg: DictConfig, choices: dict[str, Any], error: str, trace: str = "") -> None:
    write_summary(run_dir, Summary(status=Status.FAILED, error=error, **choices, seed=cfg.get("seed"), steps=cfg.run.get("steps")))
    if trace:
        (run_dir / ERROR_FILE).write_text(trace)


def job_threads(cfg: DictConfig, hc: Any) -> int:
    """Torch threads for this job: run.threads if set; else split the cores between parallel jobs.

    On small models, N single-thread processes side by side beat one N-thread process (README,
    Performance), so the joblib launcher gives each job cores // n_jobs threads. Cluster jobs get the
    CPUs they were allocated, not the whole node's core count torch would assume. 0 = torch's default.
    """
    if cfg.run.threads > 0:
        return cfg.run.threads
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    launcher = hc.launcher if "launcher" in hc else {}
    target = str(launcher.get("_target_", "")).lower()
    if "n_jobs" in launcher:  # joblib, and lrexp's parallel launcher built on it
        n_jobs = int(launcher.get("n_jobs") or -1)
        parallel = n_jobs if n_jobs > 0 else max(1, cores + 1 + n_jobs)  # joblib: -1 = all cores
        return max(1, cores // parallel)
    if "submitit" in target and launcher.get("cpus_per_task"):
        return int(launcher["cpus_per_task"])
    if os.environ.get("SLURM_CPUS_PER_TASK", "").isdigit():
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    return 0


def run_info(cfg: DictConfig, hc: Any, choices: dict[str, Any], concurrent: bool = False) -> RunInfo:
    """How a run is identified to experiment trackers: name, group (its sweep), kind, config."""
    # The name: the schedule and seed, then the overrides that say what the run *is* (not the
    # schedule and seed again, nor what leaves its numbers unchanged).
    overrides = [
        o for o in hc.overrides.task if not o.lstrip("+~").startswith(("scheduler", "seed")) and not is_neutral(o.split("=", 1)[0])
    ]
    name = "-".join(str(p) for p in (choices.get("scheduler"), f"seed{cfg.seed}") if p)
    multirun = hc.mode == RunMode.MULTIRUN
    return RunInfo(
        run_dir=Path(hc.runtime.output_dir),
        config=OmegaConf.to_container(cfg, resolve=True, enum_to_str=True),  # type: ignore[arg-type]
        name=" ".join([name, *overrides]),
        group=str(hc.sweep.dir) if multirun else None,
        job_type=choices.get("scheduler"),
        # The option names (cosine, adamw, digits): the config holds only their contents, and a tracker
        # groups runs by schedule *name*.
        choices={k: v for k, v in choices.items() if v},
        tags=[t for t in (choices.get(g) for g in CHOICE_GROUPS) if t],
        job_num=hc.job.get("num") if multirun else None,
        concurrent=concurrent,
    )
