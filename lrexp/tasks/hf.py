"""Tasks ``hf_lm`` and ``hf_classifier``: any Hugging Face model and data, trained under lrexp's schedules.

``task.model`` is a local folder or a hub name, loaded with ``from_pretrained`` (weights, config and
tokenizer); ``task.pretrained=false`` keeps its architecture and initialises it at random (seeded), and
``task.config`` (a folder, a hub name, or the config's own keys with ``model_type``) builds a model from
a config alone. Data comes from lrexp.tasks.hf_data (local files or a ``datasets`` name, tokenized once,
memory-mapped). As with every task: batches are a pure function of (seed, step), so resuming needs no
loader state; the validation and test splits never move with the seed; the metrics are declared.

Before anything is allocated, the model's training memory is estimated from its config (parameters
counted on the meta device: weights, gradients and AdamW's two moments in fp32, plus a rough activation
estimate) and a model that cannot fit the device is refused in one line. transformers is imported here
only: runs of other tasks never pay for it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrexp.errors import ConfigError, first_line
from lrexp.record import Goal, Metric
from lrexp.tasks.base import Model, check_fractions, check_sizes
from lrexp.tasks.digits import stratified_split
from lrexp.tasks.hf_data import Source, cache_root, examples, splits_of, token_stream
from lrexp.tasks.tinylm import batch_seed, split_chunks

# Tokenizing happens once, before training; its thread pool must not outlive it into forked workers.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The share of the device's free memory a run may plan to use: the rest is the framework's and the OS's.
MEMORY_SHARE = 0.9
GIB = 1 << 30


# --- models ---------------------------------------------------------------------------------------


def model_config(model: str | None, config: str | Mapping[str, Any] | None, extra: Mapping[str, Any]) -> Any:
    """The transformers config of ``task.model`` or ``task.config``, with ``extra`` keys set."""
    from transformers import AutoConfig

    key, value = ("task.model", model) if model else ("task.config", config)
    if value is None:
        raise ConfigError("task.model", None, "required: a local folder or a Hugging Face hub name (or task.config=... for a random init)")
    try:
        if isinstance(value, Mapping):
            keys = dict(value)
            model_type = keys.pop("model_type", None)
            if model_type is None:
                raise ConfigError("task.config.model_type", None, "required: the architecture (gpt2, llama, bert, ...)")
            return AutoConfig.for_model(model_type, **keys, **extra)
        offline_first(key, value)
        return AutoConfig.from_pretrained(value, **extra)
    except (OSError, ValueError, KeyError) as e:
        if isinstance(e, ConfigError):
            raise
        where = "not a local folder with a config.json, and not a model on the Hugging Face hub (or not in its cache, offline)"
        raise ConfigError(key, value, f"{where}: {first_line(e)[:160]}") from None


def offline_first(key: str, name: str) -> None:
    """A hub name that is neither a local folder nor in the Hugging Face cache, where the hub cannot be
    reached: one line now, instead of huggingface_hub's retries (11 warnings and ~32 s) before it. The hub
    is asked once, with a 3 s connect to HF_ENDPOINT's host; HF_HUB_OFFLINE=1 skips the question."""
    import socket
    from urllib.parse import urlparse

    if Path(name).exists():
        return
    from huggingface_hub import try_to_load_from_cache

    if isinstance(try_to_load_from_cache(name, "config.json"), str):
        return  # cached: from_pretrained finds it without the network
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes")
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    if not offline:
        try:
            socket.create_connection((endpoint.hostname or "huggingface.co", endpoint.port or 443), timeout=3).close()
            return
        except OSError:
            pass
    why = "HF_HUB_OFFLINE is set" if offline else f"the hub ({endpoint.hostname}) cannot be reached"
    raise ConfigError(key, name, f"not a local folder, not in the Hugging Face cache, and {why}: give a local folder, or download it first")


def training_bytes(n_parameters: int, cfg: Any, batch: int, length: int) -> tuple[int, int]:
    """(parameter-related, activation) bytes to train in fp32 with AdamW: weights, gradients and two
    moments (16 bytes a parameter), and for a transformer about 34 x batch x length x width bytes per
    layer at half precision (Korthikanti et al. 2022), doubled for fp32 and for attention's
    length-squared scores."""
    width = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or 0
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None) or 0
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None) or 0
    activations = layers * batch * length * (68 * width + 10 * heads * length)
    return 16 * n_parameters, int(activations)


def available_bytes(device: torch.device) -> int | None:
    """Free memory on the device: CUDA's own count, or the OS's MemAvailable for the CPU; None if unknown."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type == "cpu":
        try:
            with open("/proc/meminfo") as f:
                return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
        except (OSError, StopIteration, ValueError):
            return None
    return None


def build_model(
    kind: str, cfg: Any, model: str | None, pretrained: bool, device: torch.device, batch: int, length: int, reinit_head: bool = False
) -> nn.Module:
    """The model, counted on the meta device and refused if it cannot train on ``device``, then loaded
    (``from_pretrained``; ``reinit_head``: a classification head of another size starts anew) or
    initialised at random (``from_config``) and moved there."""
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # loading bars would interleave with the run's own log and bar
    auto = AutoModelForCausalLM if kind == "lm" else AutoModelForSequenceClassification
    try:
        with torch.device("meta"):
            shell = auto.from_config(cfg)
    except (ValueError, TypeError, AssertionError) as e:  # an architecture its own keys contradict (width and heads...)
        raise ConfigError("task.model" if model else "task.config", model or getattr(cfg, "model_type", "?"),
                          f"cannot build this architecture: {first_line(e)[:200]}") from None  # fmt: skip
    n = sum(p.numel() for p in shell.parameters())
    del shell
    params, activations = training_bytes(n, cfg, batch, length)
    free = available_bytes(device)
    if free is not None and params + activations > MEMORY_SHARE * free:
        raise ConfigError(
            "task.model" if model else "task.config",
            model or getattr(cfg, "model_type", "?"),
            f"needs about {(params + activations) / GIB:.1f} GiB to train ({n / 1e6:.0f}M parameters: {params / GIB:.1f} GiB for "
            f"weights, gradients and AdamW's moments; ~{activations / GIB:.1f} GiB of activations at batch {batch} x {length}), but "
            f"{device.type} has {free / GIB:.1f} GiB free: a smaller model, task.batch_size or length, or task.grad_accum",
        )
    if pretrained and model:
        from transformers.utils import logging as hf_log

        verbosity = hf_log.get_verbosity()
        if reinit_head:
            hf_log.set_verbosity_error()  # its multi-line report of the head it re-initialises: asked for
        try:
            net = auto.from_pretrained(model, config=cfg, dtype=torch.float32, ignore_mismatched_sizes=reinit_head)
        finally:
            hf_log.set_verbosity(verbosity)
    else:
        net = auto.from_config(cfg)
    moved: nn.Module = net.to(device)  # type: ignore[arg-type]  # transformers types .to() with a model's own signature
    return moved


def load_tokenizer(name: str | None, key: str) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:
        raise ConfigError(key, name, f"no tokenizer there ({first_line(e)[:160]})") from None


def decay_groups(model: nn.Module) -> list[dict[str, Any]]:
    """Weight decay on matrices only (not on biases, norms or embeddings), as HF's Trainer and nanoGPT do."""
    embeddings = {id(p) for m in model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
    return [{"name": "decay", "params": decay}, {"name": "no_decay", "params": no_decay, "weight_decay": 0.0}]


def open_source(
    model: str | None, config: Any, tokenizer: str | None, data: str | None, data_glob: str, dataset: str | None, dataset_config: str | None
) -> tuple[Any, Any, Source]:
    """What both tasks start from, checked in the order a user reads the config: the model's config (an
    unknown model is named before anything else is read), its tokenizer, where the data comes from."""
    if (data is None) == (dataset is None):
        raise ConfigError("task.data", data, "give one of task.data (a local file or folder) and task.dataset (a datasets name)")
    cfg = model_config(model, config, {})
    tok = load_tokenizer(tokenizer or model or (config if isinstance(config, str) else None), "task.tokenizer")
    return cfg, tok, Source(data, data_glob, dataset, dataset_config)


# --- language modelling ---------------------------------------------------------------------------


class HFLanguageModelTask:
    """Next-token prediction with any causal LM: fixed-length windows of the token stream."""

    metrics = (
        Metric("loss", Goal.MIN, "loss", "log"),
        Metric("acc", Goal.MAX, "next-token accuracy", "linear"),
        Metric("ppl", Goal.MIN, "perplexity", "log"),
    )

    def __init__(
        self,
        model: str | None,
        config: Any,
        pretrained: bool,
        tokenizer: str | None,
        data: str | None,
        data_glob: str,
        dataset: str | None,
        dataset_config: str | None,
        text_column: str,
        batch_size: int,
        context: int,
        grad_accum: int,
        val_fraction: float,
        test_fraction: float,
        eval_windows: int,
        test_windows: int,
        max_tokens: int | None,
        cache_dir: str | None,
        *,
        device: torch.device,
        seed: int,
    ) -> None:
        check_sizes(batch_size=batch_size, context=context, grad_accum=grad_accum, eval_windows=eval_windows, test_windows=test_windows,
                    max_tokens=max_tokens)  # fmt: skip
        check_fractions(0.5, val_fraction=val_fraction, test_fraction=test_fraction)
        self.batch_size, self.context, self.grad_accum, self.seed, self.device = batch_size, context, grad_accum, seed, device
        cfg, self.tokenizer, source = open_source(model, config, tokenizer, data, data_glob, dataset, dataset_config)
        splits = splits_of(source)
        train_split = "train" if "train" in splits else splits[0]
        stream = token_stream(source, self.tokenizer, text_column, train_split, max_tokens, cache_root(cache_dir))
        chunk, train, val, test = split_chunks(len(stream), context, val_fraction, test_fraction)
        if not train:
            raise ConfigError(
                source.describe().split("=")[0],
                source.data or source.dataset,
                f"{len(stream)} tokens are too few for task.context={context}",
            )
        self.tokens, self.chunk_len, self.starts_per_chunk = stream, chunk, chunk - context
        self.train_offsets = np.array(train) * chunk
        self.splits = {"val": self._fixed(val, eval_windows), "test": self._fixed(test, test_windows)}
        self.n_tokens = len(stream)
        if cfg.vocab_size < len(self.tokenizer):
            raise ConfigError(
                "task.tokenizer",
                tokenizer or model,
                f"has {len(self.tokenizer)} tokens, more than the model's vocabulary ({cfg.vocab_size})",
            )
        self.model = build_model("lm", cfg, model, pretrained, device, batch_size, context)

    def _windows(self, starts: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        """Windows of context + 1 tokens gathered from the memory-mapped stream, on the device."""
        idx = starts[:, None] + np.arange(self.context + 1)[None, :]
        windows = torch.from_numpy(np.asarray(self.tokens[idx], dtype=np.int64)).to(self.device, non_blocking=True)
        return windows[:, :-1], windows[:, 1:]

    def _fixed(self, chunks: list[int], n_windows: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``n_windows`` windows spread evenly over the held-out chunks: the same set whatever the micro-batch
        (so configurations of one model are scored on the same tokens), cut into micro-batches for memory."""
        n = len(chunks) * self.starts_per_chunk
        k = np.linspace(0, n - 1, n_windows).round().astype(np.int64)
        starts = np.array(chunks)[k // self.starts_per_chunk] * self.chunk_len + k % self.starts_per_chunk
        return [self._windows(part) for part in np.array_split(starts, math.ceil(n_windows / self.batch_size))]

    def param_groups(self) -> list[dict[str, Any]]:
        return decay_groups(self.model)

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``grad_accum`` x ``batch_size`` windows drawn from (seed, step) alone."""
        rng = np.random.default_rng(batch_seed(self.seed, step))
        k = rng.integers(len(self.train_offsets) * self.starts_per_chunk, size=self.grad_accum * self.batch_size)
        return self._windows(self.train_offsets[k // self.starts_per_chunk] + k % self.starts_per_chunk)

    @staticmethod
    def loss(model: Model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())

    @torch.no_grad()
    def evaluate(self, model: Model, split: str) -> dict[str, torch.Tensor]:
        loss_sum, correct, n = torch.zeros((), device=self.device), torch.zeros((), device=self.device), 0
        for x, y in self.splits[split]:
            logits = model(input_ids=x).logits.flatten(0, 1).float()
            loss_sum = loss_sum + F.cross_entropy(logits, y.flatten(), reduction="sum")
            correct = correct + (logits.argmax(dim=1) == y.flatten()).sum()
            n += y.numel()
        loss = loss_sum / n
        return {"loss": loss, "acc": correct / n, "ppl": torch.exp(loss)}


# --- sequence classification ----------------------------------------------------------------------


class HFClassifierTask:
    """Text (or text-pair) classification with any sequence-classification head."""

    metrics = (Metric("loss", Goal.MIN, "loss", "log"), Metric("acc", Goal.MAX, "accuracy", "linear"))

    def __init__(
        self,
        model: str | None,
        config: Any,
        pretrained: bool,
        tokenizer: str | None,
        data: str | None,
        data_glob: str,
        dataset: str | None,
        dataset_config: str | None,
        text_column: str,
        pair_column: str | None,
        label_column: str,
        batch_size: int,
        max_length: int,
        grad_accum: int,
        val_fraction: float,
        test_fraction: float,
        split_seed: int,
        eval_examples: int | None,
        cache_dir: str | None,
        reinit_head: bool = False,
        *,
        device: torch.device,
        seed: int,
    ) -> None:
        check_sizes(batch_size=batch_size, max_length=max_length, grad_accum=grad_accum, eval_examples=eval_examples)
        check_fractions(0.5, val_fraction=val_fraction, test_fraction=test_fraction)
        self.batch_size, self.grad_accum, self.seed, self.device = batch_size, grad_accum, seed, device
        _, self.tokenizer, source = open_source(model, config, tokenizer, data, data_glob, dataset, dataset_config)
        if self.tokenizer.pad_token is None:  # GPT-style tokenizers have none; padding is masked out anyway
            self.tokenizer.pad_token = self.tokenizer.eos_token
        cache = cache_root(cache_dir)
        splits = splits_of(source)
        own = {name: splits_of_name(splits, name) for name in ("train", "val", "test")}
        train, classes = examples(
            source, self.tokenizer, text_column, pair_column, label_column, own["train"] or splits[0], max_length, None, cache
        )
        parts = {}
        for name in ("val", "test"):
            split = own[name]
            if split is not None and split != own["train"]:
                held, _ = examples(source, self.tokenizer, text_column, pair_column, label_column, split, max_length, classes, cache)
                labelled = np.flatnonzero(np.asarray(held.labels) >= 0)
                parts[name] = (held, labelled[:eval_examples] if eval_examples else labelled)
        # Splits the source does not have are carved from its training split: stratified, fixed by split_seed.
        missing = [n for n in ("val", "test") if n not in parts]
        carved = stratified_split(np.asarray(train.labels), [val_fraction if n == "val" else test_fraction for n in missing], split_seed)
        for name, idx in zip(missing, carved[1:]):
            parts[name] = (train, idx[:eval_examples] if eval_examples else idx)
        self.train, self.train_idx = train, carved[0]
        if len(self.train_idx) < batch_size:
            raise ConfigError("task.batch_size", batch_size, f"must be at most the training examples ({len(self.train_idx)})")
        self.splits = parts
        self.classes = classes
        cfg = model_config(
            model,
            config,
            {"num_labels": len(classes), "id2label": dict(enumerate(classes)), "label2id": {c: i for i, c in enumerate(classes)}},
        )
        if getattr(cfg, "pad_token_id", None) is None:
            cfg.pad_token_id = self.tokenizer.pad_token_id
        if model and pretrained and not reinit_head:
            trained_for = getattr(model_config(model, None, {}), "num_labels", len(classes))
            if trained_for != len(classes):
                raise ConfigError(
                    "task.model", model,
                    f"is a classifier of {trained_for} labels and the data have {len(classes)} ({', '.join(map(str, classes))}): "
                    "task.reinit_head=true starts a new classification head on the pretrained body",
                )  # fmt: skip
        self.model = build_model("classifier", cfg, model, pretrained, device, batch_size, max_length, reinit_head)
        self.batches_per_epoch = len(self.train_idx) // (batch_size * grad_accum)
        self._epoch, self._order = -1, self.train_idx

    def _batch(self, source: Any, idx: np.ndarray) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """Examples by index, cut to the longest in the batch (read on the host: no device sync)."""
        mask = np.asarray(source.attention_mask[idx])
        length = max(1, int(mask.sum(axis=1).max()))
        ids = torch.from_numpy(np.asarray(source.input_ids[idx][:, :length], dtype=np.int64))
        x = {"input_ids": ids.to(self.device), "attention_mask": torch.from_numpy(mask[:, :length].astype(np.int64)).to(self.device)}
        return x, torch.from_numpy(np.asarray(source.labels[idx], dtype=np.int64)).to(self.device)

    def param_groups(self) -> list[dict[str, Any]]:
        return decay_groups(self.model)

    def train_batch(self, step: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """A slice of a per-epoch shuffle drawn from (seed, epoch): a pure function of (seed, step)."""
        epoch, i = divmod(step, self.batches_per_epoch)
        if epoch != self._epoch:
            self._order = np.random.default_rng(batch_seed(self.seed, epoch)).permutation(self.train_idx)
            self._epoch = epoch
        size = self.batch_size * self.grad_accum
        return self._batch(self.train, np.sort(self._order[i * size : (i + 1) * size]))

    @staticmethod
    def loss(model: Model, x: dict[str, torch.Tensor], y: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(model(**x).logits.float(), y)

    @torch.no_grad()
    def evaluate(self, model: Model, split: str) -> dict[str, torch.Tensor]:
        source, idx = self.splits[split]
        loss_sum, correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        for part in np.array_split(idx, max(1, math.ceil(len(idx) / self.batch_size))):
            x, y = self._batch(source, part)
            logits = model(**x).logits.float()
            loss_sum = loss_sum + F.cross_entropy(logits, y, reduction="sum")
            correct = correct + (logits.argmax(dim=1) == y).sum()
        return {"loss": loss_sum / len(idx), "acc": correct / len(idx)}


def splits_of_name(splits: list[str], name: str) -> str | None:
    """The source's own split for train, val or test, by the names datasets use."""
    names = {"train": ("train",), "val": ("validation", "val", "valid", "dev"), "test": ("test",)}[name]
    return next((s for s in names if s in splits), None)
