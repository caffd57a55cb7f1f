"""The one error type a user should see for bad input (it names the key, the value and what is allowed),
and the one way lrexp shortens any other exception to a line."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A config value lrexp cannot run with. Printed as a single line; the process exits non-zero."""

    def __init__(self, key: str, value: Any, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!r}: {allowed}")


class SecretInConfig(ConfigError):
    """A secret (an API key) given as a config value: refused, shown as ``***``, and scrubbed by the entry
    point from the files Hydra saved before the job started (``+key=...`` overrides reach .hydra/)."""

    def __init__(self, key: str, secret: str, allowed: str) -> None:
        super().__init__(key, "***", allowed)
        self.secret = secret


class RunInUse(ConfigError):
    """Another process holds the run directory (record.writing): refused, and nothing is recorded there,
    since everything in it belongs to that other run."""


def first_line(e: BaseException | str) -> str:
    """The first non-empty line of an exception's message (compilers and HTTP clients write paragraphs),
    or the exception's type name when it has no message."""
    text = str(e).strip()
    if text:
        return next(line.strip() for line in text.splitlines() if line.strip())
    return type(e).__name__ if isinstance(e, BaseException) else ""


def describe(e: BaseException) -> str:
    """``Type: first line``: how a failure is recorded in summary.json and logged."""
    return f"{type(e).__name__}: {first_line(e)}"
