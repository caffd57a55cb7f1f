"""lrexp inside your own loop (issue 20): any configured schedule built on your optimizer in one call
(equal, step by step, to the library objects), a Recorder that leaves a real run directory, and the
callbacks for Hugging Face's Trainer and Lightning, each tested with its own library on a tiny model;
the report compares runs made anywhere."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lrexp.errors import ConfigError
from lrexp.record import read_metrics
from lrexp.recorder import Recorder
from lrexp.schedule import build
from tests.helpers import run_cli, stepped, summary_json
from tests.test_schedules import LR, REFERENCES, STEPS, reference_lrs


@pytest.mark.slow
def test_every_configured_schedule_built_alone_equals_its_library_object():
    for name, make in REFERENCES.items():
        optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=LR)
        assert stepped(build(name, optimizer, STEPS), optimizer, STEPS) == reference_lrs(make), name


def test_warm_up_and_floor_follow_their_definition_on_any_schedule():
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    lrs = stepped(build("linear", optimizer, 100, warmup="1/10", floor=0.2), optimizer, 100)
    inner = reference_lrs(lambda o: torch.optim.lr_scheduler.LinearLR(o, 1.0, 0.0, total_iters=90), steps=90, lr=0.1)
    assert lrs[:10] == [0.1 * (t / 10) for t in range(10)]  # linear from 0: step 0 trains at 0 (peak x t / W)
    assert lrs[10:] == pytest.approx([0.2 * 0.1 + 0.8 * v for v in inner], rel=1e-12)  # the schedule over the 90 steps after
    fresh = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = build("cosine_full", fresh, 100, T_max=25)  # the schedule's own keys, overridden
    assert schedule.get_last_lr() == [0.1] and schedule.state_dict()["T_max"] == 25
    with pytest.raises(ConfigError) as e:
        build("cosine_fast", optimizer, 100)
    assert e.value.key == "schedule" and "cosine_full" in str(e.value)
    with pytest.raises(ConfigError) as e:
        build("cosine_full", optimizer, 100, T_maxx=3)
    assert e.value.key == "scheduler.T_maxx"
    # A schedule that warms up by itself, warmed up again, would peak, fall to 0 and warm up twice: the
    # CLI's own check, shared (it once was not: the README's own example did this).
    with pytest.raises(ConfigError) as e:
        build("wsd", optimizer, 100, warmup="1/20")
    assert e.value.key == "warmup" and "warms up by itself" in str(e.value)
    with pytest.raises(ConfigError) as e:
        build("cosine_full", optimizer, 100, warmup=100)
    assert e.value.key == "warmup" and "below steps (100)" in str(e.value)


def digits_run(run_dir: Path, schedule: str, seed: int, steps: int = 150) -> dict:
    """A plain torch loop on digits (not lrexp's): lrexp's schedule built on its optimizer, its record kept."""
    from lrexp.tasks.digits import load_digits_arrays, stratified_split

    torch.manual_seed(seed)
    images, labels = load_digits_arrays()
    train, val, test = stratified_split(labels, (0.2, 0.2), 0)
    x, y = torch.from_numpy(images / 16.0).float(), torch.from_numpy(labels)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    sched = build(schedule, optimizer, steps, warmup="1/20")
    g = torch.Generator().manual_seed(seed)

    def evaluate(idx):
        with torch.no_grad():
            logits = model(x[idx])
            return torch.nn.functional.cross_entropy(logits, y[idx]).item(), (logits.argmax(1) == y[idx]).float().mean().item()

    with Recorder(run_dir, metrics=["loss", "acc"], optimizer=optimizer, steps=steps, seed=seed, scheduler=schedule, task="digits") as rec:
        for step in range(steps):
            batch = torch.from_numpy(train)[torch.randint(len(train), (64,), generator=g)]
            loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            if step % 10 == 0 or step == steps - 1:
                rec.log(step, train_loss=loss.item())
            if step % 50 == 0 or step == steps - 1:
                vl, va = evaluate(val)
                rec.log(step, val_loss=vl, val_acc=va)
            sched.step()
        tl, ta = evaluate(test)
        rec.log(steps - 1, test_loss=tl, test_acc=ta)
    return summary_json(run_dir)


@pytest.mark.slow
def test_the_recorder_writes_a_run_directory_the_report_compares(tmp_path):
    for schedule in ("cosine_full", "constant"):
        for seed in range(3):
            s = digits_run(tmp_path / "runs" / f"{schedule}-{seed}", schedule, seed)
            assert s["status"] == "completed" and s["settings"] == {"scheduler": schedule, "seed": str(seed)}
    rows = read_metrics(tmp_path / "runs" / "cosine_full-0")
    assert [r["step"] for r in rows] == [*range(0, 150, 10), 149]  # one row a step, train and evaluation merged
    assert rows[0]["lr"] == 0.0 and rows[-1]["test_loss"] is not None and rows[5]["val_loss"] is not None
    reference = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
    lrs = stepped(build("cosine_full", reference, 150, warmup="1/20"), reference, 150)
    assert [r["lr"] for r in rows] == [lrs[r["step"]] for r in rows]  # the LR each logged step applied
    out = run_cli([str(tmp_path / "runs"), "--out", str(tmp_path / "report")], cwd=tmp_path, module="lrexp.report")
    assert out.returncode == 0, out.stderr
    import csv

    with open(tmp_path / "report" / "summary.csv", newline="") as f:
        table = {r["scheduler"]: r for r in csv.DictReader(f)}
    assert set(table) == {"cosine_full", "constant"} and all(
        r["paired"] == "True" and r["runs"] == "3" for r in table.values() if r["pairs"]
    )
    finals = [summary_json(tmp_path / "runs" / f"constant-{s}")["final_test_loss"] for s in range(3)]
    assert float(table["constant"]["final_test_loss_mean"]) == pytest.approx(sum(finals) / 3, rel=1e-12)


@pytest.mark.slow
def test_hugging_face_trainer_runs_lrexps_schedule_and_leaves_lrexps_record(tmp_path):
    pytest.importorskip("accelerate")
    from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

    from lrexp.integrations.transformers import LrexpCallback
    from tests.hf_models import make_models

    paths = make_models(tmp_path / "models")
    tokenizer = AutoTokenizer.from_pretrained(paths["gpt"])
    ids = tokenizer(paths["corpus"].read_text()[:60000])["input_ids"]
    windows = [ids[i : i + 33] for i in range(0, len(ids) - 33, 33)]

    class Windows(torch.utils.data.Dataset):
        def __init__(self, rows):
            self.rows = rows

        def __len__(self):
            return len(self.rows)

        def __getitem__(self, i):
            t = torch.tensor(self.rows[i])
            return {"input_ids": t, "labels": t}

    train, val, test = Windows(windows[:-64]), Windows(windows[-64:-32]), Windows(windows[-32:])
    for name in ("wsd", "cosine_full"):
        model = AutoModelForCausalLM.from_pretrained(paths["gpt"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
        schedule = build(name, optimizer, 40)
        run_dir = tmp_path / "runs" / name
        callback = LrexpCallback(run_dir, schedule=schedule, scheduler=name)
        args = TrainingArguments(
            tmp_path / "out" / name, max_steps=40, per_device_train_batch_size=4, per_device_eval_batch_size=8, logging_steps=5,
            eval_strategy="steps", eval_steps=20, save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
        )  # fmt: skip
        trainer = Trainer(model, args, train_dataset=train, eval_dataset=val, optimizers=(optimizer, schedule), callbacks=[callback])
        trainer.train()
        trainer.evaluate(test, metric_key_prefix="test")
        rows = read_metrics(run_dir)
        assert [r["step"] for r in rows] == [4, 9, 14, 19, 24, 29, 34, 39]  # the Trainer's logging steps, 0-based
        logged = [h for h in trainer.state.log_history if "loss" in h]
        assert [r["train_loss"] for r in rows] == pytest.approx([h["loss"] for h in logged], rel=1e-6)
        assert [r["lr"] for r in rows] == pytest.approx([h["learning_rate"] for h in logged], rel=1e-12)  # the LR each step applied
        reference = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1e-3)
        lrs = stepped(build(name, reference, 40), reference, 40)
        assert [r["lr"] for r in rows] == [lrs[r["step"]] for r in rows]
        assert [r["step"] for r in rows if r["val_loss"] is not None] == [19, 39] and rows[-1]["test_loss"] is not None
        s = summary_json(run_dir)
        assert s["status"] == "completed" and s["final_test_loss"] == rows[-1]["test_loss"] and s["scheduler"] == name
    out = run_cli([str(tmp_path / "runs"), "--out", str(tmp_path / "report")], cwd=tmp_path, module="lrexp.report")
    assert out.returncode == 0, out.stderr
    assert "no seed spread" in (tmp_path / "report" / "report.md").read_text()  # one run each: compared, no verdict


@pytest.mark.slow
def test_lightning_runs_lrexps_schedule_through_the_callback_and_leaves_lrexps_record(tmp_path):
    L = pytest.importorskip("lightning")
    from lrexp.integrations.lightning import LrexpCallback
    from lrexp.tasks.digits import load_digits_arrays, stratified_split

    images, labels = load_digits_arrays()
    train, val, test = stratified_split(labels, (0.2, 0.2), 0)
    x, y = torch.from_numpy(images / 16.0).float(), torch.from_numpy(labels)

    def loader(idx, shuffle=False):
        return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x[idx], y[idx]), batch_size=64, shuffle=shuffle)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(), torch.nn.Linear(64, 10))

        def training_step(self, batch, i):
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def _eval(self, batch, split):
            logits = self.net(batch[0])
            self.log(f"{split}_loss", torch.nn.functional.cross_entropy(logits, batch[1]))
            self.log(f"{split}_acc", (logits.argmax(1) == batch[1]).float().mean())

        def validation_step(self, batch, i):
            self._eval(batch, "val")

        def test_step(self, batch, i):
            self._eval(batch, "test")

        def configure_optimizers(self):
            return self.optimizer

    L.seed_everything(0)
    module = Module()
    module.optimizer = torch.optim.AdamW(module.parameters(), lr=3e-3)
    callback = LrexpCallback(tmp_path / "run", schedule=build("cosine_full", module.optimizer, 60, warmup=6), scheduler="cosine_full",
                             metrics=["loss", "acc"], log_every=5)  # fmt: skip
    trainer = L.Trainer(max_steps=60, val_check_interval=15, check_val_every_n_epoch=None, callbacks=[callback], logger=False,
                        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                        num_sanity_val_steps=0)  # fmt: skip
    trainer.fit(module, loader(train, shuffle=True), loader(val))
    trainer.test(module, loader(test))
    rows = read_metrics(tmp_path / "run")
    reference = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=3e-3)
    lrs = stepped(build("cosine_full", reference, 60, warmup=6), reference, 60)
    assert [r["step"] for r in rows if r["train_loss"] is not None] == [*range(0, 60, 5), 59]
    assert [r["lr"] for r in rows] == [lrs[r["step"]] for r in rows]  # the LR each step applied: lrexp's schedule, stepped
    assert [r["step"] for r in rows if r["val_loss"] is not None] == [14, 29, 44, 59] and rows[-1]["test_acc"] > 0.5
    s = summary_json(tmp_path / "run")
    assert s["status"] == "completed" and s["seed"] == 0 and [m["name"] for m in s["metrics"]] == ["loss", "acc"]
    assert math.isfinite(s["final_test_loss"]) and json.loads(json.dumps(s))["settings"]["scheduler"] == "cosine_full"
    assert np.isfinite([r["train_loss"] for r in rows if r["train_loss"] is not None]).all()


@pytest.mark.slow
@pytest.mark.parametrize("accumulate", [1, 2, 4])
def test_with_gradient_accumulation_the_lightning_callback_steps_the_schedule_once_per_optimizer_step(tmp_path, accumulate):
    """Every row's LR is the LR the optimizer step applied (read in the module as it steps) and the schedule's
    own at that step; the schedule reaches its end at the run's end, not after steps / accumulate."""
    L = pytest.importorskip("lightning")
    from lrexp.integrations.lightning import LrexpCallback

    x, y = (
        torch.randn(256, 8, generator=torch.Generator().manual_seed(0)),
        torch.randint(0, 3, (256,), generator=torch.Generator().manual_seed(1)),
    )
    applied: dict[int, float] = {}

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = torch.nn.Linear(8, 3)

        def training_step(self, batch, i):
            return torch.nn.functional.cross_entropy(self.net(batch[0]), batch[1])

        def on_before_optimizer_step(self, optimizer):
            applied[self.trainer.global_step] = optimizer.param_groups[0]["lr"]

        def configure_optimizers(self):
            return self.optimizer

    steps = 20
    module = Module()
    module.optimizer = torch.optim.SGD(module.parameters(), lr=0.1)
    callback = LrexpCallback(tmp_path / "run", schedule=build("cosine_full", module.optimizer, steps, warmup=4), log_every=1)
    trainer = L.Trainer(max_steps=steps, accumulate_grad_batches=accumulate, callbacks=[callback], logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, accelerator="cpu", limit_val_batches=0)  # fmt: skip
    trainer.fit(module, torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8, shuffle=False))
    rows = read_metrics(tmp_path / "run")
    reference = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    lrs = stepped(build("cosine_full", reference, steps, warmup=4), reference, steps)
    assert [r["step"] for r in rows] == list(range(steps)) and sorted(applied) == list(range(steps))
    assert [r["lr"] for r in rows] == [applied[r["step"]] for r in rows] == lrs
    assert summary_json(tmp_path / "run")["peak_lr"] == 0.1  # the schedule's peak, though warm-up set the LR to 0 first


def test_a_schedule_stepped_past_its_length_warns_once(recwarn):
    import warnings

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    schedule = build("cosine_full", optimizer, 10)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the run's own 10 steps: silent
        for _ in range(10):
            optimizer.step()
            schedule.step()
    with pytest.warns(UserWarning, match=r"stepped past its length \(steps=10\).*cosine_full rises again") as caught:
        for _ in range(5):
            optimizer.step()
            schedule.step()
    assert len(caught) == 1


def test_a_recorder_refuses_an_earlier_record_in_one_line_and_replaces_it_only_when_asked(tmp_path):
    def record(**kw):
        with Recorder(tmp_path / "run", steps=2, **kw) as r:
            r.log(0, train_loss=1.0, lr=0.1)
            r.log(1, train_loss=0.5, lr=0.1)

    record()
    with pytest.raises(ConfigError, match=r"run_dir='.*run': already holds something: .*overwrite=True to replace a record"):
        record()
    record(overwrite=True)
    assert [r["train_loss"] for r in read_metrics(tmp_path / "run")] == [1.0, 0.5]
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds more than a record \(notes.txt\)"):
        record(overwrite=True)
    assert (tmp_path / "run" / "notes.txt").read_text() == "mine" and (tmp_path / "run" / "summary.json").is_file()
