"""Several runs of one task trained together in one process: what ``hydra/launcher=batched`` runs.

K runs whose task and loop settings agree (so their models have one shape and their data one layout) and
that differ in schedule, peak LR, optimizer settings or seed train as one computation:

- their parameters are stacked along a new first dimension (``torch.func.stack_module_state``), and each
  run's model gets *views* of its slice as its parameters;
- one forward and backward pass computes all K losses: ``torch.func.vmap`` over the task's own ``loss``,
  called with ``torch.func.functional_call`` of the task's own model (nothing about the model is
  rewritten, so any task whose loss and evaluation vmap can batch works);
- then each run does exactly what it does alone (lrexp.train.Run, shared line for line): its gradients
  are views of its slice of the stacked gradients, its own real optimizer steps its own parameter views
  (so the stacked tensors move with it), its own real scheduler steps, and its rows, checkpoints, record
  and loggers go to its own run directory. Every run draws its own batches (its seed and step).

Independence: a run that diverges stops and is recorded while the others go on (its slot is still
computed, and ignored); a run that fails to build is reported back and left out; a metric-driven
scheduler sees its own run's validation loss. Resuming is per run: each loads its own checkpoint, and a
run that was saved at a later step waits until the others reach it.

What differs from training alone is only the arithmetic of the batched kernels (bmm instead of mm,
another summation order): losses agree to float32 rounding at first and drift apart slowly after that, as
any two orderings of float32 arithmetic do (docs/clusters.md, Batched sweeps, states the tolerance measured);
LRs agree exactly, since they come from the same scheduler objects. With dropout, each run draws its
own masks (vmap's randomness="different"), not the masks it would draw alone.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from lrexp.checkpoint import RngState
from lrexp.device import autocast
from lrexp.errors import describe
from lrexp.record import Row
from lrexp.tasks.base import split_batch, stack_batches
from lrexp.train import Run, RunSpec, evaluation_point, open_device

log = logging.getLogger(__name__)

# The run settings that shape the loop itself: runs batched together must agree on them (and on the
# whole task config). Everything else (seed, optimizer, scheduler, logger, run.diverge_factor) is per run.
SHARED_RUN_KEYS = ("steps", "log_every", "eval_every", "test_every", "checkpoint_every", "device", "precision")


def batch_key(cfg: DictConfig) -> str | None:
    """Jobs with equal keys can train together; None: this job trains alone (run.compile: a compiled
    model is not a function vmap can batch)."""
    if cfg.run.compile:
        return None
    shared = {"task": OmegaConf.to_container(cfg.task, resolve=True), "run": {k: cfg.run[k] for k in SHARED_RUN_KEYS}}
    return OmegaConf.to_yaml(OmegaConf.create(shared), sort_keys=True)


class CannotBatch(Exception):
    """These runs cannot train as one computation (the task's loss or evaluation is not something
    torch.func.vmap can batch); nothing was written, and each can still train alone."""


class Stacked:
    """K models of one architecture as stacked tensors; each model's parameters and buffers become views
    of its slice, so that its own optimizer, checkpoint and state_dict work on it as on a model alone."""

    def __init__(self, models: Sequence[nn.Module]) -> None:
        from torch.func import stack_module_state

        # The module whose forward is called, with the stacked tensors in place of its own (on no device:
        # every parameter and buffer is passed in, strictly, so none of its own can be used by mistake).
        self.base = copy.deepcopy(models[0]).to("meta")
        params, buffers = stack_module_state(list(models))
        self.params: dict[str, torch.Tensor] = params  # one per distinct parameter (tied ones once)
        self.buffers: dict[str, torch.Tensor] = buffers
        # Every name the module uses, tied parameters included, to the stacked tensor it stands for: a
        # tied output layer is the embedding, and its gradient adds up in the embedding's, as alone.
        first = models[0]
        canonical = {id(p): name for name, p in first.named_parameters()}
        self.aliases = {name: canonical[id(p)] for name, p in first.named_parameters(remove_duplicate=False)}
        canonical_buffers = {id(b): name for name, b in first.named_buffers()}
        self.buffer_aliases = {name: canonical_buffers[id(b)] for name, b in first.named_buffers(remove_duplicate=False)}
        self.views = [self._adopt(model, i) for i, model in enumerate(models)]  # per model, in params' order

    def mode(self, training: bool) -> None:
        """Train or eval mode for the stacked forward: the flags set module by module, as nn.Module.train does.
        Not base.train(): a Hugging Face model overrides it and asks its (meta) device, which it refuses."""
        for module in self.base.modules():
            module.training = training

    def _adopt(self, model: nn.Module, i: int) -> list[nn.Parameter]:
        """Make slice ``i`` of the stacked tensors ``model``'s parameters and buffers. A parameter shared
        by several modules (tied embeddings) is replaced wherever it appears."""
        replaced = {
            id(p): nn.Parameter(self.params[name].detach()[i], requires_grad=p.requires_grad) for name, p in model.named_parameters()
        }
        views = [replaced[id(p)] for p in dict(model.named_parameters()).values()]
        for module in model.modules():
            for key, p in list(module._parameters.items()):
                if p is not None and id(p) in replaced:
                    module._parameters[key] = replaced[id(p)]
        for name, _ in model.named_buffers(remove_duplicate=False):
            owner, _, key = name.rpartition(".")
            model.get_submodule(owner)._buffers[key] = self.buffers[self.buffer_aliases[name]][i]
        return views

    def function(self, params: Mapping[str, torch.Tensor], buffers: Mapping[str, torch.Tensor]) -> Callable[..., Any]:
        """The model of one slice, as a callable: what a task's loss and evaluate call."""
        from torch.func import functional_call

        every = {name: params[c] for name, c in self.aliases.items()}
        every.update({name: buffers[c] for name, c in self.buffer_aliases.items()})

        def model(*args: Any, **kwargs: Any) -> Any:
            return functional_call(self.base, every, args, kwargs, tie_weights=False, strict=True)

        return model

    def set_grads(self, grads: Sequence[torch.Tensor] | None) -> None:
        """Each run's parameter gradients: views of its slice of the stacked gradients (no copy)."""
        for i, views in enumerate(self.views):
            for j, view in enumerate(views):
                view.grad = None if grads is None else grads[j][i]


class Batch:
    """Runs of one task, their models stacked (``Stacked``) before their optimizers were built over the
    stacked views: the engine lrexp.train.train_runs steps them with, in place of lrexp.train.Alone."""

    def __init__(self, runs: Sequence[Run], stacked: Stacked) -> None:
        from torch.func import vmap

        self.runs = list(runs)
        task = self.task = self.runs[0].task  # the validation and test splits are the task's, not the seed's
        self.device, self.precision = self.runs[0].device, self.runs[0].precision
        self.accum = int(getattr(task, "grad_accum", 1))
        self.stacked = stacked

        def loss(params: dict, buffers: dict, x: Any, y: Any) -> torch.Tensor:
            return task.loss(stacked.function(params, buffers), x, y)

        def evaluation(split: str) -> Callable[..., dict[str, torch.Tensor]]:
            return lambda params, buffers: task.evaluate(stacked.function(params, buffers), split)

        # torch has no vmap rule for CPU flash attention (sdpa) and loops over the runs there, saying so
        # once per process; the result is exact, and docs/clusters.md, "Batched sweeps", gives the cost.
        warnings.filterwarnings("ignore", message="There is a performance drop because we have not yet implemented the batching rule")
        # randomness="different": with dropout, every run draws its own masks.
        self._loss = vmap(loss, randomness="different")
        self._evaluate = {split: vmap(evaluation(split), randomness="different") for split in ("val", "test")}
        self.order = list(stacked.params.values())
        # Each run's training loss summed on the device since its last row; each run's LoopState holds a
        # view of its own element, so that a checkpoint saves and restores it as it would alone.
        self.loss_sums = torch.zeros(len(self.runs), device=self.device)
        for i, run in enumerate(self.runs):
            self.loss_sums[i] = run.state.loss_sum
            run.state.loss_sum = self.loss_sums[i]

    def train_mode(self) -> None:
        self.stacked.mode(training=True)

    def loss_and_grads(self, step: int) -> torch.Tensor:
        """Every run's loss on its own batch of ``step`` (K,), and every run's gradients set. With the
        task's ``grad_accum`` > 1, micro-batch by micro-batch, gradients summed as alone."""
        xs, ys = zip(*(run.task.train_batch(step) for run in self.runs))
        x, y = stack_batches(xs), stack_batches(ys)
        parts = zip(split_batch_dim1(x, self.accum), split_batch_dim1(y, self.accum)) if self.accum > 1 else [(x, y)]
        total: torch.Tensor | None = None
        grads: list[torch.Tensor] | None = None
        for xp, yp in parts:
            with autocast(self.device, self.precision):
                losses = self._loss(self.stacked.params, self.stacked.buffers, xp, yp)
            if self.accum > 1:
                losses = losses / self.accum
            step_grads = torch.autograd.grad(losses.sum(), self.order)
            grads = list(step_grads) if grads is None else [g + h for g, h in zip(grads, step_grads)]
            total = losses.detach() if total is None else total + losses.detach()
        assert grads is not None and total is not None
        # Contiguous: vmap's backward may return a weight's gradient transposed in memory, and fused
        # optimizer kernels read a gradient as laid out like its parameter (a strided view would be
        # read in the wrong order, silently).
        self.stacked.set_grads([g.contiguous() for g in grads])
        return total

    def evaluate(self, split: str) -> list[Row]:
        """Every metric of every run on ``split``: one vmapped evaluation, one host sync. A schedule-free
        optimizer's run is evaluated at its averaged point, as alone (lrexp.train.evaluation_point)."""
        self.stacked.mode(training=False)
        with contextlib.ExitStack() as points:
            for run in self.runs:
                points.enter_context(evaluation_point(run.optimizer))
            with autocast(self.device, self.precision):
                values = self._evaluate[split](self.stacked.params, self.stacked.buffers)
        self.stacked.mode(training=True)
        names = list(values)
        table = torch.stack([values[n].float() for n in names]).tolist()  # (metrics, runs)
        return [{f"{split}_{n}": table[m][i] for m, n in enumerate(names)} for i in range(len(self.runs))]

    def probe(self) -> None:
        """One forward, backward and evaluation before anything is written: a task that vmap cannot batch
        fails here (CannotBatch), and its runs can still train alone. Nothing moves: no step is taken,
        the gradients are dropped and the random number generators are put back."""
        rng = RngState()
        saved = rng.state_dict()
        try:
            self.loss_and_grads(min(run.state.step for run in self.runs))
            self.evaluate("val")
        except Exception as e:
            raise CannotBatch(describe(e)) from e
        finally:
            self.stacked.set_grads(None)
            rng.load_state_dict(saved)


def split_batch_dim1(batch: Any, n: int) -> list[Any]:
    """A stacked batch (runs first) cut into ``n`` micro-batches along each run's own batch dimension."""
    moved = _tree_map(lambda t: t.movedim(1, 0), batch)
    return [_tree_map(lambda t: t.movedim(0, 1), part) for part in split_batch(moved, n)]


def _tree_map(fn: Callable[[torch.Tensor], torch.Tensor], batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return fn(batch)
    if isinstance(batch, dict):
        return {k: _tree_map(fn, v) for k, v in batch.items()}
    return type(batch)(_tree_map(fn, v) for v in batch)


def build_batch(specs: Sequence[RunSpec], threads: int = 0) -> tuple[Batch | None, list[Run | BaseException]]:
    """Every spec's Run, built once, in lrexp.train.Run's two halves: every run's task and freshly
    initialised model (``build_task``), then their models stacked, then every run's optimizer, schedule
    and checkpoint state over its model's stacked views (``build_rest``). A run that cannot be built gets
    its exception back and the others go on. The Batch is None when fewer than two runs were built: train
    those alone. CannotBatch when the task cannot be batched."""
    device, precision = open_device(specs[0].cfg, threads)
    built: list[Run | BaseException] = [_build_task(spec, device, precision) for spec in specs]
    while True:
        runs = [r for r in built if isinstance(r, Run)]
        if len(runs) < 2:
            return None, built
        stacked = Stacked([run.task.model for run in runs])
        failed = False
        for i, run in enumerate(built):
            if isinstance(run, Run):
                try:
                    run.build_rest(batch=len(runs))
                except Exception as e:
                    built[i], failed = e, True
        if not failed:
            break
        # One could not be built (a bad optimizer setting, a checkpoint that does not fit): the others'
        # optimizers step slots of a stack that still has its slot, so they are built again without it.
        # Only on this path is a run built twice.
        built = [_build_task(spec, device, precision) if isinstance(r, Run) else r for spec, r in zip(specs, built)]
    batch = Batch(runs, stacked)
    batch.probe()
    return batch, built


def _build_task(spec: RunSpec, device: torch.device, precision: Any) -> Run | BaseException:
    try:
        run = Run(spec, device, precision)
        run.build_task()
        return run
    except Exception as e:
        return e
