"""Tasks: what is trained, on which data. ``Task`` is the interface the training loop is written against.

A task is any class a ``task/*.yaml`` points at with ``_target_``; lrexp calls it with the YAML's keys
plus ``device`` and ``seed``. Nothing outside the task's own module, YAML and (optional) schema knows
about it: the loop, the record, the plots and the reports read what the task declares.

The package itself imports no torch, so that the schemas (lrexp/tasks/schemas.py) load at every start-up
without it; ``lrexp.tasks.Task`` and the other names of lrexp/tasks/base.py are found here on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

PUBLIC = ("Task", "Model", "BatchTree", "split_batch", "stack_batches", "check_sizes", "check_fractions", "build_task")
__all__ = list(PUBLIC)


def __getattr__(name: str) -> Any:
    if name in PUBLIC:
        return getattr(importlib.import_module("lrexp.tasks.base"), name)
    raise AttributeError(f"module 'lrexp.tasks' has no attribute {name!r}")
