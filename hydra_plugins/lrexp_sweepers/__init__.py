"""lrexp's Hydra sweepers (Hydra finds sweepers only under the ``hydra_plugins`` namespace package).

- ``hydra/sweeper=adaptive`` (adaptive.py): rounds of seeds through any launcher, until the verdict is decided.

Importing this package must stay cheap: Hydra imports every plugin module at start-up, for every command.
"""
