"""The types of each task option's keys: Hydra structured configs, registered under ``schema/task/``.

A task's YAML (conf/task/NAME.yaml) names its schema first in its defaults (``/schema/task/NAME@_here_``)
and holds every value itself; the schema says what type each key has and nothing else (every default is
``MISSING``), so a mistyped value fails when Hydra composes. Adding a task to lrexp touches its module,
its YAML and its entry here. A task of one's own, outside lrexp, registers its schema the same way from
a torch-free module of its own package (``ConfigStore.instance().store(group="schema/task", ...)``),
named by an entry point in the group ``lrexp.schemas``, which lrexp.config loads before Hydra composes
(the tests' own task, in tests/, does exactly this). Torch-free: every start-up imports it (lrexp.config).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

GROUP = "schema/task"  # never a selectable option: sweeps glob task/, not schema/task/


@dataclass
class DigitsTaskConfig:
    _target_: str = MISSING
    batch_size: int = MISSING
    hidden: list[int] = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    split_seed: int = MISSING


@dataclass
class TinyLMTaskConfig:
    _target_: str = MISSING
    batch_size: int = MISSING
    context: int = MISSING
    n_layer: int = MISSING
    n_head: int = MISSING
    n_embd: int = MISSING
    dropout: float = MISSING
    corpus: str | None = MISSING
    corpus_glob: str = MISSING
    max_corpus_bytes: int = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    eval_batches: int = MISSING
    test_batches: int = MISSING


@dataclass
class HFTaskConfig:
    """What both Hugging Face tasks take: the model and where its data comes from."""

    _target_: str = MISSING
    model: str | None = MISSING
    config: Any = MISSING  # a folder or hub name, or the config's own keys
    pretrained: bool = MISSING
    tokenizer: str | None = MISSING
    data: str | None = MISSING
    data_glob: str = MISSING
    dataset: str | None = MISSING
    dataset_config: str | None = MISSING
    text_column: str = MISSING
    batch_size: int = MISSING
    grad_accum: int = MISSING
    val_fraction: float = MISSING
    test_fraction: float = MISSING
    cache_dir: str | None = MISSING


@dataclass
class HFLanguageModelTaskConfig(HFTaskConfig):
    context: int = MISSING
    eval_windows: int = MISSING
    test_windows: int = MISSING
    max_tokens: int | None = MISSING


@dataclass
class HFClassifierTaskConfig(HFTaskConfig):
    pair_column: str | None = MISSING
    label_column: str = MISSING
    max_length: int = MISSING
    split_seed: int = MISSING
    eval_examples: int | None = MISSING
    reinit_head: bool = MISSING


SCHEMAS = {
    "digits": DigitsTaskConfig,
    "tinylm": TinyLMTaskConfig,
    "hf_lm": HFLanguageModelTaskConfig,
    "hf_classifier": HFClassifierTaskConfig,
}

for _name, _node in SCHEMAS.items():
    ConfigStore.instance().store(group=GROUP, name=_name, node=_node)
