"""``python -m lrexp``: the Hydra entry point.

Everything that depends on Hydra's runtime is here and in lrexp.jobs (the job's output directory, the
launcher, the sweep it belongs to); the training loop (lrexp.train) receives plain values.
"""

from __future__ import annotations

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

import lrexp.config  # noqa: F401 - registers the schemas and ${steps:...} before Hydra composes
from lrexp.jobs import run_job


def register_plugins() -> None:
    """Make ``hydra/launcher=batched``, ``hydra/launcher=parallel``, ``hydra/sweeper=adaptive`` and
    ``hydra/sweeper=cooldowns`` known to Hydra in every install.

    Hydra finds plugins by walking the ``hydra_plugins`` namespace package with pkgutil, which cannot see
    into an editable install (setuptools serves it through an import hook, not a directory): from any
    other working directory Hydra would answer "Unknown plugin class". Plugins.register is Hydra's API for
    exactly this. The parallel launcher builds on Hydra's joblib launcher, an optional extra: without it,
    ``hydra/launcher=parallel`` fails as ``hydra/launcher=joblib`` would.
    """
    from importlib.util import find_spec

    from hydra.core.plugins import Plugins

    from hydra_plugins.lrexp_launchers.batched import BatchedLauncher
    from hydra_plugins.lrexp_sweepers.adaptive import AdaptiveSweeper
    from hydra_plugins.lrexp_sweepers.cooldowns import CooldownSweeper

    for plugin in (BatchedLauncher, AdaptiveSweeper, CooldownSweeper):
        Plugins.instance().register(plugin)
    if find_spec("hydra_plugins.hydra_joblib_launcher") is not None:
        from hydra_plugins.lrexp_launchers.parallel import ParallelLauncher

        Plugins.instance().register(ParallelLauncher)


register_plugins()


@hydra.main(version_base="1.3", config_path="pkg://lrexp.conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    return run_job(cfg, HydraConfig.get())
