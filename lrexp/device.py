"""Hardware choices: which device, which precision, how many threads."""

from __future__ import annotations

import contextlib
import math
import os
import time
from pathlib import Path

import torch

from lrexp.config import Device, Precision
from lrexp.errors import ConfigError


def select_device(choice: Device) -> torch.device:
    """The device a run trains on: the requested one, or the best present for ``auto``."""
    cuda, mps = torch.cuda.is_available(), torch.backends.mps.is_available()
    if choice is Device.auto:
        return torch.device("cuda" if cuda else "mps" if mps else "cpu")
    present = {Device.cpu: True, Device.cuda: cuda, Device.mps: mps}[choice]
    if not present:
        found = ", ".join(d for d, ok in (("cuda", cuda), ("mps", mps), ("cpu", True)) if ok)
        raise ConfigError("run.device", choice.value, f"not present on this machine (present: {found}; or use auto)")
    return torch.device(choice.value)


def resolve_precision(choice: Precision, device: torch.device) -> Precision:
    """``auto`` means bf16 autocast where the hardware does it natively (CUDA), fp32 elsewhere."""
    if choice is Precision.auto:
        bf16_ok = device.type == "cuda" and torch.cuda.is_bf16_supported()
        return Precision.bf16 if bf16_ok else Precision.fp32
    return choice


def autocast(device: torch.device, precision: Precision) -> contextlib.AbstractContextManager:
    """The forward-pass context: bf16 autocast (weights and optimizer state stay fp32), or nothing."""
    if precision is Precision.bf16:
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def configure_backends(device: torch.device) -> None:
    """TF32 matmuls on CUDA: ~fp32 accuracy for training at tensor-core speed."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity: a cluster's allocation, a container's cpuset)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def free_cores(sample_s: float = 0.25) -> int:
    """How many of this process's cores other processes leave free now: the machine's busy time over a
    short sample (/proc/stat), less this process's own (/proc/self/stat), rounded up to whole cores taken.
    At least 1; all of them where /proc cannot say (not Linux)."""
    cores = usable_cores()

    def sample() -> tuple[float, float, float]:
        with open("/proc/stat") as f:
            fields = [float(x) for x in f.readline().split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        own = [float(x) for x in Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[11:13]]  # utime, stime
        return sum(fields[:8]) - idle, sum(fields[:8]), sum(own)

    try:
        busy0, total0, own0 = sample()
        time.sleep(sample_s)
        busy1, total1, own1 = sample()
    except (OSError, ValueError, IndexError):
        return cores
    machine = os.cpu_count() or cores
    if total1 <= total0:
        return cores
    others = max(0.0, (busy1 - busy0) - (own1 - own0)) / (total1 - total0) * machine  # cores' worth of other work
    return max(1, cores - math.ceil(others - 0.25))  # a quarter-core of background noise takes no core


def free_threads(what: str) -> int:
    """Torch threads where nothing else decides (run.threads 0, not a parallel or a cluster job): the cores
    other processes leave free now, so that torch's OpenMP threads, which spin at every barrier, never share
    a core with another process (docs/performance.md, Performance: with one core of two busy, a digits run on both took
    1.94x its idle time). An explicit OMP_NUM_THREADS wins, as it does for torch."""
    import logging

    given = os.environ.get("OMP_NUM_THREADS", "")
    if given.isdigit() and int(given) > 0:
        return int(given)
    free, cores = free_cores(), usable_cores()
    if free < cores:
        logging.getLogger("lrexp").info(
            "%s: %d of %d cores are busy with other processes: %d torch threads", what, cores - free, cores, free
        )
    return free
