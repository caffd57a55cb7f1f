"""Task ``digits``: scikit-learn's bundled handwritten digits (1797 8x8 images), an MLP classifier.

All data lives as tensors on the device; a batch is a slice of a per-epoch shuffled copy, so there is no
DataLoader and no per-step host work beyond indexing. The data order is a pure function of (seed, step),
which is what makes resuming exact without saving any loader state.
"""

from __future__ import annotations

import gzip
import importlib.util
import itertools
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrexp.errors import ConfigError
from lrexp.record import Goal, Metric
from lrexp.tasks.base import Model, check_fractions

N_CLASSES = 10


def digits_file() -> Path:
    """The CSV that ``sklearn.datasets.load_digits`` parses.

    Read directly because importing sklearn.datasets costs more than the rest of lrexp's start-up
    (docs/performance.md, Performance); tests/test_tasks.py checks that the arrays equal load_digits()'s exactly.
    """
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise RuntimeError("task digits needs scikit-learn's bundled data: pip install scikit-learn")
    return Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"


def load_digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Images as float32 in [0, 16] (n, 64) and labels as int64 (n,)."""
    with gzip.open(digits_file(), "rt") as f:
        table = np.loadtxt(f, delimiter=",", dtype=np.float64)
    return table[:, :-1].astype(np.float32), table[:, -1].astype(np.int64)


def stratified_split(labels: np.ndarray, fractions: Sequence[float], seed: int) -> list[np.ndarray]:
    """Disjoint sorted index sets with each class in the same proportion in each: the training set, then
    one set per fraction (validation, test)."""
    rng = np.random.default_rng(seed)
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for c in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == c))
        start = 0
        for i, fraction in enumerate(fractions, 1):
            n = round(fraction * len(idx))
            parts[i].append(idx[start : start + n])
            start += n
        parts[0].append(idx[start:])
    return [np.sort(np.concatenate(p)) for p in parts]


def mlp(sizes: Sequence[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class DigitsTask:
    metrics = (Metric("loss", Goal.MIN, "loss", "log"), Metric("acc", Goal.MAX, "accuracy", "linear"))

    def __init__(
        self,
        batch_size: int,
        hidden: Sequence[int],
        val_fraction: float,
        test_fraction: float,
        split_seed: int,
        *,
        device: torch.device,
        seed: int,
    ) -> None:
        check_fractions(1.0, val_fraction=val_fraction, test_fraction=test_fraction)
        if val_fraction + test_fraction >= 0.9:
            raise ConfigError("task.test_fraction", test_fraction, f"leaves too little to train on with task.val_fraction={val_fraction}")
        images, labels = load_digits_arrays()
        train_idx, val_idx, test_idx = stratified_split(labels, (val_fraction, test_fraction), split_seed)
        if not 0 < batch_size <= len(train_idx):
            raise ConfigError("task.batch_size", batch_size, f"must be between 1 and the training set size ({len(train_idx)})")
        x = torch.from_numpy(images / 16.0).float()  # pixels 0..16 -> 0..1
        y = torch.from_numpy(labels)
        self.x_train, self.y_train = x[train_idx].to(device), y[train_idx].to(device)
        self.splits = {name: (x[idx].to(device), y[idx].to(device)) for name, idx in (("val", val_idx), ("test", test_idx))}
        self.batch_size, self.seed, self.device = batch_size, seed, device
        self.batches_per_epoch = len(train_idx) // batch_size  # the ragged tail is dropped, reshuffled each epoch
        self.model = mlp([images.shape[1], *hidden, N_CLASSES]).to(device)
        self._epoch = -1

    def param_groups(self) -> list[dict]:
        return [{"params": list(self.model.parameters())}]

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, i = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._shuffle(epoch)
        rows = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self._x_epoch[rows], self._y_epoch[rows]

    def _shuffle(self, epoch: int) -> None:
        # A distinct, reproducible order per (seed, epoch), drawn on the CPU so it is the same on every device.
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        perm = torch.randperm(len(self.y_train), generator=g).to(self.device)
        self._x_epoch, self._y_epoch, self._epoch = self.x_train[perm], self.y_train[perm], epoch

    @staticmethod
    def loss(model: Model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(x), y)

    @torch.no_grad()
    def evaluate(self, model: Model, split: str) -> dict[str, torch.Tensor]:
        """Loss and accuracy on a whole split, as device tensors (the caller syncs once)."""
        x, y = self.splits[split]
        logits = model(x).float()
        return {"loss": F.cross_entropy(logits, y), "acc": (logits.argmax(dim=1) == y).float().mean()}
