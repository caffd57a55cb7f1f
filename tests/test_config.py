"""Composition of the real config: every group option, the schemas, relative schedule lengths, CLI help."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from hydra.utils import get_object
from omegaconf import MISSING, OmegaConf

import lrexp.config
import lrexp.loggers.schemas
import lrexp.tasks.schemas
from lrexp.build import optimizer_node
from lrexp.schedule_spec import ScheduleSpec
from lrexp.targets import check_signature
from tests.helpers import SCHEDULES, compose_config, run_cli

CONF = Path(__file__).resolve().parent.parent / "conf"


def options(group: str):
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_defaults_compose_to_a_trainable_run():
    cfg, names = compose_config()
    assert names["task"] == "digits" and names["optimizer"] == "adamw" and names["scheduler"] == "cosine"
    assert cfg.run.steps == 600 and cfg.seed == 0 and cfg.task.batch_size == 128
    assert list(cfg.task.hidden) == [256, 256]
    assert "local" in cfg.logger


def test_every_schedule_is_in_the_group():
    assert set(SCHEDULES) >= {
        "exp",
        "cosine",
        "step",
        "poly_warmup",
        "multistep",
        "constant",
        "linear_warmup",
        "cosine_warmup",
        "wsd",
        "onecycle",
        "sgdr",
        "inverse_sqrt",
        "plateau",
    }


@pytest.mark.parametrize("name", SCHEDULES)
def test_every_schedule_targets_a_library_callable_with_valid_keys(name):
    cfg, _ = compose_config(f"scheduler={name}")
    assert cfg.scheduler._partial_ is True
    target = cfg.scheduler._target_
    assert target.startswith(("torch.optim.lr_scheduler.", "transformers.")), target
    get_object(target)  # importable
    spec = ScheduleSpec.of(cfg.scheduler)
    assert spec.floor == 0.0 and spec.warmup == (30 if name == "schedule_free" else 0)  # lrexp's own keys, on every schedule
    check_signature(OmegaConf.create(spec.node), "scheduler")  # every other key is a parameter of the callable


@pytest.mark.parametrize("name", options("optimizer"))
def test_every_optimizer_composes_typed_and_fused(name):
    cfg, _ = compose_config(f"optimizer={name}")
    assert cfg.optimizer._target_.startswith(("torch.optim.", "schedulefree."))
    assert isinstance(cfg.optimizer.lr, float)
    if cfg.optimizer._target_.startswith("torch.optim."):
        assert cfg.optimizer.fused is True  # torch's fused kernels by default (schedulefree has none)
    assert cfg.optimizer.clip_grad_norm is None  # lrexp's own key, on every optimizer: no clipping by default
    check_signature(optimizer_node(cfg.optimizer), "optimizer")  # the callable's signature is the optimizer's schema


def schema_leaves(node, prefix=""):
    """(key, default) of every field of a structured-config schema, nested dataclasses walked."""
    for f in dataclasses.fields(node):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            yield from schema_leaves(type(default), f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", default


ROOM_SCHEMAS = [
    (room.GROUP, name, schema) for room in (lrexp.tasks.schemas, lrexp.loggers.schemas) for name, schema in room.SCHEMAS.items()
]


@pytest.mark.parametrize("group, name, schema", [*ROOM_SCHEMAS, ("", "root", lrexp.config.Config)])
def test_schemas_hold_types_only_so_every_value_lives_in_the_yaml(group, name, schema):
    """A default in a schema would be a second copy of the YAML's value, silently shadowed by it."""
    with_values = [(key, default) for key, default in schema_leaves(schema) if default != MISSING and key not in ("logger",)]
    assert with_values == [], f"{group}/{name}: values belong in conf/, not in the schema"


@pytest.mark.parametrize("group", ["task", "optimizer", "scheduler", "logger"])
def test_every_option_composes_with_every_value_set(group):
    """With MISSING defaults, a key a YAML forgets is an error here, not a silent second default."""
    for name in options(group):
        cfg, _ = compose_config(f"{group}={name}")
        assert OmegaConf.missing_keys(cfg) == set(), f"{group}={name}"


def test_a_value_changed_in_the_yaml_is_the_value_a_run_gets(tmp_path):
    """The YAML is the one place a value lives: change it there (in a copy of conf/) and compose sees it."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "config.yaml").write_text((conf / "config.yaml").read_text().replace("  log_every: 10 ", "  log_every: 7 "))
    (conf / "task" / "digits.yaml").write_text((conf / "task" / "digits.yaml").read_text().replace("batch_size: 128", "batch_size: 64"))
    with initialize_config_dir(str(conf), version_base="1.3"):
        cfg = compose("config")
    assert cfg.run.log_every == 7 and cfg.task.batch_size == 64


@pytest.mark.parametrize("name", options("task"))
def test_every_task_composes(name):
    cfg, names = compose_config(f"task={name}")
    assert names["task"] == name and cfg.task._target_.startswith("lrexp.tasks.")


@pytest.mark.parametrize("choice", ["local", "wandb", "[local,wandb]"])
def test_logger_choices(choice):
    cfg, _ = compose_config(f"logger={choice}")
    assert "local" in cfg.logger  # local outputs are kept whatever else is chosen
    assert ("wandb" in cfg.logger) == ("wandb" in choice)


@pytest.mark.parametrize(
    "steps, expected",
    [
        (
            3000,
            {
                "cosine.T_max": 1000,
                "step.step_size": 500,
                "multistep.milestones": [1000, 2000],
                "poly_warmup.num_warmup_steps": 100,
                "poly_warmup.num_training_steps": 3000,
            },
        ),
        (
            600,
            {
                "cosine.T_max": 200,
                "step.step_size": 100,
                "multistep.milestones": [200, 400],
                "poly_warmup.num_warmup_steps": 20,
                "poly_warmup.num_training_steps": 600,
            },
        ),
    ],
)
def test_schedule_lengths_follow_run_steps(steps, expected):
    for key, value in expected.items():
        sched, param = key.split(".")
        cfg, _ = compose_config(f"scheduler={sched}", f"run.steps={steps}")
        got = cfg.scheduler[param]
        assert (list(got) if param == "milestones" else got) == value, key


def test_an_absolute_length_overrides_the_relative_one():
    cfg, _ = compose_config("scheduler=cosine", "scheduler.T_max=123", "run.steps=999")
    assert cfg.scheduler.T_max == 123


def test_article_experiment_sets_the_article_numbers():
    cfg, _ = compose_config("experiment=article", "scheduler=poly_warmup")
    assert cfg.optimizer.lr == 5e-5 and cfg.run.steps == 3000 and cfg.run.log_every == 1
    assert cfg.scheduler.num_warmup_steps == 100 and cfg.scheduler.lr_end == 1e-7 and cfg.scheduler.power == 2.0


@pytest.mark.parametrize(
    "override, key",
    [
        ("run.steps=many", "run.steps"),
        ("run.device=tpu", "run.device"),
        ("run.precision=fp8", "run.precision"),
        ("seed=abc", "seed"),
        ("task.batch_size=1.5", "task.batch_size"),
        ("optimizer.nonsense=1", "optimizer.nonsense"),
    ],
)
def test_schemas_reject_wrong_types_at_compose_time(override, key):
    with pytest.raises(ConfigCompositionException) as e:
        compose_config(override)
    assert key in str(e.value) or key in str(e.value.__cause__)


@pytest.mark.slow
def test_help_lists_groups_and_options(tmp_path):
    out = run_cli(["--help"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    for group in ("scheduler", "optimizer", "task", "logger", "experiment"):
        assert f"{group}:" in out.stdout
    for name in SCHEDULES:
        assert name in out.stdout


@pytest.mark.slow
def test_cfg_job_prints_the_composed_config(tmp_path):
    out = run_cli(["--cfg", "job", "scheduler=multistep"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "torch.optim.lr_scheduler.MultiStepLR" in out.stdout and "milestones" in out.stdout
    assert not (tmp_path / "outputs").exists()  # printing a config trains nothing
