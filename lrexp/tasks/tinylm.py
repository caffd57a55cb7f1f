"""Task ``tinylm``: a small GPT-2 (transformers, random init) learning to predict the next byte of text.

The schedule comparison that matters most for transformers, on real text present on every machine: by
default the Python standard library's own sources, read in a fixed order. The corpus lives on the device
as one uint8 tensor; a batch is a gather of random windows whose positions are drawn from a generator
re-seeded from (seed, step), so the batch of a step is a pure function of (seed, step) and resuming needs
no loader state. transformers is imported only here: a digits run never pays for it.
"""

from __future__ import annotations

import math
import os
import sysconfig
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from lrexp.errors import ConfigError
from lrexp.record import Goal, Metric
from lrexp.tasks.base import Model, check_fractions, check_sizes
from lrexp.tasks.text_files import text_files

VOCAB = 256  # bytes
# The corpus is cut into this many equal chunks (fewer for a small corpus); an evenly spaced subset of
# them is the validation set. Windows never straddle two chunks, so no window mixes train and validation.
SPLIT_CHUNKS = 100
# Library folders inside the stdlib directory: other people's code, different on every machine.
NOT_STDLIB = {"site-packages", "dist-packages", "__pycache__"}


# --- corpus --------------------------------------------------------------------------------------


def stdlib_sources() -> list[Path]:
    """The standard library's .py files, sorted by their path relative to the stdlib folder."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [d for d in subfolders if d not in NOT_STDLIB]
        files += [Path(folder, n) for n in names if n.endswith(".py")]
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def corpus_files(corpus: str | None, corpus_glob: str) -> list[Path]:
    """The files of the corpus in reading order: a file, a folder's text files matching the glob, or the stdlib."""
    if corpus is None:
        return stdlib_sources()
    return text_files(
        corpus,
        corpus_glob,
        key="task.corpus",
        glob_key="task.corpus_glob",
        allowed="a text file, a folder of text files, or null for the stdlib",
    )


def read_corpus(files: list[Path], max_bytes: int) -> bytes:
    """The files' bytes concatenated in order, up to ``max_bytes`` (the last file is cut)."""
    parts, total = [], 0
    for path in files:
        data = path.read_bytes()[: max_bytes - total]
        parts.append(data)
        total += len(data)
        if total >= max_bytes:
            break
    return b"".join(parts)


def split_chunks(n_bytes: int, context: int, val_fraction: float, test_fraction: float) -> tuple[int, list[int], list[int], list[int]]:
    """(chunk length, train, validation and test chunk indices): a split fixed by the corpus alone.

    The held-out chunks are evenly spaced through the corpus and alternate between validation and test,
    so that every set samples every part of it (the stdlib sorted by path runs from asyncio to xml: a
    tail split would validate on other modules than it trains on).
    """
    n_chunks = min(SPLIT_CHUNKS, n_bytes // (2 * (context + 1)))  # >= context + 2 bytes per chunk
    n_val, n_test = max(1, round(val_fraction * n_chunks)), max(1, round(test_fraction * n_chunks))
    n_held = n_val + n_test
    if n_chunks - n_held < 1:
        return 0, [], [], []
    val: list[int] = []
    test: list[int] = []
    for c in ((j + 1) * n_chunks // n_held - 1 for j in range(n_held)):
        # The next held-out chunk goes to whichever split is furthest behind its share.
        (val if len(val) * n_test <= len(test) * n_val and len(val) < n_val else test).append(c)
    train = sorted(set(range(n_chunks)) - set(val) - set(test))
    return n_bytes // n_chunks, train, val, test


# --- the task ------------------------------------------------------------------------------------


def gpt2(context: int, n_layer: int, n_head: int, n_embd: int, dropout: float) -> nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel  # seconds of imports: only tinylm runs pay them

    config = GPT2Config(  # type: ignore[call-arg]  # attn_implementation is a PretrainedConfig keyword
        vocab_size=VOCAB,
        n_positions=context,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        # GPT-2's tanh-approximated GELU as one fused torch kernel ("gelu_new" is five elementwise ops).
        activation_function="gelu_pytorch_tanh",
        attn_implementation="sdpa",
        use_cache=False,  # training only: no key/value cache to build on every forward
        bos_token_id=None,  # GPT-2's 50256 is outside a byte vocabulary
        eos_token_id=None,
    )
    return GPT2LMHeadModel(config)


def batch_seed(seed: int, step: int) -> int:
    """A 32-bit generator seed mixing (seed, step).

    torch's CPU generator keeps only the low 32 bits of a seed, so packing seed and step side by side
    into 64 bits would give every run seed the same batches; SeedSequence hashes both into 32 bits.
    """
    return int(np.random.SeedSequence([seed % 2**64, step]).generate_state(1)[0])


class TinyLMTask:
    metrics = (
        Metric("loss", Goal.MIN, "loss", "log"),
        Metric("acc", Goal.MAX, "next-byte accuracy", "linear"),
        Metric("bpb", Goal.MIN, "bits per byte", "log"),
    )

    def __init__(
        self,
        batch_size: int,
        context: int,
        n_layer: int,
        n_head: int,
        n_embd: int,
        dropout: float,
        corpus: str | None,
        corpus_glob: str,
        max_corpus_bytes: int,
        val_fraction: float,
        test_fraction: float,
        eval_batches: int,
        test_batches: int,
        *,
        device: torch.device,
        seed: int,
    ) -> None:
        check_sizes(batch_size=batch_size, context=context, n_layer=n_layer, n_head=n_head, n_embd=n_embd,
                    max_corpus_bytes=max_corpus_bytes, eval_batches=eval_batches, test_batches=test_batches)  # fmt: skip
        if n_embd % n_head:
            raise ConfigError("task.n_head", n_head, f"must divide task.n_embd ({n_embd})")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError("task.dropout", dropout, "must be in [0, 1)")
        check_fractions(0.5, val_fraction=val_fraction, test_fraction=test_fraction)

        text = read_corpus(corpus_files(corpus, corpus_glob), max_corpus_bytes)
        chunk_len, train_chunks, val_chunks, test_chunks = split_chunks(len(text), context, val_fraction, test_fraction)
        if not train_chunks:
            # Blame the cap when it cut the text, else the corpus itself.
            key, value = ("task.max_corpus_bytes", str(max_corpus_bytes)) if len(text) == max_corpus_bytes else ("task.corpus", str(corpus))
            raise ConfigError(
                key, value, f"{len(text)} bytes of text are too few for task.context={context} (at least {4 * (context + 1)})"
            )
        self.n_bytes, self.chunk_len = len(text), chunk_len
        self.train_chunks, self.val_chunks, self.test_chunks = train_chunks, val_chunks, test_chunks
        self.data = torch.frombuffer(bytearray(text), dtype=torch.uint8).to(device)
        self.context, self.batch_size, self.seed, self.device = context, batch_size, seed, device
        # A window is context + 1 bytes (inputs, and targets shifted by one); it must fit inside its chunk.
        self._window = torch.arange(context + 1, device=device)
        self._starts_per_chunk = chunk_len - context
        self._train_chunk_offsets = torch.tensor(train_chunks, device=device) * chunk_len
        self._n_train_starts = len(train_chunks) * self._starts_per_chunk
        self._generator = torch.Generator(device=device)

        # Validation and test: fixed sets of windows spread evenly through their chunks.
        self.splits = {"val": self._fixed_windows(val_chunks, eval_batches), "test": self._fixed_windows(test_chunks, test_batches)}

        self.model = gpt2(context, n_layer, n_head, n_embd, dropout).to(device)

    def _fixed_windows(self, chunks: list[int], n_batches: int) -> tuple[tuple[torch.Tensor, ...], tuple[torch.Tensor, ...]]:
        """``n_batches`` batches of windows spread evenly through ``chunks``, as (inputs, targets) batches.

        Positions are computed on the CPU in float64: exact for any corpus size, and MPS has no float64.
        """
        n_starts = len(chunks) * self._starts_per_chunk
        k = torch.linspace(0, n_starts - 1, n_batches * self.batch_size, dtype=torch.float64).long()
        starts = torch.tensor(chunks)[k // self._starts_per_chunk] * self.chunk_len + k % self._starts_per_chunk
        x, y = self._windows(starts.to(self.device))
        return x.split(self.batch_size), y.split(self.batch_size)

    def _windows(self, starts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        windows = self.data[starts[:, None] + self._window].long()  # (batch, context + 1) byte ids
        return windows[:, :-1], windows[:, 1:]

    def param_groups(self) -> list[dict]:
        """Weight decay on the matmul weights only; biases, LayerNorm and the embeddings are not decayed.

        The token embedding is also the output layer (tied); decay would pull the rows of rare bytes
        towards zero between their rare updates, so it goes with the no-decay group (as in GPT-3).
        """
        embeddings = {id(p) for m in self.model.modules() if isinstance(m, nn.Embedding) for p in m.parameters()}
        decay: list[nn.Parameter] = []
        no_decay: list[nn.Parameter] = []
        for p in self.model.parameters():  # tied weights appear once
            (decay if p.ndim >= 2 and id(p) not in embeddings else no_decay).append(p)
        return [{"name": "decay", "params": decay}, {"name": "no_decay", "params": no_decay, "weight_decay": 0.0}]

    def train_batch(self, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        self._generator.manual_seed(batch_seed(self.seed, step))
        k = torch.randint(self._n_train_starts, (self.batch_size,), generator=self._generator, device=self.device)
        return self._windows(self._train_chunk_offsets[k // self._starts_per_chunk] + k % self._starts_per_chunk)

    @staticmethod
    def loss(model: Model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids=x).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), y.flatten())

    @torch.no_grad()
    def evaluate(self, model: Model, split: str) -> dict[str, torch.Tensor]:
        """Mean next-byte loss, accuracy and bits per byte over a split's fixed windows (device tensors).

        Sums are accumulated out of place (``a = a + b``), so that the same code runs under torch.func.vmap.
        """
        xs, ys = self.splits[split]
        loss_sum, correct = torch.zeros((), device=self.device), torch.zeros((), device=self.device)
        for x, y in zip(xs, ys):
            logits = model(input_ids=x).logits.flatten(0, 1).float()
            loss_sum = loss_sum + F.cross_entropy(logits, y.flatten(), reduction="sum")
            correct = correct + (logits.argmax(dim=1) == y.flatten()).sum()
        n = sum(y.numel() for y in ys)
        loss = loss_sum / n
        return {"loss": loss, "acc": correct / n, "bpb": loss / math.log(2)}
