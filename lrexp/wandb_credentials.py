"""W&B credentials: whether an API key is configured (without prompting, without network), and keeping
it out of everything lrexp writes. Imported by the W&B logger and by the W&B report; wandb itself is
passed in by the caller, which has imported it where it is used."""

from __future__ import annotations

import os
from typing import Any


def configured_credentials(wandb: Any) -> tuple[bool, str | None]:
    """Whether wandb has credentials (env, .netrc, settings file) and the API key if it is one.

    Without prompting and without network: wandb's own lookup with ``prompt=False``. ``wandb.login``
    would do the same lookup but also ask the server who the key belongs to (seconds without network).
    """
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth
    except ImportError:  # a wandb without wbauth: the public check
        return bool(wandb.login(prompt=False, verify=False)), None
    try:
        settings = wandb_setup.singleton().settings
        auth = wbauth.authenticate_session(host=settings.base_url, source="lrexp", prompt=False, verify=False, update_session=False)
    except Exception:
        return True, os.environ.get("WANDB_API_KEY")
    return auth is not None, getattr(auth, "api_key", None)


def redacted(obj: Any, *secrets: str | None) -> Any:
    """``obj`` with every occurrence of the secrets (and of WANDB_API_KEY) replaced by ``***``, in strings
    and inside dicts and lists."""
    found = [s for s in (*secrets, os.environ.get("WANDB_API_KEY")) if s and len(s) >= 8]  # a short value would redact ordinary text
    if not found:
        return obj
    if isinstance(obj, str):
        for s in found:
            obj = obj.replace(s, "***")
        return obj
    if isinstance(obj, dict):
        return {k: redacted(v, *found) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redacted(v, *found) for v in obj)
    return obj
