"""Checkpoints for exact resume: written atomically, read back only into a run with the same config.

A checkpoint holds the model, optimizer and scheduler states, every RNG state, the next step (which is
also the position in the data order: tasks derive batches from (seed, step)), the rows logged so far and
the loss accumulated since the last row. Restored in the order torch needs: rebuild the scheduler from
config, then load the optimizer state, then the scheduler state.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from lrexp.errors import ConfigError
from lrexp.record import CHECKPOINT_FILE, holds_run

# Keys that may differ between a run and its resumption without changing a single number.
RESUMABLE_CHANGES = ("run.resume", "run.progress", "run.threads", "run.checkpoint_every")


def save(path: Path, payload: Dict[str, Any]) -> None:
    """Write to a temporary file, fsync, then rename: a reader sees the old checkpoint or the new one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(payload, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> Dict[str, Any]:
    # weights_only: a checkpoint is data, never code to run.
    return torch.load(path, map_location="cpu", weights_only=True)


def rng_states() -> Dict[str, Any]:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: Dict[str, Any]) -> None:
    random.setstate(states["python"])
    name, keys, pos, has_gauss, cached = states["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def fingerprint(cfg: DictConfig) -> Dict[str, Any]:
    """The resolved config minus what may change on resume, flattened to ``key -> value``."""
    flat: Dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif not any(prefix == k or prefix.startswith(k + ".") for k in RESUMABLE_CHANGES):
            flat[prefix] = node

    # What a run computes; loggers (which may use ${hydra:...}) and Hydra's own node never matter.
    for key in ("task", "optimizer", "scheduler", "run", "seed"):
        node = cfg[key]
        walk(OmegaConf.to_container(node, resolve=True, enum_to_str=True) if OmegaConf.is_config(node) else node, key)
    return flat


def open_run_dir(run_dir: Path, cfg: DictConfig, hydra_dir: Optional[Path]) -> Optional[Dict[str, Any]]:
    """The checkpoint to resume from, or None to start fresh; refuses to overwrite another run.

    Hydra has already rewritten ``.hydra/`` by the time a job starts; when lrexp refuses, it puts back
    the files saved in the checkpoint, so that the refused command changes nothing on disk.
    """
    path = run_dir / CHECKPOINT_FILE
    ckpt, unreadable = None, None
    if path.exists():
        try:
            ckpt = load(path)
        except Exception as e:  # noqa: BLE001 - truncated by hand, another tool's file, ...: say which
            unreadable = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    try:
        if not cfg.run.resume:
            if holds_run(run_dir):
                raise ConfigError(
                    "run.resume", False, f"{run_dir} already holds a run: pass run.resume=true to continue it, or choose another directory"
                )
            return None
        if unreadable:
            raise ConfigError("run.resume", True, f"{path} cannot be read ({unreadable}); resume from another directory or start a new run")
        if ckpt is None:
            return None  # nothing to resume yet (killed before its first checkpoint): start over
        before, now = ckpt["fingerprint"], fingerprint(cfg)
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if changed:
            key = changed[0]
            raise ConfigError(
                key, now.get(key), f"differs from the checkpoint's value {before.get(key)!r}; resume with the run's own config"
            )
        return ckpt
    except ConfigError:
        if ckpt is not None and hydra_dir is not None:
            restore_hydra_files(hydra_dir, ckpt.get("hydra_files", {}))
        raise


def hydra_files(hydra_dir: Optional[Path]) -> Dict[str, str]:
    if hydra_dir is None or not hydra_dir.is_dir():
        return {}
    return {p.name: p.read_text() for p in sorted(hydra_dir.glob("*.yaml"))}


def restore_hydra_files(hydra_dir: Path, files: Dict[str, str]) -> None:
    for name, text in files.items():
        (hydra_dir / name).write_text(text)
