"""A run directory from any training loop: lrexp's record (metrics.csv and summary.json, the output
contract of lrexp.record) written by a loop that is not lrexp's, so that ``python -m lrexp.report
DIR...`` compares runs made anywhere with the same statistics.

    from lrexp.recorder import Recorder

    with Recorder("runs/cosine-s0", metrics=["loss", "acc"], optimizer=optimizer, steps=1000, seed=0,
                  scheduler="cosine", settings={"optimizer.lr": 3e-4}) as record:
        for step in range(1000):
            loss = ...; loss.backward(); optimizer.step(); optimizer.zero_grad()
            if step % 10 == 0:
                record.log(step, train_loss=loss.item())     # reads the LR this step applied
            schedule.step()
            if step % 100 == 0:
                record.log(step, val_loss=..., val_acc=...)  # merged into the step's row

Rows are written whole, in step order, flushed as soon as a later step is logged (so a killed loop
keeps every finished row); summary.json (its headline numbers, the declared metrics, the settings the
report groups runs by) when the block ends, ``failed`` with the error if it raised. No checkpoints: a
loop that is not lrexp's resumes its own way. The HF Trainer and Lightning callbacks
(lrexp.integrations) are thin layers over this.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from lrexp.errors import ConfigError
from lrexp.record import (
    GRAD_NORM,
    METRICS_FILE,
    SPLITS,
    SUMMARY_FILE,
    TRAIN_LOSS,
    Goal,
    Metric,
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

# Metrics named the usual way need no declaration: their direction, label and axis scale.
KNOWN = {
    "loss": Metric("loss", Goal.MIN, "loss", "log"),
    "acc": Metric("acc", Goal.MAX, "accuracy", "linear"),
    "accuracy": Metric("accuracy", Goal.MAX, "accuracy", "linear"),
    "ppl": Metric("ppl", Goal.MIN, "perplexity", "log"),
    "perplexity": Metric("perplexity", Goal.MIN, "perplexity", "log"),
    "f1": Metric("f1", Goal.MAX, "F1", "linear"),
    "bpb": Metric("bpb", Goal.MIN, "bits per byte", "log"),
    "mse": Metric("mse", Goal.MIN, "mean squared error", "log"),
}


def declared(metrics: Sequence[Metric | str]) -> list[Metric]:
    out = []
    for m in metrics:
        if isinstance(m, Metric):
            out.append(m)
        elif m in KNOWN:
            out.append(KNOWN[m])
        else:
            raise ConfigError("metrics", m, f"not a metric lrexp knows by name ({', '.join(KNOWN)}): declare it as lrexp.record.Metric")
    if not out:
        raise ConfigError("metrics", list(metrics), "declare at least the loss: the first metric is what runs are compared by")
    return out


RECORD_FILES = {METRICS_FILE, SUMMARY_FILE}  # what a recorder writes, and all that overwrite=True may replace


class Recorder:
    """lrexp's record of a run trained by your own loop. ``optimizer`` (optional) is read for the LR,
    momentum and weight decay each logged step applied (one column per parameter group: ``lr`` for one
    group, else the groups' ``name`` or ``lr_0``, ``lr_1``...); without it, pass ``lr=`` to ``log``.
    ``grad_norm`` is recorded only when passed to ``log``. Runs are compared seed by seed: pairing them
    (the same init and data order for the same seed, whatever the schedule) is your loop's job.
    ``overwrite=True`` replaces an earlier record in ``run_dir`` (never anything else)."""

    def __init__(
        self,
        run_dir: str | Path,
        *,
        metrics: Sequence[Metric | str] = ("loss",),
        optimizer: Any = None,
        steps: int | None = None,
        seed: int | None = None,
        scheduler: str | None = None,
        task: str | None = None,
        peak_lr: float | None = None,
        settings: Mapping[str, Any] | None = None,
        overwrite: bool = False,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.metrics = declared(metrics)
        self.optimizer = optimizer
        groups = optimizer.param_groups if optimizer is not None else [{"lr": math.nan}]
        self.columns = hyperparameter_columns(groups)
        lr_columns = [c.column for c in self.columns if c.setting == "lr"]
        setting_columns = [c.column for c in self.columns if c.setting != "lr"]
        self.allowed = {c.column for c in self.columns} | {TRAIN_LOSS.name, GRAD_NORM} | {m.column(s) for s in SPLITS for m in self.metrics}
        if self.run_dir.exists() and any(self.run_dir.iterdir()):
            held = {p.name for p in self.run_dir.iterdir()}
            if not overwrite:
                raise ConfigError(
                    "run_dir", str(self.run_dir),
                    "already holds something: a recorder never writes over another run (another directory, or overwrite=True to replace a record)",
                )  # fmt: skip
            if not held <= RECORD_FILES:
                raise ConfigError(
                    "run_dir", str(self.run_dir), f"holds more than a record ({', '.join(sorted(held - RECORD_FILES))}): overwrite=True replaces only a record"
                )  # fmt: skip
            for name in held:  # only lrexp's two files: nothing else of the directory is touched
                (self.run_dir / name).unlink()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        every = dict(settings or {})
        if scheduler is not None:
            every.setdefault("scheduler", scheduler)
        if seed is not None:
            every.setdefault("seed", seed)
        self.summary = Summary(
            status=Status.COMPLETED,
            task=task,
            scheduler=scheduler,
            seed=seed,
            steps=steps,
            # The schedule's peak (torch's schedulers and lrexp's keep it as initial_lr), not the LR now: a warm-up
            # schedule built before the recorder has already set the LR to its first step's 0.
            peak_lr=peak_lr if peak_lr is not None else (float(groups[0].get("initial_lr", groups[0]["lr"])) if optimizer else None),
            metrics=self.metrics,
            lr_columns=lr_columns,
            setting_columns=setting_columns,
            batch=1,
            settings={k: str(v) for k, v in every.items()},
        )
        self.column_names = metric_columns(lr_columns + setting_columns, self.metrics)
        self.writer: MetricsWriter | None = MetricsWriter(self.run_dir / METRICS_FILE, self.column_names)
        self.rows: list[Row] = []
        self.pending: Row | None = None
        self.started = time.perf_counter()

    def log(self, step: int, **values: float | None) -> None:
        """Record numbers of ``step`` (0-based optimizer step): ``train_loss``, ``grad_norm`` and
        ``<split>_<metric>`` for the declared metrics (``val_loss``, ``test_acc``...). Numbers of the
        same step are merged into one row. The LR (and momentum and weight decay) are read from the
        optimizer the first time a step is logged, so call ``log`` before ``scheduler.step()``: the LR the
        step applied; or give them (``lr=...``, any hyperparameter column), which wins."""
        unknown = sorted(set(values) - self.allowed)
        if unknown:
            raise ConfigError("log", unknown[0], f"not a column of this record (its columns: {', '.join(sorted(self.allowed))})")
        if self.pending is not None and step < self.pending["step"]:
            raise ConfigError("step", step, f"steps must not go back: the last logged was {self.pending['step']}")
        if self.writer is None:  # more numbers after finish() (a test evaluation): the record is reopened
            self.writer = MetricsWriter(self.run_dir / METRICS_FILE, self.column_names, self.rows)
        if self.pending is None or step != self.pending["step"]:
            self._flush()
            self.pending = {"step": int(step), **self._settings()}
        self.pending.update({k: (None if v is None else float(v)) for k, v in values.items()})

    def _settings(self) -> dict[str, float]:
        if self.optimizer is not None:
            return read_hyperparameters(self.optimizer.param_groups, self.columns)
        return {"lr": math.nan}

    def _flush(self) -> None:
        if self.pending is None:
            return
        row = {**self.pending, "time_s": time.perf_counter() - self.started}
        if self.rows and self.rows[-1]["step"] == row["step"]:  # the same step again, after finish(): one row
            row = {**self.rows.pop(), **{k: v for k, v in row.items() if v is not None}}
            self.writer = MetricsWriter(self.run_dir / METRICS_FILE, self.column_names, self.rows)
        assert self.writer is not None
        self.rows.append(row)
        self.writer.append(row)
        self.pending = None

    def finish(self, status: Status | str = Status.COMPLETED, error: str | None = None) -> Summary:
        """The last row, then summary.json: the headline numbers of every logged metric. Numbers logged
        after it (a final test evaluation) reopen the record; finish again to count them."""
        self._flush()
        if self.writer is not None:
            self.writer.close()
            self.writer = None
        summary = self.summary
        summary.status, summary.error = Status(status), error
        summarize(self.rows, self.metrics, summary)
        summary.steps_done = (self.rows[-1]["step"] + 1) if self.rows else 0
        summary.wall_time_s = time.perf_counter() - self.started
        summary.steps_per_s = summary.steps_done / max(summary.wall_time_s, 1e-9)
        write_summary(self.run_dir, summary)
        return summary

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        if kind is None:
            self.finish()
        elif issubclass(kind, KeyboardInterrupt):
            self.finish(Status.INTERRUPTED, "KeyboardInterrupt")
        else:
            self.finish(Status.FAILED, f"{kind.__name__}: {error}")
