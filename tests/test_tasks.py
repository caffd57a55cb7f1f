"""The digits task: the data is scikit-learn's, the split is fixed and stratified, batches are a function of (seed, step)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lrexp.errors import ConfigError
from lrexp.tasks.digits import DigitsTask, load_digits_arrays, stratified_split


def make(**kw) -> DigitsTask:
    args = dict(batch_size=128, hidden=[32], val_fraction=0.2, test_fraction=0.2, split_seed=0, device=torch.device("cpu"), seed=0)
    args.update(kw)
    return DigitsTask(**args)


def test_loader_equals_sklearns_load_digits():
    from sklearn.datasets import load_digits

    ref = load_digits()
    images, labels = load_digits_arrays()
    assert images.shape == (1797, 64) and labels.shape == (1797,)
    np.testing.assert_array_equal(images, ref.data.astype(np.float32))
    np.testing.assert_array_equal(labels, ref.target)


def test_split_is_stratified_disjoint_and_fixed():
    _, labels = load_digits_arrays()
    train, val, test = stratified_split(labels, (0.2, 0.2), seed=0)
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert len(train) + len(val) + len(test) == len(labels) and (len(val), len(test)) == (359, 359)
    for part in (val, test):
        for c in range(10):
            share = np.mean(labels[part] == c) / np.mean(labels == c)
            assert share == pytest.approx(1.0, abs=0.05)
    again = stratified_split(labels, (0.2, 0.2), seed=0)
    for a, b in zip(again, (train, val, test)):
        np.testing.assert_array_equal(a, b)


def test_split_does_not_move_with_the_run_seed():
    a, b = make(seed=0), make(seed=7)
    for split in ("val", "test"):
        (xa, ya), (xb, yb) = a.splits[split], b.splits[split]
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_batches_are_a_function_of_seed_and_step():
    a, b = make(), make()
    for step in [0, 1, 10, 11, 25, 3]:  # out of order, across epochs (11 batches per epoch)
        xa, ya = a.train_batch(step)
        xb, yb = b.train_batch(step)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x0, _ = make(seed=1).train_batch(0)
    assert not torch.equal(x0, a.train_batch(0)[0])


def test_an_epoch_visits_distinct_examples():
    t = make()
    seen = torch.cat([t.train_batch(s)[1] for s in range(t.batches_per_epoch)])
    assert len(seen) == t.batches_per_epoch * 128
    xs = torch.cat([t.train_batch(s)[0] for s in range(t.batches_per_epoch)])
    assert len(torch.unique(xs, dim=0)) >= len(xs) - 5  # digits has a handful of duplicate images


@pytest.mark.parametrize("batch", [0, 5000])
def test_batch_size_must_fit_the_training_set(batch):
    n_train = len(stratified_split(load_digits_arrays()[1], (0.2, 0.2), seed=0)[0])
    with pytest.raises(ConfigError) as e:
        make(batch_size=batch)
    assert e.value.key == "task.batch_size" and f"({n_train})" in str(e.value)


def test_data_lives_on_the_device():
    t = make()
    assert t.x_train.device.type == "cpu" and t.x_train.dtype == torch.float32
    assert float(t.x_train.max()) == 1.0 and float(t.x_train.min()) == 0.0
