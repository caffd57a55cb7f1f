"""Warm-up and floor around any scheduler (lrexp.schedule), on a one-parameter optimizer, in milliseconds.

Every reference is the library's own object stepped by hand, or the definition written out in the
docs/schedules.md: lr_t = peak * (t / W) during warm-up, then the inner schedule's LR at t - W, or with a floor f,
f * peak + (1 - f) * that LR.
"""

from __future__ import annotations

import pytest
import torch
import transformers
from torch.optim import lr_scheduler as S

from lrexp.errors import ConfigError
from lrexp.schedule import Direct, WarmupFloor, metric_driven
from tests.helpers import stepped

PEAK = 1e-3


def adam() -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=PEAK)


def drive(schedule, optimizer, steps, metrics=None):
    """The LR of every optimizer step, driven as the training loop does (evaluations every 10 steps)."""
    lrs = []
    for t in range(steps):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.after_step()
        if metrics is not None and t % 10 == 0:
            schedule.after_eval(metrics[t // 10])
    return lrs


def inner_lrs(make, steps):
    """The inner scheduler alone, on its own optimizer: the LR it applies at each of its own steps."""
    o = adam()
    return stepped(make(o), o, steps)


def test_warm_up_then_a_constant_lr_is_transformers_constant_schedule_with_warmup():
    o = adam()
    got = drive(WarmupFloor(o, transformers.get_constant_schedule, "c", warmup=50, floor=0.0), o, 300)
    assert got == inner_lrs(lambda x: transformers.get_constant_schedule_with_warmup(x, 50), 300)  # bit for bit


def test_warm_up_then_linear_decay_over_the_rest_is_transformers_linear_schedule_with_warmup():
    o = adam()
    schedule = WarmupFloor(o, lambda x: transformers.get_linear_schedule_with_warmup(x, 0, 250), "l", warmup=50, floor=0.0)
    assert drive(schedule, o, 300) == inner_lrs(lambda x: transformers.get_linear_schedule_with_warmup(x, 50, 300), 300)


def test_warm_up_and_floor_around_step_lr_follow_the_definition():
    w, f, steps = 30, 0.01, 600
    o = adam()
    got = drive(WarmupFloor(o, lambda x: S.StepLR(x, step_size=95, gamma=0.1), "s", warmup=w, floor=f), o, steps)
    inner = inner_lrs(lambda x: S.StepLR(x, step_size=95, gamma=0.1), steps - w)
    assert got == [PEAK * (t / w) for t in range(w)] + [f * PEAK + (1 - f) * lr for lr in inner]
    assert min(got[w:]) > f * PEAK  # the floor holds where StepLR would go on dividing by 10


def test_a_recursive_scheduler_sees_only_its_own_lrs():
    """CosineAnnealingLR computes each LR from the last: floored LRs must never feed back into it."""
    o = adam()
    got = drive(WarmupFloor(o, lambda x: S.CosineAnnealingLR(x, T_max=100), "c", warmup=0, floor=0.1), o, 300)
    assert got == [0.1 * PEAK + 0.9 * lr for lr in inner_lrs(lambda x: S.CosineAnnealingLR(x, T_max=100), 300)]


def test_a_metric_driven_scheduler_gets_warm_up_and_sees_only_the_evaluations_after_it():
    metrics = [1.0, 0.9, 0.95, 0.96, 0.97, 0.98, 0.99, 1.0, 1.0, 1.0, 1.0, 1.0]  # stops improving after the 2nd
    o = adam()
    schedule = WarmupFloor(o, lambda x: S.ReduceLROnPlateau(x, factor=0.5, patience=1), "p", warmup=25, floor=0.0)
    assert schedule.metric_driven
    got = drive(schedule, o, 120, metrics)
    ref_o = adam()
    ref = S.ReduceLROnPlateau(ref_o, factor=0.5, patience=1)
    expected = []
    for t in range(120):
        expected.append(PEAK * (t / 25) if t < 25 else ref_o.param_groups[0]["lr"])
        if t % 10 == 0 and t + 1 >= 25:  # evaluations after step t: those from the end of warm-up on
            ref.step(metrics[t // 10])
    assert got == expected and min(got[25:]) < PEAK  # the plateau did reduce the LR


def test_momentum_a_scheduler_cycles_is_passed_through():
    o = adam()
    drive(WarmupFloor(o, lambda x: S.OneCycleLR(x, max_lr=PEAK, total_steps=200), "o", warmup=0, floor=0.05), o, 50)
    ref_o = adam()
    ref = S.OneCycleLR(ref_o, max_lr=PEAK, total_steps=200)
    for _ in range(50):
        ref_o.step()
        ref.step()
    assert o.param_groups[0]["betas"] == ref_o.param_groups[0]["betas"] != (0.9, 0.999)


def test_state_dict_resumes_the_rest_of_the_schedule_exactly():
    def build(o):
        return WarmupFloor(o, lambda x: S.CosineAnnealingWarmRestarts(x, T_0=40), "r", warmup=20, floor=0.02)

    o = adam()
    whole = drive(build(o), o, 200)
    o1 = adam()
    first = build(o1)
    head = drive(first, o1, 87)
    saved_opt, saved = o1.state_dict(), first.state_dict()
    o2 = adam()
    resumed = build(o2)  # rebuilt from config, then the optimizer's state, then the schedule's (as the loop does)
    o2.load_state_dict(saved_opt)
    resumed.load_state_dict(saved)
    assert head + drive(resumed, o2, 113) == whole


def test_with_no_warm_up_and_no_floor_the_scheduler_is_driven_as_it_is():
    o = adam()
    assert drive(Direct(S.ExponentialLR(o, gamma=0.99), "e"), o, 100) == inner_lrs(lambda x: S.ExponentialLR(x, gamma=0.99), 100)


class EpochScheduler:
    """The shape of timm's schedulers: step(epoch, metric=None), meant to be called once per epoch."""

    def step(self, epoch, metric=None):
        pass


def test_a_scheduler_stepped_per_epoch_is_refused_in_one_line():
    with pytest.raises(ConfigError) as e:
        metric_driven(EpochScheduler(), "timm.scheduler.CosineLRScheduler")
    assert e.value.key == "scheduler._target_" and "step(epoch)" in str(e.value) and "\n" not in str(e.value)
    assert metric_driven(S.ReduceLROnPlateau(adam()), "p") and not metric_driven(S.StepLR(adam(), 5), "s")
