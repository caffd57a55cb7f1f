"""lrexp inside Hugging Face's ``Trainer``: a callback that writes lrexp's run record, and lrexp's
schedules as the Trainer's scheduler.

    from lrexp.integrations.transformers import LrexpCallback
    from lrexp.schedule import build

    optimizer = torch.optim.AdamW(model.parameters(), lr=5e-5)
    schedule = build("wsd", optimizer, steps=args.max_steps)  # wsd warms up by itself: the first 5%
    trainer = Trainer(model, args, train_dataset=..., eval_dataset=..., optimizers=(optimizer, schedule),
                      callbacks=[LrexpCallback("runs/wsd-s0", schedule=schedule, scheduler="wsd")])
    trainer.train()
    trainer.evaluate(test_dataset, metric_key_prefix="test")   # the held-out split the report compares

The Trainer steps the schedule after every optimizer step (``schedule.step()``) and saves its state in
its checkpoints; the callback hands a metric-driven schedule each evaluation's loss. Rows: the LR every
step applied (read from the optimizer as the step begins), the Trainer's logged training loss and
gradient norm at its ``logging_steps``, and its evaluations as ``val_*`` (``eval_*``) and ``test_*``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from lrexp.record import GRAD_NORM, Metric, read_hyperparameters
from lrexp.recorder import Recorder


class LrexpCallback(TrainerCallback):
    def __init__(
        self,
        run_dir: str | Path,
        *,
        metrics: tuple[Metric | str, ...] = ("loss",),
        schedule: Any = None,
        scheduler: str | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir, self.metrics, self.schedule = Path(run_dir), metrics, schedule
        self.scheduler, self.settings = scheduler, settings
        self.record: Recorder | None = None
        self.applied: dict[str, float] = {}  # the settings the current step applies
        self.ended = False

    def on_train_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        self.record = Recorder(
            self.run_dir, metrics=self.metrics, optimizer=optimizer, steps=state.max_steps, seed=args.seed,
            scheduler=self.scheduler, peak_lr=args.learning_rate if optimizer is None else None, settings=self.settings,
        )  # fmt: skip

    def on_step_begin(self, args: Any, state: Any, control: Any, optimizer: Any = None, **kwargs: Any) -> None:
        if self.record is not None and optimizer is not None:
            self.applied = read_hyperparameters(optimizer.param_groups, self.record.columns)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.record is None or not logs or "loss" not in logs:
            return
        # The Trainer logs after its global step counts the step just taken: lrexp's rows use that step,
        # and the settings that step applied (read as it began), not those the optimizer holds now.
        self.record.log(state.global_step - 1, train_loss=logs["loss"], **{GRAD_NORM: logs.get("grad_norm")}, **self.applied)

    def on_evaluate(self, args: Any, state: Any, control: Any, metrics: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.record is None or not metrics:
            return
        values = {}
        for key, value in metrics.items():
            prefix, _, name = key.partition("_")
            split = {"eval": "val", "test": "test"}.get(prefix)
            if split and any(m.name == name for m in self.record.metrics):
                values[f"{split}_{name}"] = value
        if values:  # the row of the step just taken, with the settings it applied
            self.record.log(max(state.global_step - 1, 0), **values, **self.applied)
            if self.ended:  # an evaluation after training (the test split): counted in the record now
                self.record.finish()
        loss = metrics.get("eval_loss")
        if self.schedule is not None and loss is not None and getattr(self.schedule, "metric_driven", False):
            self.schedule.after_eval(loss)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        """The record is finished; a later ``trainer.evaluate(test, metric_key_prefix="test")`` adds the
        test numbers to the last row and finishes it again."""
        if self.record is not None:
            self.record.finish()
            self.ended = True
