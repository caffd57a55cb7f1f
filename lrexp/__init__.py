"""lrexp: a Hydra experiment harness that shows what a learning-rate schedule does to training.

Data flows one way:
  config (conf/, lrexp.config) -> build (tasks/, build.py, loggers/) -> train loop (train.py)
  -> run directory (record.py, plots.py) -> reports (report.py, wandb_report.py), which read run
  directories and never import the runner.

Importing the package is cheap on purpose: torch, transformers, wandb and matplotlib are imported only
by the modules that use them.
"""

__version__ = "0.1.0"
