"""Hardware choices: which device, which precision, how many threads."""

from __future__ import annotations

import contextlib

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
