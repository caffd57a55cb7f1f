"""The one error type a user should see for bad input: it names the key, the value and what is allowed."""

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
