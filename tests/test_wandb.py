"""W&B, with the real wandb client and no account: runs read back with wandb's own reader
(`wandb leet inspect`), a sweep's jobs as distinct runs of one group, the online start-up that falls back
to offline within its bound, the report spec built offline, and the API key nowhere on disk.

Every process gets its own HOME and W&B directories under tmp, so no test reads or writes the real
home (a developer's own key or ~/.netrc would otherwise turn auto mode online)."""

from __future__ import annotations

import json
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from omegaconf import OmegaConf
from scipy import stats as sp

from lrexp.errors import ConfigError
from lrexp.record import read_metrics
from lrexp.tasks.digits import DigitsTask
from lrexp.verdict import fmt_interval, fmt_num
from tests.helpers import cli_env, compose_config, run_cli, summary_json

# End to end: real training runs and real processes (the fast tier is pytest -m 'not slow').
pytestmark = pytest.mark.slow

WANDB_CLI = str(Path(sys.executable).with_name("wandb"))
# Short runs; one torch thread leaves the second core to wandb's service process.
QUICK = ["run.steps=30", "run.log_every=5", "run.eval_every=15", "run.threads=1"]
STEPS_LOGGED = [0, 5, 10, 15, 20, 25, 29]
# Shaped like a real key (40 hex-ish characters) so that wandb accepts it and tries to use it.
FAKE_KEY = "lrexptest" + "0123456789abcdef0123456789abcdef0"


def isolated_env(root: Path, **extra: str) -> dict[str, str]:
    home = root / "home"
    home.mkdir(parents=True, exist_ok=True)
    return {
        "HOME": str(home),
        "NETRC": str(home / ".netrc"),
        "WANDB_DIR": str(root / "wandb-dir"),
        "WANDB_CONFIG_DIR": str(home / ".config" / "wandb"),
        "WANDB_CACHE_DIR": str(home / ".cache" / "wandb"),
        "WANDB_DATA_DIR": str(home / ".local" / "share" / "wandb"),
        **extra,
    }


def leet_inspect(run_dir: Path, env: dict[str, str], *flags: str) -> str:
    """`wandb leet inspect --json [FLAGS] RUN_DIR/wandb`: wandb's own reader of the run's .wandb log.

    Cached per run: each call starts the wandb CLI (a second or two on this machine), and the runs are
    read by several tests."""
    key = (str(run_dir), flags)
    if key not in _inspected:
        out = subprocess.run(
            [WANDB_CLI, "leet", "inspect", "--json", *flags, str(run_dir / "wandb")],
            env=cli_env(**env),
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        _inspected[key] = out.stdout
    return _inspected[key]


_inspected: dict[Any, str] = {}


def inspect_records(run_dir: Path, env: dict[str, str]) -> list[dict[str, Any]]:
    """Every record of the run's log, decoded: run (config, group, ...), history rows, summary, ..."""
    return [json.loads(line) for line in leet_inspect(run_dir, env).splitlines() if line.strip()]


def inspect_summary(run_dir: Path, env: dict[str, str]) -> dict[str, Any]:
    """The run's state, config, summary and tags."""
    return json.loads(leet_inspect(run_dir, env, "--summary"))


def history(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r["history"]["item"] for r in records if r["type"] == "history"]


def run_record(records: list[dict[str, Any]]) -> dict[str, Any]:
    (run,) = [r["run"] for r in records if r["type"] == "run"]
    return run


# --- a sweep in auto mode without a key: offline, one W&B run per job, one group ----------------------


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("sweep")
    env = isolated_env(root)
    overrides = ["logger=wandb", *QUICK, "logger.local.plots=false"]
    out = run_cli(["-m", *overrides, "seed=0,1,2", f"hydra.sweep.dir={root / 'sweep'}"], cwd=root, **env)
    assert out.returncode == 0, out.stderr
    return root / "sweep", overrides, env, out


def test_offline_history_is_metrics_csv(sweep):
    sweep_dir, _, env, _ = sweep
    for job in (sweep_dir / str(i) for i in range(3)):
        rows = read_metrics(job)
        logged = [item for item in history(inspect_records(job, env)) if "lr" in item]
        assert len(logged) == len(rows)
        for item, row in zip(logged, rows):
            # Every column of every row, exactly: step (the x-axis), lr, train_loss, val_* where evaluated.
            assert {k: item.get(k) for k in row} == row
        assert [item["lr"] for item in logged] == [row["lr"] for row in rows]
        assert any(row["val_loss"] is not None for row in rows) and any(row["val_loss"] is None for row in rows)


def test_offline_config_summary_and_record(sweep):
    sweep_dir, overrides, env, out = sweep
    job = sweep_dir / "1"
    w = inspect_summary(job, env)
    cfg, _ = compose_config(*overrides, "seed=1")
    composed = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    assert w["config"] == {**composed, "choices": {"task": "digits", "optimizer": "adamw", "scheduler": "cosine"}}

    s = summary_json(job)
    assert w["state"] == "finished" and w["exit_code"] == 0
    for key in (
        "status",
        "final_val_loss",
        "final_val_acc",
        "best_val_loss",
        "best_val_acc",
        "final_train_loss",
        "lr_final",
        "steps_done",
        "seed",
    ):
        assert w["summary"][key] == s[key], key
    assert w["summary"]["status"] == "completed"
    assert w["tags"] == ["digits", "adamw", "cosine"]

    # summary.json records the W&B run: id, path, mode, and how to upload it.
    rec = s["wandb"]
    assert rec["mode"] == "offline" and rec["id"] == w["run_id"] and rec["path"] == f"lrexp/{rec['id']}"
    assert (job / rec["dir"] / f"run-{rec['id']}.wandb").is_file()
    assert rec["sync"] == f"wandb sync {job / rec['dir']}"
    run = run_record(inspect_records(job, env))
    assert run["job_type"] == "cosine" and run["display_name"].startswith("cosine-seed1")

    # One line per job says how to upload later; wandb's own banner is silenced.
    lines = (out.stdout + out.stderr).splitlines()
    assert len([line for line in lines if "wandb sync" in line]) == 3
    assert not [line for line in lines if line.startswith("wandb:")]


def test_multirun_jobs_are_distinct_runs_in_one_group(sweep):
    sweep_dir, _, env, _ = sweep
    ids = set()
    for seed in range(3):
        job = sweep_dir / str(seed)
        rec = summary_json(job)["wandb"]
        assert rec["group"] == str(sweep_dir)
        (_one_run_file,) = job.glob("wandb/offline-run-*/run-*.wandb")  # its own run, in its own directory
        records = inspect_records(job, env)
        run = run_record(records)
        assert (run["run_id"], run["run_group"]) == (rec["id"], str(sweep_dir))
        assert run["config"]["update"]["seed"] == seed
        # No job logged into another's run: each history holds exactly its own metrics.csv.
        assert [h["train_loss"] for h in history(records) if "lr" in h] == [r["train_loss"] for r in read_metrics(job)]
        ids.add(rec["id"])
    assert len(ids) == 3


# --- a single run whose online start-up finds no server -------------------------------------------------


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again on exit: connections are refused


FALLBACK_BOUND_S = 2


@pytest.fixture(scope="module")
def fallback_run(tmp_path_factory):
    """scheduler=step with a fake key and W&B pointed at a closed local port, plots on."""
    root = tmp_path_factory.mktemp("fallback")
    env = isolated_env(root, WANDB_API_KEY=FAKE_KEY, WANDB_BASE_URL=f"http://127.0.0.1:{closed_port()}")
    t0 = time.monotonic()
    out = run_cli(
        ["logger=wandb", f"logger.wandb.init_timeout={FALLBACK_BOUND_S}", "scheduler=step", *QUICK, f"hydra.run.dir={root / 'run'}"],
        cwd=root,
        **env,
    )
    wall = time.monotonic() - t0
    assert out.returncode == 0, out.stderr
    return root, root / "run", env, out, wall


def test_online_startup_falls_back_to_offline_within_its_bound(fallback_run):
    _, run_dir, env, out, wall = fallback_run
    s = summary_json(run_dir)
    assert s["status"] == "completed" and [r["step"] for r in read_metrics(run_dir)] == STEPS_LOGGED  # the local record, whole
    rec = s["wandb"]
    assert rec["mode"] == "offline" and "online start-up failed" in rec["reason"]
    assert 0 < rec["fallback_after_s"] <= FALLBACK_BOUND_S
    assert wall < 60, wall  # the whole run, start-up, training and plots included, on a loaded 2-core machine
    (line,) = [line for line in (out.stdout + out.stderr).splitlines() if "wandb sync" in line]
    assert "online start-up failed" in line

    # The offline run holds the training and the plots: `wandb sync` can upload it.
    w = inspect_summary(run_dir, env)
    assert (w["run_id"], w["state"], w["summary"]["final_val_loss"]) == (rec["id"], "finished", s["final_val_loss"])
    assert [h["lr"] for h in history(inspect_records(run_dir, env)) if "lr" in h] == [r["lr"] for r in read_metrics(run_dir)]
    plots = sorted(p.stem for p in (run_dir / "plots").glob("*.png"))
    assert len(plots) >= 3 and sorted(k for k in w["summary"] if k.startswith("plots/")) == [f"plots/{p}" for p in plots]
    assert len(list(run_dir.glob("wandb/offline-run-*/files/media/images/plots/*.png"))) == len(plots)


def test_the_api_key_is_nowhere_on_disk(fallback_run):
    root, run_dir, _, out, _ = fallback_run
    assert "online_error" in summary_json(run_dir)["wandb"]  # the key was found and used to try online
    # Under the output directory and the isolated home and W&B directories, binary files included.
    key = FAKE_KEY.encode()
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    assert any(p.suffix == ".wandb" for p in files) and any(p.name == "debug-internal.log" for p in files)
    assert [p for p in files if key in p.read_bytes()] == []
    assert FAKE_KEY not in out.stdout + out.stderr


# --- options and imports ---------------------------------------------------------------------------------


def test_wandb_is_imported_only_where_used(tmp_path):
    code = (
        "import sys; import lrexp.app, lrexp.loggers, lrexp.loggers.wandb, lrexp.wandb_report;"
        "from tests.helpers import compose_config; from lrexp.loggers import build_loggers, RunInfo;"
        "cfg, _ = compose_config('logger=wandb', 'logger.wandb.mode=disabled');"
        "_, lg = build_loggers(cfg.logger, RunInfo(run_dir='.', config={})); lg.start(); lg.log_row({'step': 0, 'lr': 1.0});"
        "assert lg.summary_fields() == {'wandb': {'mode': 'disabled'}}, lg.summary_fields();"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('wandb', 'wandb_workspaces')]; assert not bad, bad"
    )
    out = subprocess.run([sys.executable, "-c", code], env=cli_env(**isolated_env(tmp_path)), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize(
    "node, key",
    [
        ({"mode": "sometimes"}, "logger.wandb.mode"),
        ({"init_timeout": 0}, "logger.wandb.init_timeout"),
        ({"init_timeout": "fast"}, "logger.wandb.init_timeout"),
        ({"api_key": FAKE_KEY}, "logger.wandb.api_key"),
        ({"projekt": "x"}, "logger.wandb.projekt"),
    ],
)
def test_bad_wandb_options_are_config_errors(node, key):
    """Options that did not come through compose's schema (built in code, or added with +key=...): refused
    by the logger itself, in one ConfigError that never echoes a key."""
    from lrexp.loggers import RunInfo
    from lrexp.loggers.wandb import WandbLogger

    cfg, _ = compose_config("logger=wandb")
    options = {k: v for k, v in OmegaConf.to_container(cfg.logger.wandb).items() if k != "_target_"}
    with pytest.raises(ConfigError) as e:
        WandbLogger(run=RunInfo(run_dir=Path("."), config={}), **{**options, **node})
    assert e.value.key == key and FAKE_KEY not in str(e.value)


@pytest.mark.parametrize(
    "override, key",
    [
        ("logger.wandb.mode=sometimes", "logger.wandb.mode"),
        ("logger.wandb.init_timeout=fast", "logger.wandb.init_timeout"),
        ("logger.wandb.projekt=x", "logger.wandb.projekt"),
        ("logger.local.dpi=high", "logger.local.dpi"),
    ],
)
def test_the_logger_schemas_reject_wrong_types_and_unknown_keys_at_compose_time(override, key):
    from hydra.errors import ConfigCompositionException

    with pytest.raises(ConfigCompositionException) as e:
        compose_config("logger=wandb", override)
    assert key in str(e.value.__cause__ or e.value)


def test_an_api_key_added_with_plus_is_refused_without_being_echoed(tmp_path):
    out = run_cli(["logger=wandb", f"+logger.wandb.api_key={FAKE_KEY}", "run.steps=2"], cwd=tmp_path, **isolated_env(tmp_path))
    assert out.returncode == 2
    assert out.stderr.strip().splitlines()[-1].startswith("lrexp: error: logger.wandb.api_key='***'")
    assert FAKE_KEY not in out.stdout + out.stderr
    assert not any(FAKE_KEY in p.read_text(errors="ignore") for p in tmp_path.rglob("*") if p.is_file())


# --- the W&B report ------------------------------------------------------------------------------------


def test_report_spec_builds_offline_with_the_panels(sweep, fallback_run, tmp_path):
    sweep_dir, _, env, _ = sweep
    single_run = fallback_run[1]  # scheduler=step, seed 0: a second group beside the sweep's cosine
    out_file = tmp_path / "spec.json"
    out = run_cli([str(sweep_dir), str(single_run), "--dry-run", "--out", str(out_file)], cwd=tmp_path, module="lrexp.wandb_report", **env)
    assert out.returncode == 0, out.stderr
    report = json.loads(out_file.read_text())
    assert report["project"] == "lrexp"

    blocks = report["spec"]["blocks"]
    grids = [b for b in blocks if b["type"] == "panel-grid"]
    panels = [p for g in grids for p in g["metadata"]["panelBankSectionConfig"]["panels"]]
    for g in grids:  # every grid shows the sweep's group, grouped by schedule name
        (runset,) = g["metadata"]["runSets"]
        assert runset["filters"]["filters"][0]["key"]["name"] == "group" and runset["filters"]["filters"][0]["value"] == str(sweep_dir)
        assert runset["grouping"] == [{"section": "config", "name": "choices.value.scheduler"}]
    lines = {tuple(p["config"]["metrics"]): p["config"] for p in panels if p["viewType"] == "Run History Line Plot"}
    assert set(lines) == {("lr",), ("train_loss",), ("val_loss",), ("val_acc",)}
    for config in lines.values():
        assert (config["xAxis"], config["groupBy"], config["groupAgg"], config["groupArea"]) == (
            "step",
            "choices.value.scheduler",
            "mean",
            "minmax",
        )
    assert [p["config"] for p in panels if p["viewType"] == "Run Comparer"] == [{"diffOnly": "split"}]
    (parallel,) = [p["config"] for p in panels if p["viewType"] == "Parallel Coordinates Plot"]
    assert [c["accessor"] for c in parallel["columns"]] == [
        "config:choices.value.scheduler",
        "config:optimizer.value.lr",
        "summary:final_test_loss",  # the held-out number the comparison reports
    ]

    # The summary and the table: the numbers recomputed here from each run's own metrics.csv.
    final = {
        "cosine": [read_metrics(sweep_dir / str(i))[-1]["test_loss"] for i in range(3)],
        "step": [read_metrics(single_run)[-1]["test_loss"]],
    }
    val = {
        "cosine": [read_metrics(sweep_dir / str(i))[-1]["val_loss"] for i in range(3)],
        "step": [read_metrics(single_run)[-1]["val_loss"]],
    }
    best = min(val, key=lambda k: statistics.fmean(val[k]))  # validation ranks
    # A schedule with a single run: no interval, no verdict; the description says so instead of naming a winner.
    assert report["description"].startswith(f"{best} is best on validation (final test loss") and "no verdict" in report["description"]
    (table,) = [b["content"] for b in blocks if b["type"] == "markdown-block" and b["content"].startswith("| rank")]
    for name, values in final.items():
        mean = statistics.fmean(values)
        shown = fmt_num(mean)
        if len(values) > 1:  # one run has no interval
            half = sp.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / len(values) ** 0.5
            shown = fmt_interval(mean, mean - half, mean + half)
        rank = 1 if name == best else 2
        assert f"| {rank} | {name} | - | {len(values)} | {shown} |" in table


def test_report_without_key_fails_in_one_line_without_prompting(sweep, tmp_path):
    sweep_dir, _, env, _ = sweep
    out = run_cli([str(sweep_dir)], cwd=tmp_path, module="lrexp.wandb_report", timeout=60, **env)
    assert out.returncode == 1
    (line,) = out.stderr.strip().splitlines()
    assert line.startswith("lrexp.wandb_report: error:") and "--dry-run" in line


class BreaksAtStep10(DigitsTask):
    """Digits whose data fails at step 10: a job that raises in the middle of training."""

    def train_batch(self, step):
        if step == 10:
            raise RuntimeError("simulated crash at step 10")
        return super().train_batch(step)


def test_a_job_that_raises_ends_its_wandb_run_as_failed_and_the_sweep_goes_on(tmp_path):
    env = isolated_env(tmp_path, PYTHONPATH=str(Path(__file__).resolve().parent.parent))
    targets = "task._target_=tests.test_wandb.BreaksAtStep10,lrexp.tasks.digits.DigitsTask"
    out = run_cli(
        ["-m", "logger=wandb", *QUICK, "logger.local.plots=false", targets, f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, **env
    )
    assert out.returncode == 0, out.stderr
    crashed, fine = tmp_path / "sweep" / "0", tmp_path / "sweep" / "1"
    assert summary_json(crashed)["status"] == "failed" and "simulated crash" in (crashed / "error.txt").read_text()
    w = inspect_summary(crashed, env)
    assert w["exit_code"] == 1 and w["summary"]["status"] == "failed"  # closed as failed by its own job
    assert inspect_summary(fine, env)["exit_code"] == 0 and summary_json(fine)["status"] == "completed"


def test_a_batched_sweep_opens_one_wandb_run_per_job_at_once(tmp_path):
    """hydra/launcher=batched trains the jobs together, so their W&B runs are open at the same time in one
    process: each still gets its own run, with exactly its own rows, finished when its record is."""
    env = isolated_env(tmp_path)
    out = run_cli(
        ["-m", "hydra/launcher=batched", "logger=wandb", *QUICK, "logger.local.plots=false", "seed=0,1,2", "hydra.sweep.dir=sweep"],
        cwd=tmp_path,
        **env,
    )
    assert out.returncode == 0, out.stderr
    ids = set()
    for seed in range(3):
        job = tmp_path / "sweep" / str(seed)
        s = summary_json(job)
        assert s["batch"] == 3 and s["wandb"]["mode"] == "offline"
        records = inspect_records(job, env)
        assert run_record(records)["config"]["update"]["seed"] == seed
        assert [h["train_loss"] for h in history(records) if "lr" in h] == [r["train_loss"] for r in read_metrics(job)]
        assert inspect_summary(job, env)["state"] == "finished"
        ids.add(s["wandb"]["id"])
    assert len(ids) == 3
