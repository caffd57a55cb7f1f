"""The LR a run logs is, step by step, what the torch/transformers scheduler object itself yields.

Each reference below is built by hand with the article's (or the YAML comment's) literal numbers, not
from lrexp's config, and stepped the canonical way: read the LR the optimizer applies, then
optimizer.step(), then scheduler.step(). Runs are real training runs on digits; the hidden layer is
narrow only to keep 3000 logged steps per schedule fast (the LR does not depend on the model).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import transformers
from torch.optim import lr_scheduler as S

from lrexp.record import read_metrics
from tests.helpers import SCHEDULES, stepped, train_in_process

# End to end: real training runs and real processes (the fast tier is pytest -m 'not slow').
pytestmark = pytest.mark.slow

LR, STEPS = 5e-5, 3000
ARTICLE = ["optimizer.lr=5e-5", "run.steps=3000", "run.log_every=1", "task.hidden=[16]"]

REFERENCES = {
    # The article's five.
    "exp": lambda o: S.ExponentialLR(o, gamma=0.99),
    "cosine": lambda o: S.CosineAnnealingLR(o, T_max=1000),
    "step": lambda o: S.StepLR(o, step_size=500, gamma=0.1),
    "poly_warmup": lambda o: transformers.get_polynomial_decay_schedule_with_warmup(
        o, num_warmup_steps=100, num_training_steps=3000, lr_end=1e-7, power=2.0
    ),
    "multistep": lambda o: S.MultiStepLR(o, milestones=[1000, 2000], gamma=0.1),
    # lrexp's others, at the parameters their YAML files document for a 3000-step run.
    "constant": lambda o: transformers.get_constant_schedule(o),
    "two_stage": lambda o: S.MultiStepLR(o, milestones=[2250], gamma=0.1),
    "linear_warmup": lambda o: transformers.get_linear_schedule_with_warmup(o, 150, 3000),
    "cosine_warmup": lambda o: transformers.get_cosine_with_min_lr_schedule_with_warmup(o, 150, 3000, min_lr_rate=0.1),
    "wsd": lambda o: transformers.get_wsd_schedule(o, 150, 600, 3000, decay_type="1-sqrt", min_lr_ratio=0.0),
    "wsd_linear": lambda o: transformers.get_wsd_schedule(o, 150, 600, 3000, decay_type="linear", min_lr_ratio=0.0),
    "wsd_short": lambda o: transformers.get_wsd_schedule(o, 150, 150, 3000, decay_type="1-sqrt", min_lr_ratio=0.0),
    "wsd_trunk": lambda o: transformers.get_constant_schedule_with_warmup(o, 150),
    "onecycle": lambda o: S.OneCycleLR(o, max_lr=LR, total_steps=3000, pct_start=0.3, div_factor=25.0, final_div_factor=1e4),
    "sgdr": lambda o: S.CosineAnnealingWarmRestarts(o, T_0=429, T_mult=2),
    "inverse_sqrt": lambda o: transformers.get_inverse_sqrt_schedule(o, num_warmup_steps=150),
    "cosine_full": lambda o: S.CosineAnnealingLR(o, T_max=3000),
    "linear": lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.0, total_iters=3000),
    "polynomial": lambda o: S.PolynomialLR(o, total_iters=3000, power=2.0),
    "cyclic": lambda o: S.CyclicLR(o, base_lr=5e-6, max_lr=LR, step_size_up=375, mode="triangular2", base_momentum=0.85, max_momentum=0.95),
    "constant_warmup": lambda o: S.ConstantLR(o, factor=0.1, total_iters=150),
    "cosine_restarts": lambda o: transformers.get_cosine_with_hard_restarts_schedule_with_warmup(o, 150, 3000, num_cycles=3),
    # lrexp's warm-up (150 steps) before a constant LR: transformers' constant schedule with warm-up, exactly.
    "schedule_free": lambda o: transformers.get_constant_schedule_with_warmup(o, 150),
}
METRIC_DRIVEN = {  # stepped with the validation loss at every evaluation, checked against a hand-fed reference
    "plateau": lambda o: S.ReduceLROnPlateau(o, mode="min", factor=0.5, patience=2, threshold=1e-3, min_lr=0.0),
    "greedy": lambda o: transformers.get_greedy_schedule(
        o, mode="min", factor=0.9, patience=2, cooldown=0, warmup=0, min_lr=3e-5, max_lr=3e-2, smooth=False
    ),
}


def reference_lrs(make: Callable, steps: int = STEPS, lr: float = LR) -> list[float]:
    optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    return stepped(make(optimizer), optimizer, steps)


def logged_lrs(run_dir, schedule: str, *extra: str) -> list[float]:
    train_in_process(run_dir, f"scheduler={schedule}", *ARTICLE, *extra)
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == list(range(STEPS)), "log_every=1 must give one row per step"
    return [r["lr"] for r in rows]


def test_every_schedule_has_a_reference():
    assert set(REFERENCES) | set(METRIC_DRIVEN) == set(SCHEDULES)


@pytest.mark.parametrize("schedule", sorted(REFERENCES))
def test_logged_lr_equals_the_library_object_at_every_step(tmp_path, schedule):
    logged = logged_lrs(tmp_path, schedule)
    expected = reference_lrs(REFERENCES[schedule])
    mismatches = [(s, a, b) for s, (a, b) in enumerate(zip(logged, expected)) if a != b]
    assert not mismatches, f"first mismatches (step, logged, reference): {mismatches[:3]}"


def change_points(lrs: list[float]) -> list[int]:
    return [s for s in range(1, len(lrs)) if lrs[s] != lrs[s - 1]]


def test_step_and_multistep_change_exactly_at_their_steps(tmp_path):
    step_lrs = logged_lrs(tmp_path / "step", "step")
    assert change_points(step_lrs) == [500, 1000, 1500, 2000, 2500]
    assert step_lrs[499] == LR and step_lrs[500] == pytest.approx(LR * 0.1, rel=1e-12)
    multi_lrs = logged_lrs(tmp_path / "multistep", "multistep")
    assert change_points(multi_lrs) == [1000, 2000]
    assert multi_lrs[999] == LR and multi_lrs[1000] == pytest.approx(LR * 0.1, rel=1e-12)
    assert multi_lrs[2000] == pytest.approx(LR * 0.01, rel=1e-12)


def test_the_logged_lr_is_the_applied_one_not_the_next_steps(tmp_path):
    """The article's off-by-one: get_last_lr() after step() is the *next* step's LR."""
    lrs = logged_lrs(tmp_path, "poly_warmup")
    assert lrs[0] == 0.0  # transformers' warm-up applies LR 0 on the very first step
    assert lrs[100] == LR  # warm-up ends: the peak is applied at step 100
    assert lrs[1] == pytest.approx(LR / 100)


@pytest.mark.parametrize("schedule", sorted(METRIC_DRIVEN))
def test_a_metric_driven_schedule_receives_the_validation_loss_at_every_evaluation(tmp_path, schedule):
    """Stepped with each logged val_loss; its LR then equals a hand-fed reference at every step."""
    train_in_process(
        tmp_path, f"scheduler={schedule}", "optimizer.lr=3e-3", "run.steps=1500", "run.eval_every=25", "run.log_every=1", "task.hidden=[16]"
    )
    rows = read_metrics(tmp_path)
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=3e-3)
    reference = METRIC_DRIVEN[schedule](optimizer)
    for row in rows:
        assert row["lr"] == optimizer.param_groups[0]["lr"], f"step {row['step']}"
        if row["val_loss"] is not None:
            reference.step(row["val_loss"])
    assert len(set(r["lr"] for r in rows)) > 1, "the schedule must actually have moved the LR in this run"
