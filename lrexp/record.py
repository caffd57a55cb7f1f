"""The run record: the files every run leaves in its output directory, their typed description, and the
functions that read them. This is the output contract (docs/outputs.md). The training loop and the
entry point write it; plots, the comparison reports and the W&B report read it. No torch here: readers
must stay cheap.

- ``metrics.csv``: header, then a row per logged step, appended and flushed row by row, so a killed
  run keeps every row up to the last flush. Floats are written in their shortest exact form.
- ``summary.json``: a ``Summary``: status and the run's headline numbers.
- ``checkpoint.pt``: everything to resume exactly (lrexp.checkpoint).
- ``plots/``: PNG figures (lrexp.plots).
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import enum
import json
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from lrexp.errors import RunInUse

METRICS_FILE = "metrics.csv"
SUMMARY_FILE = "summary.json"
CHECKPOINT_FILE = "checkpoint.pt"
PLOTS_DIR = "plots"
ERROR_FILE = "error.txt"
LOCK_FILE = ".lock"  # held (flock) by the process writing the run: record.writing
# What a comparison report writes into a sweep directory (lrexp.report): read back by the studies.
SUMMARY_CSV, CELLS_CSV, REPORT_MD, REPORT_HTML = "summary.csv", "cells.csv", "report.md", "report.html"

# LR below this fraction of the run's peak: the optimizer barely moves, training has effectively stopped.
STALL_RATIO = 1e-3
# A run that spends more than this share of its steps stalled gets a warning and a shaded plot region.
STALL_NOTABLE = 0.1

# The total gradient norm of a row's step, before any clipping (optimizer.clip_grad_norm clips to it).
GRAD_NORM = "grad_norm"
STEP = "step"  # metrics.csv's first column, the 0-based optimizer step: the x-axis of every curve, here and in trackers
Row = dict[str, Any]  # a metrics.csv row: STEP an int, every other column a float or None (not logged)


class Status(str, enum.Enum):
    """How a run ended. A str, so that it is written to and compared with JSON as its value."""

    COMPLETED = "completed"  # trained every step
    DIVERGED = "diverged"  # stopped early: non-finite loss, or above run.diverge_factor x the first
    FAILED = "failed"  # raised, or its config was refused: no result
    INTERRUPTED = "interrupted"  # stopped by a signal after writing a checkpoint: run.resume=true continues it

    @property
    def has_result(self) -> bool:
        """Whether the run says something about its settings: it trained to the end, or it diverged
        (a finding about that peak LR). Failed and interrupted runs say nothing yet."""
        return self in (Status.COMPLETED, Status.DIVERGED)

    @classmethod
    def of(cls, value: Any) -> Status | None:
        """The status a record states, or None when it states none or one lrexp does not know."""
        try:
            return cls(value)
        except ValueError:
            return None


# --- what does not change a run's numbers ----------------------------------------------------------

# Config keys (and whole groups) that may differ between two runs, or between a run and its
# resumption, without changing a single number they compute. Used to name runs (lrexp.jobs), to decide
# what varies across a sweep (lrexp.compare) and what a resumed run may change (lrexp.checkpoint).
NEUTRAL_KEYS = (
    "run.progress", "run.threads", "run.resume", "run.checkpoint_every", "logger", "report", "hydra",
    # A branch is the run it would be from step 0 (lrexp.branch checks it): where it started changes no number.
    "run.keep_checkpoints_at", "run.branch_from", "run.branch_step",
)  # fmt: skip


def is_neutral(key: str) -> bool:
    """``key`` is a dotted config key or an override's key (``+logger.wandb.mode``, ``hydra/launcher``)."""
    key = key.lstrip("+~")
    return any(key == k or key.startswith((k + ".", k + "/")) for k in NEUTRAL_KEYS)


# --- metrics a task declares -----------------------------------------------------------------------


class Goal(str, enum.Enum):
    MIN = "min"  # lower is better (a loss)
    MAX = "max"  # higher is better (an accuracy)


# Evaluation splits. Validation is evaluated during training and drives every choice (plateau, the
# best peak LR of a sweep); test is evaluated only where asked (at the end of a run by default).
SPLITS = {"val": "validation", "test": "test"}


@dataclass(frozen=True)
class Metric:
    """A metric a task evaluates, declared by the task: reports and plots read it, never guess it.

    ``name`` is the task's own ("loss", "acc"); the record's columns are ``<split>_<name>``. A task's
    first metric is its loss: divergence, metric-driven schedules and the comparison go by it.
    """

    name: str
    goal: Goal = Goal.MIN
    label: str = ""  # for axes and tables: "loss", "accuracy", "bits per byte"
    scale: str = "linear"  # the natural axis: "log" for losses, "linear" for rates

    def column(self, split: str) -> str:
        return f"{split}_{self.name}"

    def title(self, split: str) -> str:
        return f"{SPLITS[split]} {self.label or self.name}"

    def better(self, a: float, b: float) -> bool:
        return a < b if self.goal is Goal.MIN else a > b

    def to_json(self) -> dict[str, str]:
        return {"name": self.name, "goal": self.goal.value, "label": self.label, "scale": self.scale}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Metric:
        return cls(d["name"], Goal(d.get("goal", "min")), d.get("label", ""), d.get("scale", "linear"))


TRAIN_LOSS = Metric("train_loss", Goal.MIN, "training loss", "log")


def metric_of(column: str, metrics: Sequence[Metric]) -> Metric | None:
    """The declared metric behind a column (``val_acc`` -> the task's ``acc``)."""
    if column == TRAIN_LOSS.name:
        return TRAIN_LOSS
    split, _, name = column.partition("_")
    return next((m for m in metrics if m.name == name), None) if split in SPLITS else None


# --- summary.json ----------------------------------------------------------------------------------


@dataclass
class Summary:
    """summary.json, typed. Written by the training loop (lrexp.train) and, for a run refused or failed
    before training, by a job (lrexp.jobs); read by plots, reports and loggers.

    On disk the per-column numbers are flat keys, ``final_<column>``, ``best_<column>`` and
    ``best_<column>_step`` (for the training loss and every validation/test metric), which is what
    sweepers and trackers read; here they are the ``final``, ``best`` and ``best_step`` mappings.
    Whatever a logger adds (``wandb``) is kept in ``extra``.
    """

    status: Status
    # The config choices (option names) and what they point at.
    task: str | None = None
    optimizer: str | None = None
    scheduler: str | None = None
    scheduler_target: str | None = None
    optimizer_target: str | None = None
    seed: int | None = None
    steps: int | None = None
    peak_lr: float | None = None
    metrics: list[Metric] = field(default_factory=list)
    lr_columns: list[str] = field(default_factory=list)
    setting_columns: list[str] = field(default_factory=list)  # momentum and weight decay, per group as lr_columns
    lr_markers: list[dict[str, Any]] = field(default_factory=list)
    device: str | None = None
    precision: str | None = None
    compiled: bool | None = None
    threads: int | None = None
    batch: int | None = None  # runs trained together in one process (hydra/launcher=batched); 1: alone
    parameters: int | None = None
    slurm_job_id: str | None = None  # when the run was a SLURM job (the same id across requeues)
    branch_from: str | None = None  # the trunk's run directory, when the run started from its checkpoint (lrexp.branch)
    branch_step: int | None = None  # ... at this step: the steps before it were the trunk's
    # "settings" in lrexp always means this, a run's overrides (the cell a report puts it in), key -> value:
    # recorded here for runs made without Hydra (lrexp.recorder), whose overrides.yaml would otherwise say
    # it (lrexp.runs). The LR, momentum and weight decay a step applied are its hyperparameters.
    settings: dict[str, str] = field(default_factory=dict)
    # Headline numbers derived from the rows (summarize).
    final: dict[str, float] = field(default_factory=dict)
    best: dict[str, float] = field(default_factory=dict)
    best_step: dict[str, int] = field(default_factory=dict)
    lr_peak: float | None = None
    lr_final: float | None = None
    lr_min: float | None = None
    lr_stalled_from_step: int | None = None
    lr_stalled_fraction: float | None = None
    # How it went.
    steps_done: int | None = None
    diverged_at_step: int | None = None
    wall_time_s: float | None = None
    steps_per_s: float | None = None
    time_to_first_step_s: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def loss(self) -> Metric | None:
        """The task's loss: its first metric."""
        return self.metrics[0] if self.metrics else None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status.value, **{name: getattr(self, name) for name in _PLAIN_FIELDS}}
        out["metrics"] = [m.to_json() for m in self.metrics]
        for column, value in self.final.items():
            out[f"final_{column}"] = value
            if column in self.best:
                out[f"best_{column}"], out[f"best_{column}_step"] = self.best[column], self.best_step[column]
        return {**out, **self.extra}

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Summary:
        names = set(_PLAIN_FIELDS) | {"status", "metrics"}
        kwargs: dict[str, Any] = {k: d[k] for k in _PLAIN_FIELDS if k in d}
        kwargs["status"] = Status.of(d.get("status")) or Status.FAILED
        kwargs["metrics"] = [Metric.from_json(m) for m in d.get("metrics") or [] if isinstance(m, dict)]
        final, best, best_step = {}, {}, {}
        for key, value in d.items():
            if key.startswith("final_"):
                final[key[6:]] = value
            elif key.startswith("best_") and key.endswith("_step"):
                best_step[key[5:-5]] = value
            elif key.startswith("best_"):
                best[key[5:]] = value
        extra = {k: v for k, v in d.items() if k not in names and not k.startswith(("final_", "best_"))}
        return cls(**kwargs, final=final, best=best, best_step=best_step, extra=extra)


# Summary fields written to JSON as they are (status, metrics and the per-column numbers are converted).
_PLAIN_FIELDS = tuple(
    f.name for f in dataclasses.fields(Summary) if f.name not in ("status", "metrics", "final", "best", "best_step", "extra")
)


def holds_run(run_dir: Path) -> bool:
    """Whether a run started training here (it logged a row or wrote a checkpoint). A summary.json alone
    is a config refused before training: not a run, so a corrected command may train here (and the
    failure stays recorded until it does, for a sweep's report to count)."""
    return any((run_dir / f).exists() for f in (METRICS_FILE, CHECKPOINT_FILE))


@contextlib.contextmanager
def writing(run_dir: Path, key: str = "hydra.run.dir") -> Iterator[None]:
    """This process, and no other, writes ``run_dir`` while the block runs.

    Two runs started into one directory at once would interleave their rows and overwrite each other's
    checkpoints; the second is refused (RunInUse, ``key`` naming the setting that chose the directory).
    An flock on LOCK_FILE: the OS releases it when the process ends, however it ends (kill -9 leaves no
    stale lock to clean up), and it works across the nodes of a cluster's shared file system.
    """
    import fcntl

    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunInUse(
                key, str(run_dir), "another lrexp process is writing this run now: let it finish, or choose another directory"
            ) from None
        yield


def is_finite_number(v: Any) -> bool:
    """A real, finite number (not a bool, not nan or inf, not None): a value a mean or an interval can use."""
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def finite_or_none(v: float | None) -> float | None:
    """nan and inf -> None, so that a CSV cell or a JSON number is empty where no number can exist."""
    return v if v is not None and math.isfinite(v) else None


def write_summary(run_dir: Path, summary: Summary) -> None:
    write_json(run_dir / SUMMARY_FILE, summary.to_json())


def read_summary(run_dir: Path) -> Summary:
    return Summary.from_json(json.loads((run_dir / SUMMARY_FILE).read_text()))


def write_json(path: Path, obj: Any) -> None:
    with replacing(path, "w") as f:
        f.write(json.dumps(obj, indent=2, allow_nan=True) + "\n")


@contextlib.contextmanager
def replacing(path: Path, mode: str = "wb", *, sync: bool = False, **kwargs: Any) -> Iterator[IO[Any]]:
    """A file written whole or not at all: written beside ``path``, then renamed over it, so a reader sees
    the old file or the new one. If the write fails (a full disk), the partial file is removed and the
    old one is left as it was. ``sync``: on disk before the rename (checkpoints)."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, mode, **kwargs) as f:
            yield f
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- metrics.csv -----------------------------------------------------------------------------------

# What metrics.csv records of the optimizer's parameter groups at every logged step: the LR the step
# applies, and the momentum (Adam's beta1, which OneCycleLR and CyclicLR cycle) and weight decay it
# applies with it. Plain reads of the param-group dicts: no torch here, and no host sync in the loop.
SETTINGS: dict[str, Callable[[Mapping[str, Any]], Any]] = {
    "lr": lambda g: g["lr"],
    "momentum": lambda g: g["betas"][0] if "betas" in g else g.get("momentum"),
    "weight_decay": lambda g: g.get("weight_decay"),
}


@dataclass(frozen=True)
class GroupColumn:
    column: str  # "lr", "lr_decay", "momentum", ...
    setting: str  # a key of SETTINGS
    group: int  # the param group it reads


def group_columns(param_groups: Sequence[Mapping[str, Any]], setting: str) -> list[GroupColumn]:
    """The columns of one setting: ``lr`` for a single parameter group; with several, ``lr`` (the first
    group's) then ``lr_<group name>`` for each. None where the optimizer has no such setting."""
    if all(SETTINGS[setting](g) is None for g in param_groups):
        return []
    first = [GroupColumn(setting, setting, 0)]
    if len(param_groups) == 1:
        return first
    return first + [GroupColumn(f"{setting}_{g.get('name', i)}", setting, i) for i, g in enumerate(param_groups)]


def hyperparameter_columns(param_groups: Sequence[Mapping[str, Any]]) -> list[GroupColumn]:
    """Every hyperparameter column (LR, momentum, weight decay) of an optimizer's groups, LRs first."""
    return [c for name in SETTINGS for c in group_columns(param_groups, name)]


def read_hyperparameters(param_groups: Sequence[Mapping[str, Any]], columns: Sequence[GroupColumn]) -> dict[str, float]:
    """The current value of every hyperparameter column (Python floats from the param groups)."""
    return {c.column: float(SETTINGS[c.setting](param_groups[c.group])) for c in columns}


def metric_columns(setting_columns: Sequence[str], metrics: Sequence[Metric]) -> list[str]:
    return [STEP, *setting_columns, TRAIN_LOSS.name, GRAD_NORM, *(m.column(split) for split in SPLITS for m in metrics), "time_s"]


class MetricsWriter:
    """Appends rows to metrics.csv, flushing each one to the OS so that ``kill -9`` loses nothing logged."""

    def __init__(self, path: Path, columns: Sequence[str], rows: Iterable[Row] = ()) -> None:
        # (Re)write the header and any rows carried over from a checkpoint in one atomic step: a resumed
        # run drops the rows its killed predecessor logged after its last checkpoint.
        with replacing(path, "w", newline="") as f:
            writer = csv.DictWriter(f, columns)
            writer.writeheader()
            writer.writerows(rows)
        self._file = open(path, "a", newline="")
        self._writer = csv.DictWriter(self._file, columns)

    def append(self, row: Row) -> None:
        self._writer.writerow(row)
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> MetricsWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def read_metrics(run_dir: Path) -> list[Row]:
    """metrics.csv as dicts of floats (``step`` as int), None where a cell is empty.

    Every row is written and flushed whole, ending in a newline; a last line without one was cut off (the
    process killed mid-write, a full disk) and is left out, never read as a shorter number."""
    text = (run_dir / METRICS_FILE).read_text()
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith("\n"):
        lines.pop()
    return [{k: (int(v) if k == STEP else float(v)) if v != "" else None for k, v in row.items()} for row in csv.DictReader(lines)]


def column(rows: Sequence[Row], name: str) -> tuple[tuple[int, ...], tuple[float, ...]]:
    """(steps, values) of the rows where ``name`` is set."""
    pairs = [(r[STEP], r[name]) for r in rows if r.get(name) is not None]
    if not pairs:
        return (), ()
    steps, values = zip(*pairs)
    return steps, values


# --- headline numbers ------------------------------------------------------------------------------


def summarize(rows: Sequence[Row], metrics: Sequence[Metric], summary: Summary) -> None:
    """Fill ``summary``'s final values of every logged metric, the best validation values, and its LR
    diagnostics. No best is taken on the test split: choosing anything by test numbers is what the
    test split exists to prevent."""
    if rows:
        summary.final[TRAIN_LOSS.name] = rows[-1][TRAIN_LOSS.name]
    for metric in metrics:
        for split in SPLITS:
            name = metric.column(split)
            steps, values = column(rows, name)
            if not values:
                continue
            summary.final[name] = values[-1]
            finite = [(v, s) for s, v in zip(steps, values) if math.isfinite(v)]
            if finite and split == "val":
                best_v, best_s = finite[0]
                for v, s in finite[1:]:
                    if metric.better(v, best_v):
                        best_v, best_s = v, s
                summary.best[name], summary.best_step[name] = best_v, best_s
    lr_diagnostics(rows, summary)


def lr_diagnostics(rows: Sequence[Row], summary: Summary) -> None:
    """Peak, final and minimum LR, and where the LR fell below STALL_RATIO x peak for good.

    ``lr_stalled_from_step`` is the first logged step from which every later LR is below the threshold;
    ``lr_stalled_fraction`` the share of the run from there on. ExponentialLR(0.99) per step stalls at
    step ~690 of 3000 (77% of the run wasted); a schedule that decays to zero stalls only at its end.
    """
    steps, lrs = column(rows, "lr")
    if not lrs:
        return
    peak = max(lrs)
    stalled_from = None
    for s, lr in zip(reversed(steps), reversed(lrs)):
        if lr >= STALL_RATIO * peak:
            break
        stalled_from = s
    done = steps[-1] + 1
    summary.lr_peak, summary.lr_final, summary.lr_min = peak, lrs[-1], min(lrs)
    summary.lr_stalled_from_step = stalled_from
    summary.lr_stalled_fraction = (done - stalled_from) / done if stalled_from is not None else 0.0
