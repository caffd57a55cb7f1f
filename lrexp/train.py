"""The training loop. Read it top to bottom: set up from the config, train, leave the record.

One loop trains every run: a run alone is a batch of one. What differs between training one run and
training several together (lrexp.batched) is only how a step's losses and gradients are computed and
how the models are evaluated: an *engine* (``Alone`` here, ``Batch`` there). Everything else, the
plan of a step, the optimizer and schedule stepping, the loss sums, the rows, checkpoints, signals and
the record, is this module's, once.

Hot-path rules, each measured (scripts/bench.py): data is already on the device, the loss is summed on
the device and read back only at log rows, the LR is read from the optimizer (a Python float) only at
log rows, the gradient norm is computed only at log rows (every step only when clipping needs it), and
nothing touches the disk between rows.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import random
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import DictConfig
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lrexp import branch, checkpoint
from lrexp.build import build_optimizer, build_schedule, clip_norm_of, has_modes
from lrexp.device import autocast, configure_backends, resolve_precision, select_device
from lrexp.errors import first_line
from lrexp.loggers import Logger
from lrexp.preemption import StopRequest
from lrexp.record import (
    CHECKPOINT_FILE,
    GRAD_NORM,
    METRICS_FILE,
    STALL_NOTABLE,
    TRAIN_LOSS,
    MetricsWriter,
    Row,
    Status,
    Summary,
    hyperparameter_columns,
    metric_columns,
    read_hyperparameters,
    summarize,
    write_summary,
)
from lrexp.schedule_spec import ScheduleSpec
from lrexp.tasks.base import Task, build_task, split_batch

log = logging.getLogger(__name__)


@dataclass
class RunSpec:
    """One run to train, as the entry point (lrexp.jobs) or a test hands it over: its config, its
    directory, the config group options it was composed from (for the record), its loggers, its
    ``.hydra/`` folder (saved into checkpoints so that a refused re-run can put it back) and its log."""

    cfg: DictConfig
    run_dir: Path
    choices: Mapping[str, str | None] = field(default_factory=dict)
    loggers: Sequence[Logger] = ()
    hydra_dir: Path | None = None
    log: logging.Logger = log


@dataclass
class LoopState:
    """Everything the loop carries from one step to the next, besides the model, optimizer and schedule.

    ``state_dict``/``load_state_dict`` like torch's objects, so a checkpoint saves and restores it with
    them: the next step (also the position in the data order: batches are a function of seed and step),
    the rows logged so far, the training loss summed on the device since the last row, and the clocks.
    """

    loss_sum: torch.Tensor  # on the device (a view of the engine's sums): read back only at log rows
    step: int = 0
    n_summed: int = 0
    rows: list[Row] = field(default_factory=list)
    time_to_first_step_s: float | None = None  # from process start, of the run's first launch
    elapsed_before_s: float = 0.0  # training time of earlier launches (a resumed run)
    started: float = field(default_factory=time.perf_counter)
    ended: float | None = None  # when this launch's training ended (the clock stops for the record)

    def elapsed_s(self) -> float:
        return self.elapsed_before_s + (self.ended or time.perf_counter()) - self.started

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
    """One run: everything about it except how its steps' gradients are computed.

    Built in two halves so that lrexp.batched can put the parameters of several runs' models side by side
    in between: ``build_task`` (seed, then the task and its freshly initialised model), then
    ``build_rest`` (optimizer, schedule, record, and the checkpoint's state when resuming, loaded into the
    model's parameters as they are then: its own, or its views of the stacked tensors). ``start``
    opens metrics.csv and the loggers, ``update`` takes an optimizer step from the gradients the engine
    left, ``record_row`` records a row, ``after_step`` counts the step and checkpoints where due,
    ``finish`` leaves the record.
    """

    def __init__(self, spec: RunSpec, device: torch.device, precision: Any) -> None:
        self.spec, self.cfg, self.run_dir, self.log = spec, spec.cfg, spec.run_dir, spec.log
        self.device, self.precision = device, precision
        self.every = Intervals.of(self.cfg.run)
        self.resume_from = checkpoint.open_run_dir(self.run_dir, self.cfg, spec.hydra_dir)  # refuses another run's directory
        # A branch that has no checkpoint of its own yet starts from its trunk's (checked here, before anything is written).
        self.trunk = branch.Trunk.open(self.cfg) if self.resume_from is None and self.cfg.run.branch_from is not None else None
        self.keep_at = frozenset(self.cfg.run.keep_checkpoints_at)
        self.schedule_spec = ScheduleSpec.of(self.cfg.scheduler)
        self.clip = clip_norm_of(self.cfg.optimizer)  # None: no clipping
        self.stopped = False  # diverged: no more steps
        self.finished = False  # its record is written
        self.saved_at: int | None = None  # the step of the last checkpoint this launch wrote
        self.grad_norm = torch.full((), math.nan, device=device)  # of the last step a row was planned for

    def build_task(self) -> Task:
        seed_everything(self.cfg.seed)
        self.task: Task = build_task(self.cfg.task, self.device, self.cfg.seed)
        return self.task

    def build_rest(self, *, compiled: bool = False, batch: int = 1) -> None:
        cfg, run, task, spec = self.cfg, self.cfg.run, self.task, self.spec
        self.optimizer = build_optimizer(cfg.optimizer, task.param_groups(), self.device)
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.schedule = build_schedule(self.schedule_spec, self.optimizer)  # per step, or per evaluation (ReduceLROnPlateau)
        self.val_loss = task.metrics[0].column("val")  # the task's loss: divergence and metric-driven schedules
        self.columns = hyperparameter_columns(self.optimizer.param_groups)  # lr, momentum, weight decay
        self.lr_columns = [c.column for c in self.columns if c.setting == "lr"]
        self.setting_columns = [c.column for c in self.columns if c.setting != "lr"]
        self.summary = Summary(
            status=Status.COMPLETED,
            task=spec.choices.get("task"),
            optimizer=spec.choices.get("optimizer"),
            scheduler=spec.choices.get("scheduler"),
            scheduler_target=self.schedule_spec.target,
            optimizer_target=cfg.optimizer._target_,
            seed=cfg.seed,
            steps=run.steps,
            peak_lr=cfg.optimizer.lr,
            metrics=list(task.metrics),
            lr_columns=self.lr_columns,
            setting_columns=self.setting_columns,
            lr_markers=self.schedule_spec.markers(run.steps),
            device=str(self.device),
            precision=self.precision.value,
            compiled=compiled,
            threads=torch.get_num_threads(),
            batch=batch,
            parameters=sum(p.numel() for p in task.model.parameters()),
            slurm_job_id=os.environ.get("SLURM_JOB_ID"),
            branch_from=run.branch_from,
            branch_step=run.branch_step,
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
        if self.trunk is not None:  # loaded as a checkpoint of its own would be
            self.resume_from = self.trunk.state_for(self.optimizer, self.schedule)
        if self.resume_from is not None:
            for name, obj in self.stateful.items():
                obj.load_state_dict(self.resume_from[name])
            verb = f"branching from {self.trunk.dir}" if self.trunk is not None else f"resuming {self.run_dir}"
            self.log.info("%s at step %d of %d", verb, self.state.step, run.steps)

    def start(self) -> None:
        """The run directory is accepted and the run is built: metrics.csv (re)written, loggers opened."""
        self.metrics = MetricsWriter(
            self.run_dir / METRICS_FILE, metric_columns(self.lr_columns + self.setting_columns, self.task.metrics), self.state.rows
        )
        self.saved_hydra_files = checkpoint.hydra_files(self.spec.hydra_dir)
        for logger in self.spec.loggers:
            logger.start(self.state.step)

    @property
    def done(self) -> bool:
        return self.stopped or self.state.step >= self.every.steps

    def hyperparameters(self) -> dict[str, float]:
        """The LR (momentum, weight decay) the next step applies: read before the schedule moves it."""
        return read_hyperparameters(self.optimizer.param_groups, self.columns)

    def update(self, log_row: bool) -> None:
        """The optimizer step from the gradients the engine left: clipped if asked (the norm kept for
        the row), then the schedule moves the LR for the next step."""
        if self.clip is not None:
            self.grad_norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        elif log_row:
            self.grad_norm = total_norm(self.params)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.schedule.after_step()

    def record_row(
        self, step: int, hyperparameters: Mapping[str, float], numbers: Mapping[str, float], evaluations: Mapping[str, float]
    ) -> Row:
        """Record the row of ``step``: metrics.csv, the loggers, the log; a metric-driven schedule sees the
        validation loss; a diverged run stops here (the record is kept)."""
        row: Row = {"step": step, **hyperparameters, **numbers, **evaluations}
        row["time_s"] = self.state.elapsed_s()
        if self.val_loss in evaluations:
            self.schedule.after_eval(evaluations[self.val_loss])
        self.state.rows.append(row)
        self.metrics.append(row)
        for logger in self.spec.loggers:
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
        if not self.stopped and step in self.keep_at:
            self.keep_checkpoint(step)

    def save_checkpoint(self) -> None:
        self.saved_at = self.state.step
        checkpoint.save(self.run_dir / CHECKPOINT_FILE, self.stateful, self.cfg, self.saved_hydra_files)
        if self.spec.hydra_dir is not None:  # a command refused while this run held the directory had Hydra overwrite them
            checkpoint.restore_hydra_files(self.spec.hydra_dir, self.saved_hydra_files)

    def keep_checkpoint(self, step: int) -> None:
        """run.keep_checkpoints_at: this step's checkpoint kept beside the rolling one, for branches to start
        from; never overwritten (a resumed run that passes the step again writes the same bytes anyway)."""
        path = branch.kept_path(self.run_dir, step)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            checkpoint.save(path, self.stateful, self.cfg, self.saved_hydra_files)

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
        for logger in self.spec.loggers:
            summary.extra.update(logger.summary_fields())
        write_summary(self.run_dir, summary)
        for logger in self.spec.loggers:
            logger.finish(summary, self.run_dir)
        self.finished = True
        return summary


class Engine(Protocol):
    """How the runs' steps are computed: alone (``Alone``) or as one stacked computation (lrexp.batched)."""

    device: torch.device
    loss_sums: torch.Tensor  # (runs,): each run's training loss summed since its last row; LoopState.loss_sum views one

    def train_mode(self) -> None: ...

    def loss_and_grads(self, step: int) -> torch.Tensor:
        """Every run's loss on its own batch of ``step`` (detached: one per run, or a scalar for one run),
        and every run's gradients set on its parameters."""
        ...

    def evaluate(self, split: str) -> list[Row]:
        """Every metric of every run on ``split`` as ``<split>_<metric>`` columns: one host sync for all."""
        ...


class Alone:
    """One run, its model called as it is (or compiled): the plain PyTorch step. With the task's
    ``grad_accum`` > 1 the step's batch is split into that many micro-batches, each one's gradient added
    to the last, their mean loss the step's loss."""

    def __init__(self, run: Run, forward: torch.nn.Module) -> None:
        self.run, self.task, self.forward = run, run.task, forward
        self.device, self.precision = run.device, run.precision
        self.accum = int(getattr(self.task, "grad_accum", 1))
        self.loss_sums = torch.zeros(1, device=self.device)
        self.loss_sums[0] = run.state.loss_sum
        run.state.loss_sum = self.loss_sums[0]

    def train_mode(self) -> None:
        self.run.task.model.train()

    def loss_and_grads(self, step: int) -> torch.Tensor:
        x, y = self.task.train_batch(step)
        if self.accum == 1:
            with autocast(self.device, self.precision):
                loss = self.task.loss(self.forward, x, y)
            loss.backward()
            return loss.detach()
        total = torch.zeros((), device=self.device)
        for xs, ys in zip(split_batch(x, self.accum), split_batch(y, self.accum)):
            with autocast(self.device, self.precision):
                loss = self.task.loss(self.forward, xs, ys) / self.accum
            loss.backward()
            total += loss.detach()
        return total

    def evaluate(self, split: str) -> list[Row]:
        return [evaluate_split(self.task, self.forward, self.run.optimizer, split, self.device, self.precision)]


def train(spec: RunSpec, *, threads: int = 0) -> Summary:
    """Train one run as ``spec.cfg`` says, write its record into ``spec.run_dir`` and return its summary."""
    device, precision = open_device(spec.cfg, threads)
    run = Run(spec, device, precision)
    task = run.build_task()
    forward = compile_or_warn(task.model, task, device, precision) if spec.cfg.run.compile else task.model
    run.build_rest(compiled=forward is not task.model)
    (summary,) = train_runs([run], Alone(run, forward), progress=spec.cfg.run.progress)
    return summary


def open_device(cfg: DictConfig, threads: int = 0) -> tuple[torch.device, Any]:
    """Threads, device, precision and backend settings for runs of ``cfg``."""
    if threads > 0:
        torch.set_num_threads(threads)
    device = select_device(cfg.run.device)
    precision = resolve_precision(cfg.run.precision, device)
    configure_backends(device)
    return device, precision


def train_runs(runs: Sequence[Run], engine: Engine, *, progress: bool = True) -> list[Summary]:
    """Train every run to its end through ``engine`` and return their summaries, in order.

    The runs share their loop settings (lrexp.batched.batch_key), so they plan every step alike. A run
    resumed from a later checkpoint waits there for the others; a run that diverges is recorded at once
    and the others go on. A stop signal checkpoints every unfinished run, records it as interrupted and
    exits as the signal asks.
    """
    every = runs[0].every
    for run in runs:
        run.start()
    stop = StopRequest()
    step = min(run.state.step for run in runs)
    bar = tqdm(total=every.steps, initial=step, disable=None if progress else True, unit="step", dynamic_ncols=True)
    started = time.perf_counter()  # training time: set-up (imports, loggers) is not counted
    for run in runs:
        run.state.started = started
    # The runs that take the current step, recomputed only when one joins or stops (not every step).
    active = [i for i, run in enumerate(runs) if not run.done and run.state.step == step]
    waiting = sorted({run.state.step for run in runs if not run.done and run.state.step > step})
    with stop, bar, logging_redirect_tqdm(), contextlib.ExitStack() as files:
        for run in runs:
            files.enter_context(contextlib.closing(run.metrics))
        engine.train_mode()
        while active or waiting:
            if waiting and waiting[0] == step:
                waiting.pop(0)
                active = [i for i, run in enumerate(runs) if not run.done and run.state.step == step]
            log_row, evaluate, test = every.plan(step)
            applied = {i: runs[i].hyperparameters() for i in active} if log_row else {}

            losses = engine.loss_and_grads(step)
            for i in active:
                runs[i].update(log_row)
            if len(active) == len(runs):
                engine.loss_sums += losses
            else:  # the slots of runs that are done or waiting are computed, and ignored
                taking = torch.zeros(len(runs), dtype=torch.bool, device=engine.device)
                taking[active] = True
                engine.loss_sums += torch.where(taking, losses, 0.0)
            for i in active:
                state = runs[i].state
                state.n_summed += 1
                if state.time_to_first_step_s is None:
                    state.time_to_first_step_s = time.time() - process_start_time()

            if log_row and active:
                evaluations: list[Row] = [{} for _ in runs]
                for split, due in (("val", evaluate), ("test", test)):
                    if due:
                        for row, values in zip(evaluations, engine.evaluate(split)):
                            row.update(values)
                for i, numbers in zip(active, take_row_numbers(runs, active, engine.loss_sums)):
                    row = runs[i].record_row(step, applied[i], numbers, evaluations[i])
                bar.update(step + 1 - bar.n)
                if len(runs) == 1:
                    bar.set_postfix(lr=f"{row['lr']:.3g}", loss=f"{row[TRAIN_LOSS.name]:.4g}", refresh=False)
                else:
                    bar.set_postfix(training=sum(not run.done for run in runs), refresh=False)
            for i in active:
                runs[i].after_step()
                if runs[i].stopped and len(runs) > 1:  # diverged: its record now; the others go on
                    runs[i].finish()
            if any(runs[i].stopped for i in active):
                active = [i for i in active if not runs[i].stopped]
            step += 1
            if step >= every.steps:
                active = []
            if stop.signum is not None and not all(run.done for run in runs):
                for run in runs:
                    if not run.done:
                        run.interrupt(stop.name)
                break

    ended = time.perf_counter()
    for run in runs:
        run.state.ended = run.state.ended or ended
    summaries = [run.summary if run.finished else run.finish() for run in runs]
    if any(s.status is Status.INTERRUPTED for s in summaries):
        stop.exit()
    return summaries


def take_row_numbers(runs: Sequence[Run], active: Sequence[int], loss_sums: torch.Tensor) -> list[dict[str, float]]:
    """Each active run's mean training loss since its last row and its step's gradient norm, in one host
    sync for all of them; their loss sums start again from zero."""
    counts = torch.tensor([runs[i].state.n_summed for i in active], dtype=loss_sums.dtype, device=loss_sums.device)
    means = loss_sums[active] / counts
    norms = torch.stack([runs[i].grad_norm.float() for i in active])
    values = torch.cat([means, norms]).tolist()
    loss_sums[active] = 0.0
    for i in active:
        runs[i].state.n_summed = 0
    n = len(active)
    return [{TRAIN_LOSS.name: values[k], GRAD_NORM: values[n + k]} for k in range(n)]


def total_norm(params: Sequence[torch.Tensor]) -> torch.Tensor:
    """The 2-norm of all the parameters' gradients together (a device tensor: no host sync), as
    clip_grad_norm_ computes it."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return torch.full((), math.nan, device=params[0].device if params else None)
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


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


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


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
