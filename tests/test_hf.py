"""task=hf_lm and task=hf_classifier (issue 20): Hugging Face models and data as lrexp tasks, on real
text, offline: tiny models saved with save_pretrained and loaded by path (the code path of a hub name),
data from a local file or a datasets folder, tokenized once into a memory-mapped cache. Runs train and
resume exactly, gradient accumulation equals the full batch, clipping is applied and logged, and bad
input is one clear line."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lrexp.errors import ConfigError
from lrexp.record import read_metrics
from tests.helpers import cli_env, compose_config, run_cli, summary_json, table_without_time, train_in_process
from tests.hf_models import OFFLINE, make_models

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Offline, with a cache of this module's own; set in this process too (runs in process read it)."""
    values = OFFLINE | {"LREXP_CACHE": str(tmp_path_factory.mktemp("cache")), "HF_HOME": str(tmp_path_factory.mktemp("hf_home"))}
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    yield values
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def models(tmp_path_factory, env):
    return make_models(tmp_path_factory.mktemp("hf"))


def lm(models, *extra: str) -> list[str]:
    return ["task=hf_lm", f"task.model={models['gpt']}", f"task.data={models['corpus']}", "task.context=32", "task.batch_size=4",
            "task.eval_windows=8", "task.test_windows=8", "run.steps=30", "run.eval_every=10", "run.log_every=5",
            "logger.local.plots=false", *extra]  # fmt: skip


def classifier(models, *extra: str) -> list[str]:
    return ["task=hf_classifier", f"task.model={models['bert']}", "task.max_length=32", "task.batch_size=16", "run.steps=40",
            "run.eval_every=20", "logger.local.plots=false", "task.eval_examples=200", *extra]  # fmt: skip


def test_a_pretrained_causal_lm_fine_tunes_on_a_text_file_from_the_cli(models, env, tmp_path):
    out = run_cli([*lm(models, "experiment=finetune"), f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path, **env)
    assert out.returncode == 0, out.stderr
    run = tmp_path / "run"
    s = summary_json(run)
    assert s["status"] == "completed" and [m["name"] for m in s["metrics"]] == ["loss", "acc", "ppl"]
    assert s["peak_lr"] == 5e-5 and s["parameters"] > 20000 and s["task"] == "hf_lm"
    rows = read_metrics(run)
    evaluated = [r for r in rows if r["val_loss"] is not None]
    assert [r["step"] for r in evaluated] == [0, 10, 20, 29] and evaluated[-1]["val_loss"] < evaluated[0]["val_loss"]
    assert all(r["val_ppl"] == pytest.approx(math.exp(r["val_loss"]), rel=1e-5) for r in evaluated)
    assert rows[-1]["test_loss"] is not None and all(r["grad_norm"] > 0 for r in rows)
    assert any(p.is_dir() for p in Path(env["LREXP_CACHE"]).iterdir())  # tokenized once, into the cache


def test_a_preempted_run_resumes_to_the_uninterrupted_runs_numbers(models, env, tmp_path):
    args = lm(models, "run.checkpoint_every=10", "run.log_every=1")
    train_in_process(tmp_path / "whole", *args)
    part = tmp_path / "part"
    proc = subprocess.Popen([sys.executable, "-m", "lrexp", *args, f"hydra.run.dir={part}"], cwd=tmp_path, env=cli_env(**env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while not ((part / "metrics.csv").exists() and (part / "metrics.csv").read_text().count("\n") > 14):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and summary_json(part)["status"] == "interrupted"
    out = run_cli([*args, f"hydra.run.dir={part}", "run.resume=true"], cwd=tmp_path, **env)
    assert out.returncode == 0, out.stderr
    # Batches are a function of (seed, step) alone: the resumed run is the uninterrupted one.
    assert table_without_time(read_metrics(part)) == table_without_time(read_metrics(tmp_path / "whole"))


def test_gradient_accumulation_equals_the_whole_batch_and_clipping_is_logged(models, env, tmp_path):
    train_in_process(tmp_path / "full", *lm(models, "task.batch_size=8", "run.steps=10"))
    train_in_process(tmp_path / "accum", *lm(models, "task.batch_size=4", "task.grad_accum=2", "run.steps=10"))
    a, b = read_metrics(tmp_path / "full"), read_metrics(tmp_path / "accum")
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for x, y in zip(a, b):  # the same 8 windows a step (a function of seed and step), summed in two halves
        assert x["train_loss"] == pytest.approx(y["train_loss"], rel=1e-5) and x["grad_norm"] == pytest.approx(y["grad_norm"], rel=1e-4)
    train_in_process(tmp_path / "clip", *lm(models, "task.batch_size=8", "run.steps=10", "optimizer.clip_grad_norm=0.05"))
    clipped = read_metrics(tmp_path / "clip")
    assert all(r["grad_norm"] > 0.05 for r in clipped)  # the pre-clip norm is logged: clipping was in force every step
    assert clipped[0]["grad_norm"] == a[0]["grad_norm"] and clipped[-1]["train_loss"] != pytest.approx(a[-1]["train_loss"], rel=1e-6)


def test_a_classifier_trains_from_a_csv_and_from_a_datasets_folder(models, env, tmp_path):
    s = train_in_process(tmp_path / "csv", *classifier(models, f"task.data={models['lines']}"))
    assert s["status"] == "completed" and [m["name"] for m in s["metrics"]] == ["loss", "acc"]
    assert s["final_val_acc"] > 0.8 and s["final_test_acc"] > 0.8  # comment or code: learnt
    pytest.importorskip("datasets")
    s = train_in_process(tmp_path / "ds", *classifier(models, f"task.dataset={models['dataset']}", "task.text_column=sentence"))
    assert s["status"] == "completed" and s["final_test_acc"] > 0.8  # the dataset's own validation and test splits


def refused(*overrides: str) -> ConfigError:
    """The ConfigError building the task raises: what the CLI prints as its one line (lrexp.jobs)."""
    import torch

    from lrexp.tasks import build_task

    cfg, _ = compose_config(*overrides)
    with pytest.raises(ConfigError) as e:
        build_task(cfg.task, torch.device("cpu"), 0)
    return e.value


def test_bad_input_is_named_with_its_key(models, env):
    root = models["gpt"].parent
    e = refused(*lm(models, "task.model=no-such-org/no-such-model"))
    assert e.key == "task.model" and "not a local folder, not in the Hugging Face cache" in str(e)
    e = refused(*lm(models, f"task.data={root / 'gpt' / 'model.safetensors'}"))
    assert e.key == "task.data" and "is not a text file" in str(e)
    e = refused(*classifier(models, f"task.data={models['lines']}", "task.label_column=category"))
    assert e.key == "task.label_column" and "no such column (its columns: text, label)" in str(e)
    pytest.importorskip("datasets")
    e = refused(*classifier(models, f"task.dataset={models['dataset']}"))  # its text is in 'sentence'
    assert e.key == "task.text_column" and "no such column (its columns: sentence, label)" in str(e)
    # 39B parameters (GPT-2 at 48 x 8192): counted on the meta device and refused before anything is allocated.
    e = refused(*lm(models, "task.model=null", "task.pretrained=false", f"task.tokenizer={models['gpt']}", "+task.config.model_type=gpt2",
                    "+task.config.n_layer=48", "+task.config.n_embd=8192", "+task.config.n_head=64"))  # fmt: skip
    assert e.key == "task.config" and "GiB to train" in str(e) and "39080M parameters" in str(e)  # 12 x 48 x 8192^2 + embeddings


def test_a_hugging_face_lm_trains_batched_as_alone_and_a_classifier_falls_back_in_one_line(models, env, tmp_path):
    """hydra/launcher=batched: GPT-2 runs are stacked and vmapped (the stacked module's train/eval flags are set
    module by module: transformers' own .train() refuses the meta device); BERT's classifier is not something
    vmap can map (data-dependent control flow on its attention mask), so its runs train one after another,
    said in one line."""
    out = run_cli(["-m", "hydra/launcher=batched", *lm(models, "seed=0,1"), "hydra.sweep.dir=lm"], cwd=tmp_path, **env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert [summary_json(tmp_path / "lm" / str(i))["batch"] for i in (0, 1)] == [2, 2]
    alone = run_cli([*lm(models, "seed=1"), "hydra.run.dir=alone"], cwd=tmp_path, **env)
    assert alone.returncode == 0, alone.stderr[-3000:]
    batched, single = read_metrics(tmp_path / "lm" / "1"), read_metrics(tmp_path / "alone")
    assert [r["lr"] for r in batched] == [r["lr"] for r in single]
    for key in ("train_loss", "val_loss"):
        pairs = [(a[key], b[key]) for a, b in zip(batched, single) if a.get(key) is not None]
        assert pairs and all(math.isclose(a, b, rel_tol=1e-4) for a, b in pairs), pairs
    out = run_cli(["-m", "hydra/launcher=batched", *classifier(models, f"task.data={models['lines']}", "seed=0,1"), "hydra.sweep.dir=cls"],
                  cwd=tmp_path, **env)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    fallback = [line for line in (out.stdout + out.stderr).splitlines() if "cannot train as one batch" in line]
    assert len(fallback) == 1 and "they train one after another" in fallback[0]
    assert [summary_json(tmp_path / "cls" / str(i))["status"] for i in (0, 1)] == ["completed", "completed"]


def test_bad_data_files_and_models_are_one_line_naming_their_key(models, env, tmp_path):
    """Issue 25.8: malformed JSON lines (the file's own line number), a CSV that is not UTF-8, a width the heads do
    not divide, and a 2-label checkpoint on 3-class data: each one line naming its key, before anything trains."""
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "a line long enough", "label": 0}\n\n{"text": oops}\n')
    latin = tmp_path / "latin.csv"
    latin.write_bytes("text,label\ncaf\xe9 au lait, a long enough line,0\n".encode("latin-1"))
    three = tmp_path / "three.csv"
    three.write_text("text,label\n" + "".join(f"line number {i} of the data,{'abc'[i % 3]}\n" for i in range(300)))
    config = "task.config={model_type:gpt2,n_embd:30,n_head:4,n_layer:1,vocab_size:400,bos_token_id:0,eos_token_id:0}"
    cases = [
        (classifier(models, f"task.data={jsonl}"), f"task.data='{jsonl}': line 3 is not a JSON record"),
        (classifier(models, f"task.data={latin}"), f"task.data='{latin}': is not UTF-8 text (byte 0xe9"),
        (["task=hf_lm", config, f"task.tokenizer={models['gpt']}", f"task.data={models['corpus']}", "task.context=32", "run.steps=2"],
         "task.config='gpt2': cannot build this architecture"),
        (classifier(models, f"task.data={three}"), f"task.model='{models['bert']}': is a classifier of 2 labels and the data have 3 (a, b, c)"),
    ]  # fmt: skip
    for i, (args, first_words) in enumerate(cases):
        out = run_cli([*args, f"hydra.run.dir=run{i}"], cwd=tmp_path, **env)
        assert out.returncode == 2, out.stderr[-2000:]
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"lrexp: error: {first_words}"), out.stderr[-2000:]
    again = run_cli(
        [*classifier(models, f"task.data={three}", "task.reinit_head=true", "run.steps=4"), "hydra.run.dir=reinit"], cwd=tmp_path, **env
    )
    assert again.returncode == 0, again.stderr[-2000:]
    assert "newly initialized" not in again.stderr and summary_json(tmp_path / "reinit")["status"] == "completed"


def test_a_hub_name_without_network_is_one_line_without_waiting(models, env, tmp_path):
    """Not a folder, not in the cache, the hub unreachable (HF_ENDPOINT: a closed port on this machine): one line
    within seconds, not huggingface_hub's retries; offline (HF_HUB_OFFLINE=1) the same without asking."""
    args = ["task=hf_lm", "task.model=someone/no-such-model", f"task.data={models['corpus']}", "run.steps=2", "hydra.run.dir=run"]
    online = env | {"HF_HUB_OFFLINE": "0", "TRANSFORMERS_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    for where, variables in (("the hub (127.0.0.1) cannot be reached", online), ("HF_HUB_OFFLINE is set", env)):
        started = time.monotonic()
        out = run_cli(args, cwd=tmp_path, **variables)
        assert out.returncode == 2 and time.monotonic() - started < 30, out.stderr[-2000:]
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("lrexp: error: task.model='someone/no-such-model': not a local folder"), out.stderr
        assert where in lines[0]


def test_the_held_out_sets_are_the_same_windows_whatever_the_micro_batch(models, env):
    """Issue 25.5: validation and test are counts of windows (task.eval_windows, task.test_windows), so a 2 x 4
    run and an 8 x 1 run of one model are scored on the same tokens (they were 16 and 64 windows)."""
    import torch

    from lrexp.tasks import build_task

    def held_out(batch: int, accum: int) -> dict[str, torch.Tensor]:
        cfg, _ = compose_config(*lm(models, f"task.batch_size={batch}", f"task.grad_accum={accum}", "task.eval_windows=12"))
        task = build_task(cfg.task, torch.device("cpu"), 0)
        assert all(len(x) <= batch for x, _ in task.splits["val"])  # evaluated a micro-batch at a time
        return {split: torch.cat([x for x, _ in task.splits[split]]) for split in ("val", "test")}

    small, large = held_out(2, 4), held_out(8, 1)
    assert small["val"].shape[0] == 12 and small["test"].shape[0] == 8
    assert all(torch.equal(small[s], large[s]) for s in ("val", "test"))
