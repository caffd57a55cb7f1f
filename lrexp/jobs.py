"""Hydra jobs as lrexp runs them: a job's directory, choices, loggers and threads, and what its failures
become. Used by the entry point (lrexp.app: one job per process call) and by lrexp's launchers
(hydra_plugins/lrexp_launchers: several jobs trained together, a job whose worker was killed); none of
them imports another.

A bad config ends a single run with one line on stderr and exit code 2; inside a multirun the job is
recorded as failed in its own directory and the sweep goes on.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lrexp.errors import ConfigError, RunInUse, SecretInConfig, describe
from lrexp.loggers import Logger, RunInfo
from lrexp.preemption import HandedOver
from lrexp.record import CHECKPOINT_FILE, ERROR_FILE, Status, Summary, holds_run, is_neutral, write_summary, writing

if TYPE_CHECKING:
    from lrexp.train import RunSpec

log = logging.getLogger("lrexp")

# A file system that cannot take what the run writes: full, over quota, read-only, a file too large.
STORAGE_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG)

# The config groups a run is named and grouped by (their option names, not their contents).
CHOICE_GROUPS = ("task", "optimizer", "scheduler")


def choices_of(hydra_cfg: Any) -> dict[str, str | None]:
    """The option names a job's config was composed from (cosine, adamw, digits), from Hydra's node."""
    return {g: hydra_cfg.runtime.choices.get(g) for g in CHOICE_GROUPS}


def run_job(cfg: DictConfig, hc: Any) -> float | None:
    """One Hydra job: checked, trained, recorded (the basic launcher's and every worker's job)."""
    job = HydraJob(cfg, hc)
    with contextlib.ExitStack() as lock, job.failures():  # the lock outlives the failure's record
        lock.enter_context(job.writing())
        job.prepare()
        from lrexp.train import train  # torch is imported here, not for --help or --cfg

        return job_result(train(job.spec(), threads=job_threads(cfg, hc)))
    return None


def job_result(summary: Summary) -> float | None:
    """What a job returns to Hydra, for sweepers to minimise (hydra-optuna-sweeper): its validation loss."""
    return summary.final.get(summary.loss.column("val")) if summary.loss else None


class HydraJob:
    """One Hydra job as lrexp runs it: its directory, its choices, its loggers, and what its failures
    become (one line and an exit code for a single run; a record in its directory inside a sweep)."""

    def __init__(self, cfg: DictConfig, hc: Any, job_log: logging.Logger = log) -> None:
        self.cfg, self.hc, self.log = cfg, hc, job_log
        self.run_dir = Path(hc.runtime.output_dir)
        self.multirun = hc.mode == RunMode.MULTIRUN
        self.choices = choices_of(hc)
        self.held_a_run = holds_run(self.run_dir)
        self.hydra_dir = self.run_dir / hc.output_subdir if hc.output_subdir else None
        self.loggers: list[Logger] = []

    def writing(self) -> contextlib.AbstractContextManager[None]:
        """This process, and no other, writes the job's directory (lrexp.record.writing); another process
        writing it now is refused (RunInUse, which ``failures`` turns into one line, touching nothing)."""
        return writing(self.run_dir, "hydra.sweep.dir" if self.multirun else "hydra.run.dir")

    def prepare(self, concurrent: bool = False) -> None:
        """The config checked, the loggers built (they open nothing before the run starts)."""
        from lrexp.loggers import build_loggers
        from lrexp.validate import validate

        validate(self.cfg)
        self.loggers = build_loggers(self.cfg.logger, run_info(self.cfg, self.hc, self.choices, concurrent))

    def spec(self) -> RunSpec:
        """The run to train."""
        from lrexp.train import RunSpec  # torch: only when a job trains

        return RunSpec(self.cfg, self.run_dir, self.choices, self.loggers, self.hydra_dir, self.log)

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
    from lrexp.batched import CannotBatch, build_batch
    from lrexp.train import train, train_runs

    hydra_jobs = [HydraJob(cfg, hc, job_log) for cfg, hc, job_log in jobs]
    results: list[float | None] = [None] * len(hydra_jobs)
    with contextlib.ExitStack() as locks:
        ready: list[int] = []
        for i, job in enumerate(hydra_jobs):
            with job.failures():
                locks.enter_context(job.writing())
                job.prepare(concurrent=True)
                ready.append(i)
        threads = job_threads(hydra_jobs[0].cfg, hydra_jobs[0].hc)
        try:
            batch, built = build_batch([hydra_jobs[i].spec() for i in ready], threads=threads) if len(ready) > 1 else (None, [])
        except CannotBatch as e:
            log.warning("these %d jobs cannot train as one batch (%s): they train one after another", len(ready), e)
            batch, built = None, []
        if batch is None:
            for i in ready:
                job = hydra_jobs[i]
                with job.failures():
                    results[i] = job_result(train(job.spec(), threads=threads))
            return results
        in_batch = []
        for i, run in zip(ready, built):
            if isinstance(run, BaseException):  # could not be built: its own failure, the others go on
                with hydra_jobs[i].failures():
                    raise run
            else:
                in_batch.append(i)
        try:
            summaries = train_runs(batch.runs, batch, progress=progress)
        except Exception as e:  # the batch as a whole failed: every job in it records it
            for i in in_batch:
                with hydra_jobs[i].failures():
                    raise e
            return results
        for i, summary in zip(in_batch, summaries):
            results[i] = job_result(summary)
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


def record_failure(run_dir: Path, cfg: DictConfig, choices: Mapping[str, Any], error: str, trace: str = "") -> None:
    """A job that has no result of its own: failed, with why, where every job records itself."""
    write_summary(run_dir, Summary(status=Status.FAILED, error=error, **choices, seed=cfg.get("seed"), steps=cfg.run.get("steps")))
    if trace:
        (run_dir / ERROR_FILE).write_text(trace)


def job_threads(cfg: DictConfig, hc: Any) -> int:
    """Torch threads for this job: run.threads if set; else split the cores between parallel jobs.

    On small models, N single-thread processes side by side beat one N-thread process (docs/performance.md,
    Performance), so the joblib launcher gives each job cores // n_jobs threads. Cluster jobs get the
    CPUs they were allocated, not the whole node's core count torch would assume. Anything else (a run
    alone, the basic and the batched launcher) gets the cores other processes leave free now
    (lrexp.device.free_threads): one process's OpenMP threads spin at every barrier, and a thread that
    shares its core with another process loses whole time slices while the others spin. Measured
    (docs/clusters.md, "On a busy machine"): with one core busy, 16 batched digits runs took 58.9 s on both cores
    and 35.8 s on the free one; OMP_WAIT_POLICY=PASSIVE recovered only part and cost up to a third idle.
    The thread count can change float results in their last bits (parallel reductions): run.threads=N
    fixes it for bit-exact reproduction on a loaded machine.
    """
    if cfg.run.threads > 0:
        return int(cfg.run.threads)
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
    from lrexp.device import free_threads  # a run alone, the basic and the batched launcher: the free cores

    return free_threads("batched launcher" if "batched" in target else "this run")


def run_info(cfg: DictConfig, hc: Any, choices: Mapping[str, Any], concurrent: bool = False) -> RunInfo:
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
