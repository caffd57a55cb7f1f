"""``hydra/launcher=batched``: the sweep's jobs trained together, several runs per process (lrexp.batched).

The jobs are grouped by what must agree for their runs to be one computation (lrexp.batched.batch_key:
the task config and the loop settings); each group trains in batches of up to ``max_batch`` runs in this
process. Everything Hydra does for a job, it does for each job of a batch: its directory, its
``.hydra/`` files, its log file (``<job name>.log``), the job callbacks, its JobReturn. A job that cannot
be batched (run.compile, a group of one) runs as Hydra's basic launcher would run it.
"""

from __future__ import annotations

import copy
import logging
import logging.config
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobRuntime, JobStatus, _save_config, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict, read_write

log = logging.getLogger(__name__)


class PreparedJob(NamedTuple):
    """A job of a batch with everything Hydra's run_job would have set up for it. (Not a dataclass: Hydra's
    plugin scan executes this module before registering it in sys.modules, which dataclass needs.)"""

    idx: int
    overrides: list[str]
    config: DictConfig  # the job's whole config, Hydra's node included
    task_cfg: DictConfig  # what the task function receives
    hydra_cfg: DictConfig  # the Hydra node alone (HydraConfig)
    output_dir: Path


class BatchedLauncher(Launcher):
    def __init__(self, max_batch: int = 64, progress: bool = True) -> None:
        self.max_batch, self.progress = int(max_batch), bool(progress)
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from lrexp.batched import batch_key  # torch: only when a sweep launches

        setup_globals()
        assert self.config is not None and self.hydra_context is not None and self.task_function is not None
        if self.max_batch < 1:
            print(
                f"lrexp: error: hydra.launcher.max_batch={self.max_batch}: must be an integer >= 1 (runs trained together)", file=sys.stderr
            )
            raise SystemExit(2)
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)

        configs: dict[int, tuple[list[str], DictConfig]] = {}
        groups: dict[str | None, list[int]] = {}
        for i, overrides in enumerate(job_overrides):
            idx = initial_job_idx + i
            config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
            with open_dict(config):
                config.hydra.job.id = idx
                config.hydra.job.num = idx
            configs[idx] = (list(overrides), config)
            task_cfg = copy.deepcopy(config)
            with read_write(task_cfg), open_dict(task_cfg):
                del task_cfg["hydra"]
            try:
                key = batch_key(task_cfg)
            except Exception:  # a config the job will refuse itself, in its own words
                key = None
            groups.setdefault(key if key is not None else f"alone {idx}", []).append(idx)

        batches = [g[j : j + self.max_batch] for g in groups.values() for j in range(0, len(g), self.max_batch)]
        log.info(
            "Batched launcher: %d jobs in %d batches (max_batch=%d): %s",
            len(configs),
            len(batches),
            self.max_batch,
            ", ".join(str(len(b)) for b in batches),
        )
        results: dict[int, JobReturn] = {}
        for batch in batches:
            for idx in batch:
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(configs[idx][0])))
            if len(batch) == 1:
                results[batch[0]] = self._run_alone(configs[batch[0]][1])
            else:
                results.update(self._run_batch([self._prepare(idx, *configs[idx]) for idx in batch]))
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return [results[i] for i in sorted(results)]

    def _run_alone(self, config: DictConfig) -> JobReturn:
        assert self.hydra_context is not None and self.task_function is not None
        return run_job(
            hydra_context=self.hydra_context,
            task_function=self.task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )

    # --- a batch: Hydra's run_job, for several jobs at once ------------------------------------------

    def _prepare(self, idx: int, overrides: list[str], config: DictConfig) -> PreparedJob:
        """The job's directory, its .hydra/ files and its runtime config, as run_job sets them up."""
        HydraConfig.instance().set_config(config)
        output_dir = Path(str(config.hydra.sweep.dir)) / str(config.hydra.sweep.subdir)
        with read_write(config.hydra.runtime), open_dict(config.hydra.runtime):
            config.hydra.runtime.output_dir = os.path.abspath(output_dir)
        HydraConfig.instance().set_config(config)
        task_cfg = copy.deepcopy(config)
        with read_write(task_cfg), open_dict(task_cfg):
            del task_cfg["hydra"]
        hydra_cfg = copy.deepcopy(HydraConfig.instance().cfg)
        assert isinstance(hydra_cfg, DictConfig)
        output_dir.mkdir(parents=True, exist_ok=True)
        if config.hydra.output_subdir is not None:
            hydra_output = output_dir / str(config.hydra.output_subdir)
            _save_config(task_cfg, "config.yaml", hydra_output)
            _save_config(hydra_cfg, "hydra.yaml", hydra_output)
            _save_config(config.hydra.overrides.task, "overrides.yaml", hydra_output)
        # Resolved now, while ${hydra:...} resolves against this job: the batch trains with every job's
        # config at once, and HydraConfig can only hold one.
        OmegaConf.resolve(task_cfg)
        return PreparedJob(idx, overrides, config, task_cfg, hydra_cfg, output_dir)

    def _run_batch(self, jobs: list[PreparedJob]) -> dict[int, JobReturn]:
        from lrexp.jobs import run_together

        assert self.hydra_context is not None and self.task_function is not None
        loggers = self._configure_logging(jobs)
        callbacks = self.hydra_context.callbacks
        for job in jobs:
            HydraConfig.instance().set_config(job.config)
            callbacks.on_job_start(config=job.config, task_function=self.task_function)
        values: Sequence[Any]
        status = JobStatus.COMPLETED
        try:
            values = run_together([(job.task_cfg, job.hydra_cfg.hydra, loggers[job.idx]) for job in jobs], progress=self.progress)
        except Exception as e:  # lrexp records every failure it can; this is one it could not
            values, status = [e] * len(jobs), JobStatus.FAILED
        results = {}
        for job, value in zip(jobs, values):
            ret = JobReturn(overrides=job.overrides, cfg=job.task_cfg, hydra_cfg=job.hydra_cfg, working_dir=os.getcwd())
            ret.task_name = JobRuntime.instance().get("name")
            ret.status, ret.return_value = status, value
            HydraConfig.instance().set_config(job.config)
            callbacks.on_job_end(config=job.config, job_return=ret)
            results[job.idx] = ret
        for logger in loggers.values():
            for handler in logger.handlers:
                handler.close()
        return results

    def _configure_logging(self, jobs: list[PreparedJob]) -> dict[int, logging.Logger]:
        """Hydra's job logging for a batch: its console handlers on the root logger, once; its file
        handlers per job, on a logger of the job's own (``lrexp.job<N>``), writing the job's log file."""
        first = OmegaConf.to_container(jobs[0].config.hydra.job_logging, resolve=True)
        assert isinstance(first, dict)
        conf: dict[str, Any] = {str(k): v for k, v in first.items() if k not in ("handlers", "root", "loggers")}
        conf["handlers"] = {n: h for n, h in first.get("handlers", {}).items() if "filename" not in h}
        conf["root"] = dict(first.get("root", {}), handlers=[h for h in first.get("root", {}).get("handlers", []) if h in conf["handlers"]])
        conf["loggers"] = dict(first.get("loggers", {}))
        conf["disable_existing_loggers"] = False
        for job in jobs:
            HydraConfig.instance().set_config(job.config)
            own = OmegaConf.to_container(job.config.hydra.job_logging, resolve=True)
            assert isinstance(own, dict)
            files: dict[str, Any] = {f"{name}_job{job.idx}": h for name, h in own.get("handlers", {}).items() if "filename" in h}
            conf["handlers"].update(files)
            conf["loggers"][f"lrexp.job{job.idx}"] = {"handlers": list(files), "propagate": True}
        logging.config.dictConfig(conf)
        return {job.idx: logging.getLogger(f"lrexp.job{job.idx}") for job in jobs}
