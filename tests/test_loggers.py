"""TensorBoard and MLflow: what a run logged, read back with each library's own reader; and a logger that
fails never costs the run."""

from __future__ import annotations

import pytest

from lrexp.record import read_metrics
from tests.helpers import run_cli, summary_json

pytestmark = pytest.mark.slow
QUICK = ["run.steps=40", "run.log_every=5", "run.eval_every=20"]


def test_tensorboards_reader_returns_every_logged_number_at_its_step(tmp_path):
    out = run_cli(["logger=tensorboard", *QUICK, "hydra.run.dir=run"], cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    rows = read_metrics(tmp_path / "run")
    for column in ("lr", "momentum", "weight_decay", "train_loss", "val_loss", "test_acc"):
        logged = [(e.step, e.value) for e in events.Scalars(column)]
        expected = [(r["step"], r[column]) for r in rows if r[column] is not None]
        assert [s for s, _ in logged] == [s for s, _ in expected], column
        assert [v for _, v in logged] == pytest.approx([v for _, v in expected], rel=1e-6), column  # stored as float32
    assert "config/text_summary" in events.Tags()["tensors"]
    assert (tmp_path / "run" / "plots" / "overview.png").is_file()  # the local record is kept as always


def test_mlflows_client_returns_the_run_its_params_metrics_and_plots(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's opt-in to its file store, for this reader too
    uri = (tmp_path / "mlruns").as_uri()
    out = run_cli(
        ["logger=mlflow", f"logger.mlflow.tracking_uri={uri}", *QUICK, "hydra.run.dir=run"], cwd=tmp_path, MLFLOW_ALLOW_FILE_STORE="true"
    )
    assert out.returncode == 0, out.stderr
    from mlflow.tracking import MlflowClient

    recorded = summary_json(tmp_path / "run")["mlflow"]
    client = MlflowClient(tracking_uri=uri)
    run = client.get_run(recorded["run_id"])
    assert run.info.status == "FINISHED" and run.data.tags["lrexp.status"] == "completed"
    assert run.data.params["optimizer.lr"] == "0.001" and run.data.params["run.steps"] == "40"
    rows = read_metrics(tmp_path / "run")
    for column in ("lr", "momentum", "val_loss", "test_loss"):
        history = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, column))
        assert history == [(r["step"], r[column]) for r in rows if r[column] is not None], column
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "plots/overview.png" in artifacts


def test_a_logger_that_fails_costs_nothing_but_a_warning(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    out = run_cli(
        ["logger=[tensorboard,mlflow]", f"logger.tensorboard.log_dir={tmp_path / 'a_file' / 'tb'}", "logger.mlflow.tracking_uri=bogus://nowhere",
         *QUICK, "hydra.run.dir=run"],
        cwd=tmp_path,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    console = out.stdout + out.stderr
    assert "TensorBoard: opening the event file failed" in console and "MLflow: starting the run failed" in console
    assert "Traceback" not in console
    s = summary_json(tmp_path / "run")
    assert s["status"] == "completed" and "mlflow" not in s and len(read_metrics(tmp_path / "run")) == 9  # steps 0, 5, ..., 35, 39
