"""lrexp's Hydra launchers (Hydra finds launchers only under the ``hydra_plugins`` namespace package).

- ``hydra/launcher=parallel`` (parallel.py): Hydra's joblib launcher that survives a worker the OS kills.

Importing this package must stay cheap: Hydra imports every plugin module at start-up, for every command.
"""
