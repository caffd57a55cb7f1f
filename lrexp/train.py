"""The training loop. Read it top to bottom: set up from the config, train, leave the record.

Hot-path rules, each measured (scripts/bench.py): data is already on the device, the loss is summed on
the device and read back only at log rows, the LR is read from the optimizer (a Python float) only at
log rows, and nothing touches the disk between rows.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from lrexp import checkpoint
from lrexp.build import build_optimizer, build_scheduler, is_metric_driven
from lrexp.device import autocast, configure_backends, resolve_precision, select_device
from lrexp.loggers import Logger
from lrexp.preemption import StopRequest
from lrexp.record import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    STALL_NOTABLE,
    SUMMARY_FILE,
    MetricsWriter,
    Row,
    metric_columns,
    summarize,
    write_json,
)
from lrexp.schedules import lr_markers
from lrexp.tasks import build_task

log = logging.getLogger(__name__)


def train(
    cfg: DictConfig,
    run_dir: Path,
    *,
    names: Mapping[str, str] = {},
    loggers: Sequence[Logger] = (),
    hydra_dir: Optional[Path] = None,
    threads: int = 0,
) -> Dict[str, Any]:
    """Train as ``cfg`` says, write the run record into ``run_dir`` and return the summary.

    ``names`` are the config choices (task, optimizer, scheduler) for the record; ``hydra_dir`` is the
    run's ``.hydra/`` folder, saved into checkpoints so that a refused re-run can put it back.
    """
    run = cfg.run
    # --- set-up: device, seed, then everything the config describes -------------------------------
    if threads > 0:
        torch.set_num_threads(threads)
    device = select_device(run.device)
    precision = resolve_precision(run.precision, device)
    configure_backends(device)
    resume_from = checkpoint.open_run_dir(run_dir, cfg, hydra_dir)

    seed_everything(cfg.seed)
    task = build_task(cfg.task, device, cfg.seed)
    model = task.model
    optimizer = build_optimizer(cfg.optimizer, task.param_groups(), device)
    scheduler = build_scheduler(cfg.scheduler, optimizer)
    metric_driven = is_metric_driven(scheduler)  # ReduceLROnPlateau: stepped with the validation loss
    forward = compile_or_warn(model, task, device, precision) if run.compile else model

    lr_columns = lr_column_names(optimizer)
    info = {
        "task": names.get("task"),
        "optimizer": names.get("optimizer"),
        "scheduler": names.get("scheduler"),
        "scheduler_target": cfg.scheduler._target_,
        "optimizer_target": cfg.optimizer._target_,
        "seed": cfg.seed,
        "steps": run.steps,
        "peak_lr": cfg.optimizer.lr,
        "metrics": list(task.metrics),
        "lr_columns": lr_columns,
        "lr_markers": lr_markers(OmegaConf.to_container(cfg.scheduler, resolve=True), run.steps),
        "device": str(device),
        "precision": precision.value,
        "compiled": forward is not model,
        "threads": torch.get_num_threads(),
        "parameters": sum(p.numel() for p in model.parameters()),
    }

    # --- state: fresh, or exactly where the checkpoint left it -------------------------------------
    step, rows, elapsed, time_to_first_step = 0, [], 0.0, None
    loss_sum, n_summed = torch.zeros((), device=device), 0  # training loss since the last row
    if resume_from is not None:
        model.load_state_dict(resume_from["model"])
        optimizer.load_state_dict(resume_from["optimizer"])
        scheduler.load_state_dict(resume_from["scheduler"])
        checkpoint.set_rng_states(resume_from["rng"])
        step, rows, elapsed = resume_from["step"], resume_from["rows"], resume_from["elapsed_s"]
        time_to_first_step = resume_from["time_to_first_step_s"]  # the original launch's, not a resume's
        loss_sum.fill_(resume_from["loss_sum"])
        n_summed = resume_from["n_summed"]
        log.info("resuming %s at step %d of %d", run_dir, step, run.steps)
    metrics = MetricsWriter(run_dir / METRICS_FILE, metric_columns(lr_columns, task.metrics), rows)
    saved_hydra_files = checkpoint.hydra_files(hydra_dir)
    for logger in loggers:  # the run directory is accepted and the run is built: loggers may open
        logger.start()

    def save_checkpoint() -> None:
        checkpoint.save(
            run_dir / CHECKPOINT_FILE,
            {
                "step": step,
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": checkpoint.rng_states(),
                "rows": rows,
                "elapsed_s": time.perf_counter() - t_start,
                "time_to_first_step_s": time_to_first_step,
                "loss_sum": loss_sum.item(),
                "n_summed": n_summed,
                "fingerprint": checkpoint.fingerprint(cfg),
                "hydra_files": saved_hydra_files,
            },
        )

    # --- the loop ----------------------------------------------------------------------------------
    # Plain ints: reading an OmegaConf node costs microseconds, and these are read every step.
    steps, log_every, eval_every = int(run.steps), int(run.log_every), int(run.eval_every)
    checkpoint_every, diverge_factor = int(run.checkpoint_every), run.diverge_factor
    status, diverged_at = "completed", None
    stop = StopRequest()
    bar = tqdm(total=steps, initial=step, disable=None if run.progress else True, unit="step", dynamic_ncols=True)
    t_start = time.perf_counter() - elapsed
    with metrics, stop, bar, logging_redirect_tqdm():
        model.train()
        while step < steps:
            last = step == steps - 1
            evaluate = step % eval_every == 0 or last
            log_row = evaluate or step % log_every == 0
            if log_row:  # the LR this step applies: read before scheduler.step()
                lrs = [group["lr"] for group in optimizer.param_groups]

            x, y = task.train_batch(step)
            with autocast(device, precision):
                loss = task.loss(forward, x, y)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            if not metric_driven:
                scheduler.step()
            loss_sum += loss.detach()
            n_summed += 1
            if time_to_first_step is None:
                time_to_first_step = time.time() - process_start_time()

            if log_row:
                row: Row = {"step": step, "lr": lrs[0], **dict(zip(lr_columns[1:], lrs)), "train_loss": (loss_sum / n_summed).item()}
                loss_sum.zero_()
                n_summed = 0
                if evaluate:
                    model.eval()
                    with autocast(device, precision):  # validation at the training precision
                        values = task.evaluate(forward)
                    model.train()
                    row.update(zip(values, torch.stack(list(values.values())).tolist()))
                    if metric_driven:
                        scheduler.step(row["val_loss"])
                row["time_s"] = time.perf_counter() - t_start
                rows.append(row)
                metrics.append(row)
                for logger in loggers:
                    logger.log_row(row)
                bar.update(step + 1 - bar.n)
                bar.set_postfix(lr=f"{lrs[0]:.3g}", loss=f"{row['train_loss']:.4g}", refresh=False)
                if evaluate:
                    log.info(format_row(row))
                if is_diverged(row, rows[0]["train_loss"], diverge_factor):
                    status, diverged_at = "diverged", step
                    log.warning("diverged at step %d (train_loss %s): stopping; the record is kept", step, row["train_loss"])
            step += 1
            if status == "diverged":
                break

            if stop.signum is not None:
                status = "interrupted"
                break
            if step % checkpoint_every == 0 or step == steps:
                save_checkpoint()

    # --- the record --------------------------------------------------------------------------------
    if status == "interrupted":
        save_checkpoint()
        log.warning("%s at step %d: checkpoint written; continue with run.resume=true", stop.name, step)
    wall = time.perf_counter() - t_start
    summary = {
        "status": status,
        **info,
        **summarize(rows, task.metrics),
        "steps_done": step,  # optimizer steps taken, logged or not
        "diverged_at_step": diverged_at,
        "wall_time_s": wall,
        "steps_per_s": step / max(wall, 1e-9),  # over every segment of a resumed run
        "time_to_first_step_s": time_to_first_step,
    }
    warn_if_stalled(summary)
    for logger in loggers:
        summary.update(logger.summary_fields())
    write_json(run_dir / SUMMARY_FILE, summary)
    for logger in loggers:
        logger.finish(summary, run_dir)
    if status == "interrupted":
        stop.exit()
    return summary


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def lr_column_names(optimizer: torch.optim.Optimizer) -> List[str]:
    """``lr`` for a single parameter group; with several, ``lr`` (the first group's) then one per group."""
    groups = optimizer.param_groups
    if len(groups) == 1:
        return ["lr"]
    return ["lr"] + [f"lr_{g.get('name', i)}" for i, g in enumerate(groups)]


def is_diverged(row: Row, first_loss: float, factor: Optional[float]) -> bool:
    losses = [row["train_loss"], row.get("val_loss")]
    if any(v is not None and not math.isfinite(v) for v in losses):
        return True
    return factor is not None and math.isfinite(first_loss) and row["train_loss"] > factor * first_loss


def format_row(row: Row) -> str:
    return " | ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items() if v is not None)


def warn_if_stalled(summary: Dict[str, Any]) -> None:
    """Say so when most of a run trained at a negligible LR (ExponentialLR(0.99) per step does)."""
    frac = summary.get("lr_stalled_fraction") or 0.0
    if frac > STALL_NOTABLE:
        log.warning(
            "LR below 1e-3 x its peak from step %s on: %.0f%% of the run trained at a negligible rate",
            summary["lr_stalled_from_step"],
            100 * frac,
        )


def compile_or_warn(model: torch.nn.Module, task: Any, device: torch.device, precision: Any) -> torch.nn.Module:
    """torch.compile, tried on one real batch; eager (with a warning) where it cannot compile."""
    try:
        compiled = torch.compile(model)
        x, y = task.train_batch(0)
        with autocast(device, precision):
            task.loss(compiled, x, y).backward()
        return compiled
    except Exception as e:  # noqa: BLE001 - any compiler failure means: train eagerly
        # Inductor's messages run to several paragraphs; the first line names the cause.
        cause = next((line.strip() for line in str(e).splitlines() if line.strip()), type(e).__name__)
        log.warning("run.compile=true: torch.compile failed (%s); training eagerly", cause)
        return model
    finally:
        model.zero_grad(set_to_none=True)


def process_start_time() -> float:
    """When this process started (Unix time), from /proc on Linux; else when lrexp was imported."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(float(l.split()[1]) for l in open("/proc/stat") if l.startswith("btime"))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


_IMPORTED_AT = time.time()
