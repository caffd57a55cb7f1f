"""Checkpoints for exact resume: written atomically, read back only into a run with the same config.

A checkpoint holds the ``state_dict()`` of every stateful object of a run, by name (the model, the
optimizer, the schedule, the RNGs and the loop's own state), plus the config's fingerprint and the
run's ``.hydra/`` files. The training loop restores them in the same order it saved them, which is the
order torch needs: rebuild the scheduler from config, load the optimizer state, then the scheduler's.
"""

from __future__ import annotations

import io
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from lrexp.errors import ConfigError, describe
from lrexp.record import CHECKPOINT_FILE, holds_run, is_neutral, replacing

# Checkpoint keys that are not a stateful object's.
FINGERPRINT, HYDRA_FILES = "fingerprint", "hydra_files"


class Stateful(Protocol):
    def state_dict(self) -> Any: ...

    def load_state_dict(self, state: Any, /) -> Any: ...


def save(path: Path, stateful: Mapping[str, Stateful], cfg: DictConfig, hydra_files: Mapping[str, str]) -> None:
    """Whole or not at all (record.replacing): a reader, or a resume after a crash or a full disk, sees the
    previous checkpoint or this one."""
    payload = {name: obj.state_dict() for name, obj in stateful.items()}
    payload[FINGERPRINT], payload[HYDRA_FILES] = fingerprint(cfg), dict(hydra_files)
    # Serialised in memory first: torch's zip writer turns a failed write (a full disk) into a RuntimeError
    # about file positions; a plain write says ENOSPC, which the entry point reports in one line.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    with replacing(path, sync=True) as f:
        f.write(buffer.getbuffer())


def load(path: Path) -> dict[str, Any]:
    # weights_only: a checkpoint is data, never code to run.
    checkpoint: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=True)
    return checkpoint


class RngState:
    """Every random number generator a run draws from, as one stateful object."""

    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
        assert isinstance(keys, np.ndarray)
        states: dict[str, Any] = {
            "python": random.getstate(),
            "numpy": (name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached),
            "torch": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            states["cuda"] = torch.cuda.get_rng_state_all()
        return states

    def load_state_dict(self, states: Mapping[str, Any]) -> None:
        random.setstate(states["python"])
        name, keys, pos, has_gauss, cached = states["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
        torch.set_rng_state(states["torch"])
        if "cuda" in states and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(states["cuda"])


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config minus what does not change a run's numbers, flattened to ``key -> value``."""
    flat: dict[str, Any] = {}

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}.{k}" if prefix else str(k))
        elif not is_neutral(prefix):
            flat[prefix] = node

    # What a run computes; loggers (which may use ${hydra:...}) and Hydra's own node never matter.
    for key in ("task", "optimizer", "scheduler", "run", "seed"):
        node = cfg[key]
        walk(OmegaConf.to_container(node, resolve=True, enum_to_str=True) if OmegaConf.is_config(node) else node, key)
    return flat


def open_run_dir(run_dir: Path, cfg: DictConfig, hydra_dir: Path | None) -> dict[str, Any] | None:
    """The checkpoint to resume from, or None to start fresh; refuses to overwrite another run.

    Hydra has already rewritten ``.hydra/`` by the time a job starts; when lrexp refuses, it puts back
    the files saved in the checkpoint, so that the refused command changes nothing on disk.
    """
    path = run_dir / CHECKPOINT_FILE
    ckpt, unreadable = None, None
    if path.exists():
        try:
            ckpt = load(path)
        except Exception as e:
            unreadable = describe(e)
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
        before, now = ckpt[FINGERPRINT], fingerprint(cfg)
        changed = sorted(k for k in before.keys() | now.keys() if before.get(k) != now.get(k))
        if changed:
            key = changed[0]
            raise ConfigError(
                key, now.get(key), f"differs from the checkpoint's value {before.get(key)!r}; resume with the run's own config"
            )
        return ckpt
    except ConfigError:
        if ckpt is not None and hydra_dir is not None:
            restore_hydra_files(hydra_dir, ckpt.get(HYDRA_FILES, {}))
        raise


def hydra_files(hydra_dir: Path | None) -> dict[str, str]:
    if hydra_dir is None or not hydra_dir.is_dir():
        return {}
    return {p.name: p.read_text() for p in sorted(hydra_dir.glob("*.yaml"))}


def restore_hydra_files(hydra_dir: Path, files: Mapping[str, str]) -> None:
    """Put back this run's config files where a refused command's Hydra wrote its own over them."""
    for name, text in files.items():
        path = hydra_dir / name
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
