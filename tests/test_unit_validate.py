"""Config checks and LR marker lines on plain configs, in milliseconds (no compose, no training)."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from lrexp.errors import ConfigError
from lrexp.schedule_spec import ScheduleSpec, lr_markers
from lrexp.validate import validate, validate_schedule

RUN = {"steps": 100, "log_every": 10, "eval_every": 10, "test_every": 0, "checkpoint_every": 50, "diverge_factor": 10.0}


def config(run=None, optimizer=None, scheduler=None):
    return OmegaConf.create(
        {"run": {**RUN, **(run or {})}, "optimizer": {"lr": 1e-3, **(optimizer or {})}, "scheduler": scheduler or {"_target_": "x"}}
    )


def test_a_sound_config_passes():
    validate(config(scheduler={"milestones": [30, 60], "gamma": 0.1, "num_warmup_steps": 5, "num_training_steps": 100}))


@pytest.mark.parametrize(
    "part, value, key",
    [
        ("run", {"steps": 0}, "run.steps"),
        ("run", {"eval_every": 1.5}, "run.eval_every"),
        ("run", {"diverge_factor": 1.0}, "run.diverge_factor"),
        ("run", {"test_every": -1}, "run.test_every"),
        ("optimizer", {"lr": float("nan")}, "optimizer.lr"),
        ("optimizer", {"lr": "fast"}, "optimizer.lr"),
        ("optimizer", {"lr": True}, "optimizer.lr"),
    ],
)
def test_run_and_optimizer_rules_name_the_key(part, value, key):
    with pytest.raises(ConfigError) as e:
        validate(config(**{part: value}))
    assert e.value.key == key


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"gamma": 1.5}, "scheduler.gamma"),
        ({"factor": 0}, "scheduler.factor"),
        ({"pct_start": 1.0}, "scheduler.pct_start"),
        ({"T_max": 0}, "scheduler.T_max"),
        ({"num_warmup_steps": -1}, "scheduler.num_warmup_steps"),
        ({"milestones": [60, 30]}, "scheduler.milestones"),
        ({"milestones": [0, 30]}, "scheduler.milestones"),
        ({"milestones": [30, 100]}, "scheduler.milestones"),
        ({"milestones": "30"}, "scheduler.milestones"),
        ({"num_warmup_steps": 100}, "scheduler.num_warmup_steps"),  # not shorter than run.steps
        ({"num_warmup_steps": 50, "num_training_steps": 50}, "scheduler.num_warmup_steps"),
        ({"num_decay_steps": 101}, "scheduler.num_decay_steps"),
        ({"lr_end": 1e-3}, "scheduler.lr_end"),  # not below the peak LR
        ({"max_lr": 0}, "scheduler.max_lr"),
    ],
)
def test_schedule_rules_go_by_the_standard_parameter_names(kwargs, key):
    with pytest.raises(ConfigError) as e:
        validate_schedule(kwargs, steps=100, lr=1e-3)
    assert e.value.key == key and str(e.value).startswith(f"{key}=")


def test_markers_for_warm_up_decay_milestones_and_restarts():
    assert lr_markers({"num_warmup_steps": 10, "num_training_steps": 100}, 100) == [{"step": 10, "label": "warm-up end"}]
    assert lr_markers({"pct_start": 0.3, "total_steps": 100}, 100) == [{"step": 29, "label": "warm-up end"}]  # OneCycle's peak
    assert lr_markers({"num_warmup_steps": 5, "num_decay_steps": 20}, 100) == [
        {"step": 5, "label": "warm-up end"},
        {"step": 80, "label": "decay start"},
    ]
    assert lr_markers({"milestones": [60, 30]}, 100) == [{"step": 30, "label": "milestone"}, {"step": 60, "label": "milestone"}]
    assert [m["step"] for m in lr_markers({"T_0": 10, "T_mult": 2}, 100)] == [10, 30, 70]  # periods 10, 20, 40
    assert lr_markers({"milestones": [150]}, 100) == [] and lr_markers({"T_max": 30}, 100) == []


def test_lrexp_warm_up_marks_its_end_and_shifts_the_schedules_own_lines():
    node = {"_target_": "torch.optim.lr_scheduler.MultiStepLR", "milestones": [45, 90], "warmup": 30, "floor": 0.01}
    assert ScheduleSpec.of(node).markers(165) == [
        {"step": 30, "label": "warm-up end"}, {"step": 75, "label": "milestone"}, {"step": 120, "label": "milestone"}
    ]  # fmt: skip
    assert ScheduleSpec.of({"milestones": [45], "warmup": 0, "floor": 0.0}).markers(100) == [{"step": 45, "label": "milestone"}]
    assert ScheduleSpec.of({"milestones": [45]}).markers(100) == [{"step": 45, "label": "milestone"}]  # lrexp's keys default to 0


def test_warm_up_and_floor_are_checked_like_any_length_and_fraction():
    with pytest.raises(ConfigError) as e:
        validate(config(scheduler={"_target_": "x", "warmup": 100, "floor": 0.0}))
    assert e.value.key == "scheduler.warmup" and "below run.steps (100)" in str(e.value)
    with pytest.raises(ConfigError) as e:
        validate(config(scheduler={"_target_": "x", "warmup": 0, "floor": 1.0}))
    assert e.value.key == "scheduler.floor"
    with pytest.raises(ConfigError) as e:  # a schedule that warms up by itself, warmed up again
        validate(config(scheduler={"_target_": "t.cosine", "warmup": 10, "floor": 0.0, "num_warmup_steps": 5, "num_training_steps": 90}))
    assert e.value.key == "scheduler.warmup" and "warms up by itself" in str(e.value)
    with pytest.raises(ConfigError) as e:
        validate(config(optimizer={"warmup_steps": 10}))
    assert e.value.key == "optimizer.warmup_steps"


@pytest.mark.parametrize("clip", [0, -1.0, "big", True])
def test_gradient_clipping_must_be_a_positive_norm_or_null(clip):
    validate(config(optimizer={"clip_grad_norm": None}))
    validate(config(optimizer={"clip_grad_norm": 1.0}))
    with pytest.raises(ConfigError) as e:
        validate(config(optimizer={"clip_grad_norm": clip}))
    assert e.value.key == "optimizer.clip_grad_norm"
