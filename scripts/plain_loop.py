"""The baselines lrexp is measured against: plain, hand-written PyTorch loops on digits and on tinylm.

What a careful practitioner would write without a harness: data as tensors, a per-epoch shuffle, the
MLP, AdamW, a scheduler stepped per optimizer step, the loss read back at log steps, a validation
pass at eval steps and the test split once at the end. Same work as ``python -m lrexp`` with its default
digits settings, checkpoints aside (scripts/bench.py measures lrexp with only its final checkpoint). Run directly, it
prints when its first optimizer step finished (seconds after process start), for scripts/bench.py.

``train_plain_tinylm`` is the same for the language model, nanoGPT-style: the corpus as one byte tensor,
random windows per step, the same transformers GPT-2, AdamW with decay on the matmul weights only.
``train_plain_hf`` is what one writes around a Hugging Face model: from_pretrained, a transformers
schedule, random windows of a tokenized text.
"""

from __future__ import annotations

import argparse
import time


def train_plain(steps: int, fused: bool, log_every: int = 10, eval_every: int = 50, seed: int = 0, threads: int = 0):
    """Train and return (steps per second of the loop, seconds from process start to the first step)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from lrexp.tasks.digits import load_digits_arrays, stratified_split  # the same data, not the same code path

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    images, labels = load_digits_arrays()
    train_idx, val_idx, test_idx = stratified_split(labels, (0.2, 0.2), 0)  # lrexp's train / validation / test split
    x = torch.from_numpy(images / 16.0).float()
    y = torch.from_numpy(labels)
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
    x_test, y_test = x[test_idx], y[test_idx]
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.01, fused=fused or None)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps // 3)
    batch, per_epoch = 128, len(y_train) // 128

    t0 = time.perf_counter()
    first_step = None
    for step in range(steps):
        if step % per_epoch == 0:
            perm = torch.randperm(len(y_train))
            xe, ye = x_train[perm], y_train[perm]
        i = (step % per_epoch) * batch
        loss = F.cross_entropy(model(xe[i : i + batch]), ye[i : i + batch])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if first_step is None:
            first_step = time.time()
        if step % log_every == 0:
            loss.item()
        if step % eval_every == 0 or step == steps - 1:
            # validation as lrexp does it, and the held-out test split once at the end
            for xs, ys in [(x_val, y_val)] + ([(x_test, y_test)] if step == steps - 1 else []):
                with torch.no_grad():
                    logits = model(xs)
                    F.cross_entropy(logits, ys).item()
                    (logits.argmax(1) == ys).float().mean().item()
    return steps / (time.perf_counter() - t0), first_step


def train_plain_tinylm(
    steps: int,
    batch_size: int,
    context: int,
    n_layer: int,
    n_head: int,
    n_embd: int,
    max_corpus_bytes: int,
    eval_batches: int,
    test_batches: int,
    log_every: int = 10,
    eval_every: int = 50,
    seed: int = 0,
    threads: int = 0,
) -> float:
    """Train the tinylm model on the stdlib corpus; return the loop's steps per second."""
    import torch
    import torch.nn.functional as F
    from transformers import GPT2Config, GPT2LMHeadModel

    from lrexp.tasks.tinylm import read_corpus, stdlib_sources  # the same bytes, not the same code path

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    data = torch.frombuffer(bytearray(read_corpus(stdlib_sources(), max_corpus_bytes)), dtype=torch.uint8)
    n_train = int(0.95 * len(data))
    train_data, val_data = data[:n_train], data[n_train:]
    config = GPT2Config(
        vocab_size=256,
        n_positions=context,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        activation_function="gelu_pytorch_tanh",
        attn_implementation="sdpa",
        use_cache=False,
        bos_token_id=None,
        eos_token_id=None,
    )
    model = GPT2LMHeadModel(config)
    decay = [p for n, p in model.named_parameters() if p.ndim == 2 and "wte" not in n and "wpe" not in n]
    no_decay = [p for n, p in model.named_parameters() if not (p.ndim == 2 and "wte" not in n and "wpe" not in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=1e-3, fused=True)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps // 3))
    offsets = torch.arange(context + 1)
    val_starts = torch.linspace(0, len(val_data) - context - 2, eval_batches * batch_size).long()
    val_windows = val_data[val_starts[:, None] + offsets].long().split(batch_size)
    test_starts = torch.linspace(0, len(val_data) - context - 2, test_batches * batch_size).long()
    test_windows = val_data[test_starts[:, None] + offsets].long().split(batch_size)  # as many as lrexp's test

    def lm_loss(windows, reduction="mean"):
        logits = model(input_ids=windows[:, :-1]).logits
        return F.cross_entropy(logits.flatten(0, 1), windows[:, 1:].flatten(), reduction=reduction), logits

    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        starts = torch.randint(len(train_data) - context - 1, (batch_size,))
        loss, _ = lm_loss(train_data[starts[:, None] + offsets].long())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if step % log_every == 0:
            loss.item()
        if step % eval_every == 0 or step == steps - 1:
            model.eval()
            with torch.no_grad():
                total, correct = 0.0, 0
                for w in val_windows + (test_windows if step == steps - 1 else ()):  # test once, at the end
                    val_loss, logits = lm_loss(w, reduction="sum")
                    total += val_loss.item()
                    correct += (logits.argmax(-1) == w[:, 1:]).sum().item()
            model.train()
    return steps / (time.perf_counter() - t0)


def train_plain_hf(
    steps: int,
    model_dir: str,
    tokens,
    batch_size: int,
    context: int,
    eval_batches: int,
    test_batches: int,
    lr: float = 5e-5,
    log_every: int = 10,
    eval_every: int = 50,
    seed: int = 0,
) -> float:
    """A plain Hugging Face loop: a causal LM from_pretrained, AdamW (fused, decay on the matrices),
    transformers' cosine schedule, random windows of a token array, the loss read at log steps,
    validation windows every eval_every steps and the test windows at the end. Steps per second."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from transformers import AutoModelForCausalLM, get_cosine_schedule_with_warmup

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}], lr=lr, fused=True)
    sched = get_cosine_schedule_with_warmup(opt, steps // 20, steps)
    n = len(tokens) - context - 1
    rng = np.random.default_rng(seed)
    held = [
        torch.from_numpy(np.asarray(tokens[s : s + context + 1], dtype=np.int64))
        for s in np.linspace(0, n, (eval_batches + test_batches) * batch_size).astype(int)
    ]
    batches = [torch.stack(held[i : i + batch_size]) for i in range(0, len(held), batch_size)]
    val, test = batches[:eval_batches], batches[eval_batches:]

    def lm_loss(w, reduction="mean"):
        logits = model(input_ids=w[:, :-1]).logits
        return F.cross_entropy(logits.flatten(0, 1).float(), w[:, 1:].flatten(), reduction=reduction), logits

    model.train()
    t0 = time.perf_counter()
    for step in range(steps):
        starts = rng.integers(n, size=batch_size)
        w = torch.from_numpy(np.asarray(tokens[starts[:, None] + np.arange(context + 1)[None, :]], dtype=np.int64))
        loss, _ = lm_loss(w)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sched.step()
        if step % log_every == 0:
            loss.item()
        if step % eval_every == 0 or step == steps - 1:
            model.eval()
            with torch.no_grad():
                for w in val + (test if step == steps - 1 else []):
                    total, logits = lm_loss(w, reduction="sum")
                    total.item()
                    (logits.argmax(-1) == w[:, 1:]).sum().item()
            model.train()
    return steps / (time.perf_counter() - t0)


def process_start_time() -> float:
    from lrexp.train import process_start_time as start

    return start()


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--fused", action="store_true")
    a = p.parse_args()
    _, first = train_plain(a.steps, a.fused)
    print(f"first_step_s={first - process_start_time():.4f}")
