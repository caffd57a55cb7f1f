"""The baseline lrexp is measured against: a plain, hand-written PyTorch loop on digits.

What a careful practitioner would write without a harness: data as tensors, a per-epoch shuffle, the
MLP, AdamW, a scheduler stepped per optimizer step, the loss read back at log steps and a validation
pass at eval steps. Same work as ``python -m lrexp`` with its default digits settings. Run directly, it
prints when its first optimizer step finished (seconds after process start), for scripts/bench.py.
"""

from __future__ import annotations

import argparse
import time


def train_plain(steps: int, fused: bool, log_every: int = 10, eval_every: int = 100, seed: int = 0, threads: int = 0):
    """Train and return (steps per second of the loop, seconds from process start to the first step)."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from lrexp.tasks.digits import load_digits_arrays, stratified_split  # the same data, not the same code path

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(seed)
    images, labels = load_digits_arrays()
    train_idx, val_idx = stratified_split(labels, 0.2, 0)
    x = torch.from_numpy(images / 16.0).float()
    y = torch.from_numpy(labels)
    x_train, y_train, x_val, y_val = x[train_idx], y[train_idx], x[val_idx], y[val_idx]
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
            with torch.no_grad():
                logits = model(x_val)
                F.cross_entropy(logits, y_val).item()
                (logits.argmax(1) == y_val).float().mean().item()
    return steps / (time.perf_counter() - t0), first_step


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
