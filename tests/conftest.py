"""Fixtures shared by the tests (helpers live in tests/helpers.py)."""

from __future__ import annotations

import os

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Under pytest-xdist, each worker and the runs it starts get their share of the cores as torch threads.

    torch's default is a thread per core in every process: two workers each stepping runs with two
    spinning OpenMP threads on two cores took 29 minutes in CI, 13 on the same machine with one each
    (docs/clusters.md, "On a busy machine"; the same rule as the joblib launcher's cores // n_jobs). The child
    processes inherit it through OMP_NUM_THREADS; a test that sets run.threads still gets what it asks for."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1 and "OMP_NUM_THREADS" not in os.environ:
        threads = max(1, len(os.sched_getaffinity(0)) // workers)
        os.environ["OMP_NUM_THREADS"] = str(threads)
        import torch  # imported here, after the variable is set, so the worker itself follows it too

        torch.set_num_threads(threads)


@pytest.fixture
def quick() -> list[str]:
    """Overrides for a short real run: a few hundred ms of training."""
    return ["run.steps=60", "run.log_every=5", "run.eval_every=20"]
