"""Config nodes -> objects: any ``_target_`` node, checked against its callable's signature first, so
that a typo fails with the key's name instead of a TypeError from deep inside a library, and whatever
the callable refuses becomes one ConfigError naming the group. Torch-free: tasks, optimizers,
schedulers and loggers are all instantiated through here.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import get_object, instantiate
from omegaconf import DictConfig

from lrexp.errors import ConfigError, first_line

# Hydra's own keys in a _target_ node; everything else is a keyword argument of the callable.
_HYDRA_KEYS = {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}


def target_of(node: DictConfig, group: str) -> Callable:
    """The callable a config node points at, or a ConfigError naming ``<group>._target_``."""
    target = node.get("_target_")
    if not target:
        raise ConfigError(f"{group}._target_", target, "missing: the import path of a callable")
    try:
        return get_object(target)
    except Exception as e:  # ImportError, AttributeError, ... all mean the same to the user
        raise ConfigError(f"{group}._target_", target, f"cannot be imported ({type(e).__name__})") from None


def check_signature(node: DictConfig, group: str, bound_positionally: int = 1, supplied: Sequence[str] = ()) -> None:
    """Every key must be a parameter of the target, and every required parameter must be given.

    The first ``bound_positionally`` parameters (the optimizer, or the parameters) and the ``supplied``
    keywords come from lrexp at call time, not from the config.
    """
    fn = target_of(node, group)
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin without a signature: nothing to check against
        return
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params)
    named = [p for p in params[bound_positionally:] if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in supplied]
    names = {p.name for p in named}
    given = [k for k in node.keys() if k not in _HYDRA_KEYS]
    for key in given:
        if key not in names and not takes_any:
            raise ConfigError(
                f"{group}.{key!s}", node.get(key), f"not a parameter of {node.get('_target_')} (it takes: {', '.join(sorted(names))})"
            )
    for p in named:
        if p.default is p.empty and p.name not in given:
            raise ConfigError(f"{group}.{p.name}", None, f"required by {node.get('_target_')} but not set")


def call_target(node: DictConfig, group: str, *args: Any, **kwargs: Any) -> Any:
    """Instantiate ``node`` (calling the partial with ``args``), with any rejection as one ConfigError.

    Hydra wraps what a target raises in an InstantiationException; a ConfigError raised by lrexp's own
    targets (tasks) is unwrapped, and a library constructor's ValueError/TypeError names the group.
    """
    try:
        obj = instantiate(node, **kwargs)
        return obj(*args) if node.get("_partial_") else obj
    except InstantiationException as e:
        cause = e.__cause__ or e
    except (ValueError, TypeError) as e:
        cause = e
    if isinstance(cause, ConfigError):
        raise cause from None
    raise ConfigError(group, node.get("_target_"), f"rejected its arguments: {first_line(cause)}") from None
