"""lrexp inside Lightning: a callback that writes lrexp's run record and drives lrexp's schedules.

    from lrexp.integrations.lightning import LrexpCallback
    from lrexp.schedule import build

    class Module(L.LightningModule):
        def training_step(self, batch, i):
            loss = ...
            return loss
        def validation_step(self, batch, i):
            self.log("val_loss", ...); self.log("val_acc", ...)
        def test_step(self, batch, i):
            self.log("test_loss", ...)
        def configure_optimizers(self):
            return self.optimizer     # no scheduler here: the callback steps it

    optimizer = torch.optim.AdamW(module.parameters(), lr=3e-4); module.optimizer = optimizer
    callback = LrexpCallback("runs/wsd-s0", schedule=build("wsd", optimizer, steps=1000), scheduler="wsd", metrics=["loss", "acc"])
    trainer = L.Trainer(max_steps=1000, callbacks=[callback], val_check_interval=100)
    trainer.fit(module, train_loader, val_loader); trainer.test(module, test_loader)

Lightning accepts only torch's own scheduler classes from ``configure_optimizers``, so the callback
steps the schedule after every optimizer step and hands it each validation loss (a metric-driven
schedule), exactly as lrexp's loop does. Rows: the LR (momentum, weight decay) every step applied, read
as its batch starts; the training loss returned by ``training_step``, summed on the device and read
every ``log_every`` steps; ``val_*`` and ``test_*`` from what the module logs (``self.log``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lrexp.record import Metric, read_hyperparameters
from lrexp.recorder import Recorder


class LrexpCallback(pl.Callback):
    def __init__(
        self,
        run_dir: str | Path,
        *,
        metrics: tuple[Metric | str, ...] | list[Metric | str] = ("loss",),
        schedule: Any = None,
        scheduler: str | None = None,
        settings: dict[str, Any] | None = None,
        log_every: int = 10,
    ) -> None:
        self.run_dir, self.metrics, self.schedule = Path(run_dir), tuple(metrics), schedule
        self.scheduler, self.settings, self.log_every = scheduler, settings, log_every
        self.record: Recorder | None = None
        self.applied: dict[str, float] = {}
        self.loss_sum: torch.Tensor | None = None
        self.summed = 0  # micro-batches in loss_sum
        self.stepped = 0  # trainer.global_step when the schedule was last stepped
        self.ended = False

    def on_fit_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        seed = os.environ.get("PL_GLOBAL_SEED")  # what lightning's seed_everything set, if it was called
        self.record = Recorder(
            self.run_dir, metrics=self.metrics, optimizer=trainer.optimizers[0], steps=trainer.max_steps if trainer.max_steps > 0 else None,
            seed=int(seed) if seed else None, scheduler=self.scheduler, settings=self.settings,
        )  # fmt: skip

    def on_train_batch_start(self, trainer: pl.Trainer, module: pl.LightningModule, batch: Any, batch_idx: int) -> None:
        if self.record is not None:
            self.applied = read_hyperparameters(trainer.optimizers[0].param_groups, self.record.columns)

    def on_train_batch_end(self, trainer: pl.Trainer, module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.record is None:
            return
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.loss_sum = loss.detach() if self.loss_sum is None else self.loss_sum + loss.detach()
        self.summed += 1
        # With accumulate_grad_batches=k this runs after every micro-batch, and the optimizer steps after every
        # k-th: the schedule and the record follow optimizer steps (global_step), as lrexp's loop does.
        if trainer.global_step == self.stepped:
            return
        self.stepped = trainer.global_step
        step = trainer.global_step - 1  # the optimizer step just taken
        if step % self.log_every == 0 or step == trainer.max_steps - 1:
            self.record.log(step, train_loss=(self.loss_sum / self.summed).item(), **self.applied)
            self.loss_sum, self.summed = None, 0
        if self.schedule is not None:
            self.schedule.step()  # torch's name: counted, so that stepping past the run's length is warned of

    def on_validation_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        self._evaluated(trainer, "val")
        loss = trainer.callback_metrics.get("val_loss")
        if self.schedule is not None and loss is not None and getattr(self.schedule, "metric_driven", False):
            self.schedule.after_eval(float(loss))

    def on_test_epoch_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        self._evaluated(trainer, "test")
        if self.record is not None and self.ended:  # after training: counted in the record now
            self.record.finish()

    def _evaluated(self, trainer: pl.Trainer, split: str) -> None:
        if self.record is None:
            return
        values = {
            f"{split}_{m.name}": float(trainer.callback_metrics[f"{split}_{m.name}"])
            for m in self.record.metrics
            if f"{split}_{m.name}" in trainer.callback_metrics
        }
        if values:  # the row of the step just taken, with the settings it applied
            self.record.log(max(trainer.global_step - 1, 0), **values, **self.applied)

    def on_fit_end(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        """The record is finished; a later ``trainer.test`` adds its numbers to the last row and finishes
        it again."""
        if self.record is not None:
            self.record.finish()
            self.ended = True

    def on_exception(self, trainer: pl.Trainer, module: pl.LightningModule, exception: BaseException) -> None:
        if self.record is not None:
            self.record.finish("failed", f"{type(exception).__name__}: {exception}")
