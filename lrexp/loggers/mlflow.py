"""MLflow: every run (every job of a sweep) as an MLflow run: the flattened config as params, every row's
numbers as metrics at their step, the plots as artifacts, the status at the end. Through MlflowClient
(no global active run: several jobs share a process under the basic and joblib launchers). mlflow is
imported in start() only (``pip install 'lrexp[mlflow]'``). Never costs a run: a failure is one warning
and the logger stops (lrexp.loggers.Logger.guarded).

The default store is a local folder, ``./mlruns`` in the working directory, shared by the jobs of a
sweep and safe for parallel jobs. MLflow 3 has put its file store into maintenance in favour of a
database and refuses it unless MLFLOW_ALLOW_FILE_STORE=true, which lrexp sets for file stores only;
``logger.mlflow.tracking_uri`` takes any other store (``sqlite:///mlflow.db``, a server's URL).

    mlflow ui --backend-store-uri ./mlruns
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any

from lrexp.loggers import Logger, RunInfo
from lrexp.record import PLOTS_DIR, STEP, SUMMARY_FILE, Row, Status, Summary, read_summary

# MLflow's limits on one log_batch call, and on a param value's length.
MAX_PARAMS_PER_BATCH, MAX_PARAM_LENGTH = 100, 6000
END_STATES = {Status.COMPLETED: "FINISHED", Status.DIVERGED: "FINISHED", Status.INTERRUPTED: "KILLED", Status.FAILED: "FAILED"}


class MLflowLogger(Logger):
    name = "MLflow"

    def __init__(self, *, run: RunInfo, tracking_uri: str | None, experiment: str, log_plots: bool) -> None:
        super().__init__(run=run)
        self.tracking_uri = tracking_uri or (Path.cwd() / "mlruns").as_uri()
        self.experiment, self.log_plots = experiment, log_plots
        self.client: Any = None
        self.run_id: str | None = None

    def start(self, step: int = 0) -> None:
        self.guarded("starting the run", self._open, step)

    def _open(self, step: int) -> None:
        if self.tracking_uri.startswith("file:"):
            os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # see the module's docstring
        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        client = MlflowClient(tracking_uri=self.tracking_uri)
        found = client.get_experiment_by_name(self.experiment)
        experiment_id = found.experiment_id if found else client.create_experiment(self.experiment)
        previous = self._previous_run_id() if self.run_info.config.get("run", {}).get("resume") else None
        if previous:
            client.update_run(previous, status="RUNNING")  # a resumed run continues its MLflow run
            self.run_id = previous
        else:
            info = self.run_info
            tags = {"mlflow.runName": info.name, "lrexp.run_dir": str(info.run_dir), **{f"lrexp.{k}": v for k, v in info.choices.items()}}
            if info.group:
                tags["lrexp.group"] = info.group
            self.run_id = client.create_run(experiment_id, run_name=info.name or None, tags=tags).info.run_id
            params = [Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in _flatten(info.config).items()]
            for i in range(0, len(params), MAX_PARAMS_PER_BATCH):
                client.log_batch(self.run_id, params=params[i : i + MAX_PARAMS_PER_BATCH])
        self.client = client

    def _previous_run_id(self) -> str | None:
        path = Path(self.run_info.run_dir) / SUMMARY_FILE
        try:
            recorded = read_summary(Path(self.run_info.run_dir)).extra.get("mlflow", {}) if path.is_file() else {}
        except (OSError, ValueError):
            return None
        return recorded.get("run_id") if recorded.get("tracking_uri") == self.tracking_uri else None

    def log_row(self, row: Row) -> None:
        if self.client is None or self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(k, float(v), now, int(row[STEP])) for k, v in row.items() if k != STEP and v is not None and math.isfinite(v)]
        self.guarded("logging a row", self.client.log_batch, self.run_id, metrics=metrics)

    def summary_fields(self) -> dict[str, Any]:
        if self.run_id is None:
            return {}
        return {"mlflow": {"run_id": self.run_id, "tracking_uri": self.tracking_uri, "experiment": self.experiment}}

    def finish(self, summary: Summary, run_dir: Path) -> None:
        client, self.client = self.client, None
        if client is None or self.run_id is None:
            return
        self.guarded("tagging the status", client.set_tag, self.run_id, "lrexp.status", summary.status.value)
        plots = run_dir / PLOTS_DIR
        if self.log_plots and summary.status is not Status.INTERRUPTED and plots.is_dir():
            self.guarded("uploading the plots", client.log_artifacts, self.run_id, str(plots), PLOTS_DIR)
        self.guarded("ending the run", client.set_terminated, self.run_id, END_STATES[summary.status])

    def abort(self, error: str) -> None:
        client, self.client = self.client, None
        if client is not None and self.run_id is not None:
            self.guarded("ending the run", client.set_terminated, self.run_id, "FAILED")


def _flatten(node: Any, prefix: str = "") -> dict[str, Any]:
    """{"optimizer": {"lr": 1e-3}} -> {"optimizer.lr": 1e-3}: MLflow params are flat."""
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            out.update(_flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: node}
