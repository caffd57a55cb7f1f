"""Fixtures shared by the tests (helpers live in tests/helpers.py)."""

from __future__ import annotations

import pytest


@pytest.fixture
def quick() -> list[str]:
    """Overrides for a short real run: a few hundred ms of training."""
    return ["run.steps=60", "run.log_every=5", "run.eval_every=20"]
