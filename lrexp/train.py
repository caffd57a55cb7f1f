"""The training loop. Read it top to bottom: set up from the config, train, leave the record.

Hot-path rules, each measured (scripts/bench.py): data is already on the device, the loss is summed on
the device and read back only at log rows, the LR is read from the optimizer (a Python float) only at
log rows, and nothing touches the disk between rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lrexp import checkpoint
from lrexp.build import build_optimizer, build_schedule, has_modes
from lrexp.device import autocast, configure_backends, resolve_precision, select_device
from lrexp.errors import first_line
from lrexp.loggers import Logger
from lrexp.preemption import StopRequest
from lrexp.record import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    STALL_NOTABLE,
    TRAIN_LOSS,
    MetricsWriter,
    Row,
    Status,
    Summary,
    metric_columns,
    summarize,
    write_summary,
)
from lrexp.schedules import schedule_markers
from lrexp.tasks import Task, build_task

log = logging.getLogger(__name__)


@dataclass
class LoopState:
    """Everything the loop carries from one step to the next, besides the model, optimizer and schedule.

    ``state_dict``/``load_state_dict`` like torch's objects, so a checkpoint saves and restores it with
    them: the next step (also the position in the data order: batches are a function of seed and step),
    the rows logged so far, the training loss summed on the device since the last row, and the clocks.
    """

    loss_sum: torch.Tensor  # on the device: read back only at log rows
    step: int = 0
    n_summed: int = 0
    rows: list[Row] = field(default_factory=list)
    time_to_first_step_s: float | None = None  # from process start, of the run's first launch
    elapsed_before_s: float = 0.0  # training time of earlier launches (a resumed run)
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None  # when this launch's training ended (the clock stops for the record)

    def elapsed_s(self) -> float:
        return self.elapsed_before_s + (self.ended or time.perf_counter()) - self.started

    def take_mean_loss(self) -> float:
        """The mean training loss since the last row (one host sync), and a fresh sum."""
        mean = (self.loss_sum / self.n_summed).item()
        self.loss_sum.zero_()
        self.n_summed = 0
        return mean

    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "rows": self.rows,
            "loss_sum": self.loss_sum.item(),
            "n_summed": self.n_summed,
            "elapsed_s": self.elapsed_s(),
            "time_to_first_step_s": self.time_to_first_step_s,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.step, self.rows, self.n_summed = state["step"], list(state["rows"]), state["n_summed"]
        self.loss_sum.fill_(state["loss_sum"])
        self.elapsed_before_s, self.started = state["elapsed_s"], time.perf_counter()
        self.time_to_first_step_s = state["time_to_first_step_s"]


@dataclass(frozen=True)
class Intervals:
    """run.steps and the intervals, as plain ints: reading an OmegaConf node costs microseconds, and these
    are read every step."""

    steps: int
    log_every: int
    eval_every: int
    test_every: int
    checkpoint_every: int

    @classmethod
    def of(cls, run: DictConfig) -> Intervals:
        return cls(*(int(run[f.name]) for f in dataclasses.fields(cls)))

    def plan(self, step: int) -> tuple[bool, bool, bool]:
        """What the row of ``step`` holds: (a row at all, validation, test)."""
        last = step == self.steps - 1
        evaluate = step % self.eval_every == 0 or last
        test = last or (self.test_every > 0 and step % self.test_every == 0)  # held out: at the end, or where asked
        return evaluate or test or step % self.log_every == 0, evaluate, test


class Run:
    """One run: everything about it except how its steps are computed.

    ``train`` below steps one Run; lrexp.batched steps several together, sharing all of this. Built in
    two halves so that the batched path can put the parameters of several runs' models side by side in
    between: ``build_task`` (seed, then the task and its freshly initialised model), then ``build_rest``
    (optimizer, schedule, record, and the checkpoint's state when resuming). ``start`` opens metrics.csv
    and the loggers, ``log`` records a row, ``save_checkpoint`` writes one, ``finish`` leaves the record.
    """

    def __init__(
        self,
        cfg: DictConfig,
        run_dir: Path,
        *,
        choices: Mapping[str, str | None] | None = None,
        loggers: Sequence[Logger] = (),
        hydra_dir: Path | None = None,
        device: torch.device,
        precision: Any,
        log: logging.Logger = log,
    ) -> None:
        self.cfg, self.run_dir, self.hydra_dir = cfg, run_dir, hydra_dir
        self.choices, self.loggers = choices or {}, list(loggers)
        self.device, self.precision, self.log = device, precision, log
        self.every = Intervals.of(cfg.run)
        self.resume_from = checkpoint.open_run_dir(run_dir, cfg, hydra_dir)  # refuses another run's directory
        self.stopped = False  # diverged: no more steps
        self.saved_at: int | None = None  # the step of the last checkpoint this launch wrote

    def build_task(self) -> Task:
        seed_everything(self.cfg.seed)
        self.task: Task = build_task(self.cfg.task, self.device, self.cfg.seed)
        return self.task

    def build_rest(self, *, compiled: bool = False, batch: int = 1) -> None:
        cfg, run, task = self.cfg, self.cfg.run, self.task
        self._build_optimizer()
        self.val_loss = task.metrics[0].column("val")  # the task's loss: divergence and metric-driven schedules
        self.columns = [c for name in SETTINGS for c in group_columns(self.optimizer, name)]  # lr, momentum, weight decay
        self.lr_columns = [c.column for c in self.columns if c.setting == "lr"]
        self.setting_columns = [c.column for c in self.columns if c.setting != "lr"]
        self.summary = Summary(
            status=Status.COMPLETED,
            task=self.choices.get("task"),
            optimizer=self.choices.get("optimizer"),
            scheduler=self.choices.get("scheduler"),
            scheduler_target=cfg.scheduler._target_,
            optimizer_target=cfg.optimizer._target_,
            seed=cfg.seed,
            steps=run.steps,
            peak_lr=cfg.optimizer.lr,
            metrics=list(task.metrics),
            lr_columns=self.lr_columns,
            setting_columns=self.setting_columns,
            lr_markers=schedule_markers(resolved(cfg.scheduler), run.steps),
            device=str(self.device),
            precision=self.precision.value,
            compiled=compiled,
            threads=torch.get_num_threads(),
            batch=batch,
            parameters=sum(p.numel() for p in task.model.parameters()),
            slurm_job_id=os.environ.get("SLURM_JOB_ID"),
        )
        # --- state: fresh, or exactly where the checkpoint left it ---------------------------------
        self.state = LoopState(loss_sum=torch.zeros((), device=self.device))
        # What a checkpoint holds, restored in this order: optimizer state before the scheduler's.
        self.stateful: dict[str, checkpoint.Stateful] = {
            "model": task.model,
            "optimizer": self.optimizer,
            "scheduler": self.schedule,
            "rng": checkpoint.RngState(),
            "loop": self.state,
        }
        if self.resume_from is not None:
            for name, obj in self.stateful.items():
                obj.load_state_dict(self.resume_from[name])
            self.log.info("resuming %s at step %d of %d", self.run_dir, self.state.step, run.steps)

    def _build_optimizer(self) -> None:
        self.optimizer = build_optimizer(self.cfg.optimizer, self.task.param_groups(), self.device)
        self.schedule = build_schedule(self.cfg.scheduler, self.optimizer)  # per step, or per evaluation (ReduceLROnPlateau)

    def rebind(self) -> None:
        """The optimizer and schedule built again over the model's parameters as they are now (lrexp.batched
        has made them views of stacked tensors), with their checkpoint's state when resuming."""
        self._build_optimizer()
        self.stateful["optimizer"], self.stateful["scheduler"] = self.optimizer, self.schedule
        if self.resume_from is not None:  # optimizer state before the scheduler's, as in build_rest
            self.optimizer.load_state_dict(self.resume_from["optimizer"])
            self.schedule.load_state_dict(self.resume_from["scheduler"])

    def start(self) -> None:
        """The run directory is accepted and the run is built: metrics.csv (re)written, loggers opened."""
        self.metrics = MetricsWriter(
            self.run_dir / METRICS_FILE, metric_columns(self.lr_columns + self.setting_columns, self.task.metrics), self.state.rows
        )
        self.saved_hydra_files = checkpoint.hydra_files(self.hydra_dir)
        for logger in self.loggers:
            logger.start(self.state.step)

    @property
    def done(self) -> bool:
        return self.stopped or self.state.step >= self.every.steps

    def settings(self) -> dict[str, float]:
        """The LR (momentum, weight decay) the next step applies: read before the schedule moves it."""
        return read_settings(self.optimizer, self.columns)

    def record_row(self, step: int, settings: Mapping[str, float], train_loss: float, evaluations: Mapping[str, float]) -> Row:
        """Record the row of ``step``: metrics.csv, the loggers, the log; a metric-driven schedule sees the
        validation loss; a diverged run stops here (the record is kept)."""
        row: Row = {"step": step, **settings, TRAIN_LOSS.name: train_loss, **evaluations}
        row["time_s"] = self.state.elapsed_s()
        if self.val_loss in evaluations:
            self.schedule.after_eval(evaluations[self.val_loss])
        self.state.rows.append(row)
        self.metrics.append(row)
        for logger in self.loggers:
            logger.log_row(row)
        if evaluations:
            self.log.info(format_row(row))
        if is_diverged(row, self.state.rows[0][TRAIN_LOSS.name], self.cfg.run.diverge_factor, self.val_loss):
            self.summary.status, self.summary.diverged_at_step, self.stopped = Status.DIVERGED, step, True
            self.log.warning("diverged at step %d (train_loss %s): stopping; the record is kept", step, row[TRAIN_LOSS.name])
        return row

    def after_step(self) -> None:
        """The step is taken: count it, and checkpoint where due."""
        self.state.step += 1
        step = self.state.step
        if not self.stopped and (step % self.every.checkpoint_every == 0 or step == self.every.steps):
            self.save_checkpoint()

    def save_checkpoint(self) -> None:
        self.saved_at = self.state.step
        checkpoint.save(self.run_dir / CHECKPOINT_FILE, self.stateful, self.cfg, self.saved_hydra_files)
        if self.hydra_dir is not None:  # a command refused while this run held the directory had Hydra overwrite them
            checkpoint.restore_hydra_files(self.hydra_dir, self.saved_hydra_files)

    def interrupt(self, signal_name: str) -> None:
        self.summary.status = Status.INTERRUPTED
        if self.saved_at != self.state.step:
            self.save_checkpoint()
        self.log.warning("%s at step %d: checkpoint written; continue with run.resume=true", signal_name, self.state.step)

    def finish(self) -> Summary:
        """summary.json, then the loggers' own finish (plots, trackers)."""
        self.metrics.close()
        summary, state = self.summary, self.state
        state.ended = state.ended or time.perf_counter()  # a batch finishes its runs one after another
        summarize(state.rows, self.task.metrics, summary)
        summary.steps_done = state.step  # optimizer steps taken, logged or not
        summary.wall_time_s = state.elapsed_s()
        summary.steps_per_s = state.step / max(summary.wall_time_s, 1e-9)  # over every segment of a resumed run
        summary.time_to_first_step_s = state.time_to_first_step_s
        warn_if_stalled(summary, self.log)
        for logger in self.loggers:
            summary.extra.update(logger.summary_fields())
        write_summary(self.run_dir, summary)
        for logger in self.loggers:
            logger.finish(summary, self.run_dir)
        return summary


def train(
    cfg: DictConfig,
    run_dir: Path,
    *,
    choices: Mapping[str, str | None] | None = None,
    loggers: Sequence[Logger] = (),
    hydra_dir: Path | None = None,
    threads: int = 0,
) -> Summary:
    """Train as ``cfg`` says, write the run record into ``run_dir`` and return its summary.

    ``choices`` are the config group options (task, optimizer, scheduler) for the record; ``hydra_dir``
    is the run's ``.hydra/`` folder, saved into checkpoints so that a refused re-run can put it back.
    """
    # --- set-up: device, seed, then everything the config describes -------------------------------
    if threads > 0:
        torch.set_num_threads(threads)
    device = select_device(cfg.run.device)
    precision = resolve_precision(cfg.run.precision, device)
    configure_backends(device)
    run = Run(cfg, run_dir, choices=choices, loggers=loggers, hydra_dir=hydra_dir, device=device, precision=precision)
    task = run.build_task()
    model = task.model
    forward = compile_or_warn(model, task, device, precision) if cfg.run.compile else model
    run.build_rest(compiled=forward is not model)
    optimizer, schedule, state = run.optimizer, run.schedule, run.state
    run.start()

    # --- the loop ----------------------------------------------------------------------------------
    stop = StopRequest()
    bar = tqdm(total=run.every.steps, initial=state.step, disable=None if cfg.run.progress else True, unit="step", dynamic_ncols=True)
    state.started = time.perf_counter()  # training time: set-up (imports, loggers) is not counted
    with stop, bar, logging_redirect_tqdm(), contextlib.closing(run.metrics):
        model.train()
        while not run.done:
            step = state.step
            log_row, evaluate, test = run.every.plan(step)
            if log_row:
                settings = run.settings()

            x, y = task.train_batch(step)
            with autocast(device, precision):
                loss = task.loss(forward, x, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            schedule.after_step()
            state.loss_sum += loss.detach()
            state.n_summed += 1
            if state.time_to_first_step_s is None:
                state.time_to_first_step_s = time.time() - process_start_time()

            if log_row:
                evaluations: dict[str, float] = {}
                for split, due in (("val", evaluate), ("test", test)):
                    if due:
                        evaluations.update(evaluate_split(task, forward, optimizer, split, device, precision))
                row = run.record_row(step, settings, state.take_mean_loss(), evaluations)
                bar.update(step + 1 - bar.n)
                bar.set_postfix(lr=f"{row['lr']:.3g}", loss=f"{row[TRAIN_LOSS.name]:.4g}", refresh=False)
            run.after_step()
            if stop.signum is not None and not run.done:
                run.interrupt(stop.name)
                break

    # --- the record --------------------------------------------------------------------------------
    summary = run.finish()
    if summary.status is Status.INTERRUPTED:
        stop.exit()
    return summary


def evaluate_split(
    task: Task, model: torch.nn.Module, optimizer: torch.optim.Optimizer, split: str, device: torch.device, precision: Any
) -> Row:
    """Every metric of the task on ``split``, as ``<split>_<metric>`` columns: one host sync for all."""
    was_training = model.training
    model.eval()
    with evaluation_point(optimizer), autocast(device, precision):  # evaluation at the training precision
        values = task.evaluate(model, split)
    model.train(was_training)
    numbers = torch.stack([v.float() for v in values.values()]).tolist()
    return {f"{split}_{name}": v for name, v in zip(values, numbers)}


@contextlib.contextmanager
def evaluation_point(optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Where the model is evaluated: for a schedule-free optimizer, the average of its iterates
    (optimizer.eval()); afterwards optimizer.train() and the training point restored bit for bit, so that
    evaluating never moves the trajectory (their eval/train round trip is exact only up to rounding).
    Other optimizers: the parameters as they are."""
    if not has_modes(optimizer):
        yield
        return
    params = [p for g in optimizer.param_groups for p in g["params"]]
    saved = [p.detach().clone() for p in params]
    optimizer.eval()  # type: ignore[attr-defined]
    try:
        yield
    finally:
        optimizer.train()  # type: ignore[attr-defined]
        with torch.no_grad():
            for p, s in zip(params, saved):
                p.copy_(s)


def resolved(node: DictConfig) -> dict[str, Any]:
    """A config node as a plain, resolved dict."""
    container = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    assert isinstance(container, dict)
    return {str(k): v for k, v in container.items()}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


# What metrics.csv records of the parameter groups at every logged step: the LR the step applies, and the
# momentum (Adam's beta1, which OneCycleLR and CyclicLR cycle) and weight decay it applies with it.
SETTINGS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "lr": lambda g: g["lr"],
    "momentum": lambda g: g["betas"][0] if "betas" in g else g.get("momentum"),
    "weight_decay": lambda g: g.get("weight_decay"),
}


@dataclass(frozen=True)
class GroupColumn:
    column: str  # "lr", "lr_decay", "momentum", ...
    setting: str  # a key of SETTINGS
    group: int  # the param group it reads


def group_columns(optimizer: torch.optim.Optimizer, setting: str) -> list[GroupColumn]:
    """The columns of one setting: ``lr`` for a single parameter group; with several, ``lr`` (the first
    group's) then ``lr_<group name>`` for each. None where the optimizer has no such setting."""
    groups = optimizer.param_groups
    if all(SETTINGS[setting](g) is None for g in groups):
        return []
    first = [GroupColumn(setting, setting, 0)]
    if len(groups) == 1:
        return first
    return first + [GroupColumn(f"{setting}_{g.get('name', i)}", setting, i) for i, g in enumerate(groups)]


def read_settings(optimizer: torch.optim.Optimizer, columns: Sequence[GroupColumn]) -> dict[str, float]:
    """The current value of every settings column (Python floats from the param groups: no host sync)."""
    groups = optimizer.param_groups
    return {c.column: float(SETTINGS[c.setting](groups[c.group])) for c in columns}


def is_diverged(row: Row, first_loss: float, factor: float | None, val_loss: str) -> bool:
    losses = [row[TRAIN_LOSS.name], row.get(val_loss)]
    if any(v is not None and not math.isfinite(v) for v in losses):
        return True
    return factor is not None and math.isfinite(first_loss) and row[TRAIN_LOSS.name] > factor * first_loss


def format_row(row: Row) -> str:
    return " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if v is not None)


def warn_if_stalled(summary: Summary, log: logging.Logger = log) -> None:
    """Say so when most of a run trained at a negligible LR (ExponentialLR(0.99) per step does)."""
    frac = summary.lr_stalled_fraction or 0.0
    if frac > STALL_NOTABLE:
        log.warning(
            "LR below 1e-3 x its peak from step %s on: %.0f%% of the run trained at a negligible rate",
            summary.lr_stalled_from_step,
            100 * frac,
        )


def compile_or_warn(model: torch.nn.Module, task: Task, device: torch.device, precision: Any) -> torch.nn.Module:
    """torch.compile, tried on one real batch; eager (with a warning) where it cannot compile."""
    try:
        compiled: torch.nn.Module = torch.compile(model)  # type: ignore[assignment]
        x, y = task.train_batch(0)
        with autocast(device, precision):
            task.loss(compiled, x, y).backward()
        return compiled
    except Exception as e:
        # Inductor's messages run to several paragraphs; the first line names the cause.
        log.warning("run.compile=true: torch.compile failed (%s); training eagerly", first_line(e))
        return model
    finally:
        model.zero_grad(set_to_none=True)


def process_start_time() -> float:
    """When this process started (Unix time), from /proc on Linux; else when lrexp was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(line.split()[1]) for line in open("/proc/stat") if line.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


_IMPORTED_AT = time.time()
