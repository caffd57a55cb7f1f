"""The tinylm task: a GPT-2 on bytes that really learns, its corpus choices, a fixed split, batches that
are a function of (seed, step), and the metrics it adds to the run record."""

from __future__ import annotations

import math
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra.errors import ConfigCompositionException

from lrexp.errors import ConfigError
from lrexp.record import read_metrics
from lrexp.tasks.tinylm import TinyLMTask, stdlib_sources
from tests.helpers import compose_config, run_cli, table_without_time, train_in_process

# Small enough that a step takes milliseconds on one CPU core, big enough to learn something.
SMALL = [
    "task=tinylm",
    "task.n_embd=64",
    "task.n_head=2",
    "task.n_layer=2",
    "task.context=64",
    "task.batch_size=16",
    "task.eval_batches=4",
    "task.test_batches=4",
    "task.max_corpus_bytes=400000",
]
SMALL_TASK = dict(
    batch_size=16,
    context=64,
    n_layer=1,
    n_head=2,
    n_embd=32,
    dropout=0.0,
    corpus=None,
    corpus_glob="**/*",
    max_corpus_bytes=200_000,
    val_fraction=0.05,
    test_fraction=0.05,
    eval_batches=2,
    test_batches=2,
)

WORDS = "the a schedule warms up then decays slowly and loss falls while rate rises per step".split()


def make(**kw) -> TinyLMTask:
    args = dict(SMALL_TASK, device=torch.device("cpu"), seed=0)
    args.update(kw)
    return TinyLMTask(**args)


def write_text(path: Path, n_sentences: int, seed: int = 0) -> bytes:
    """Sentences of random words: text with structure (spelling, spacing) for a model to pick up."""
    rng = random.Random(seed)
    text = "".join(" ".join(rng.choices(WORDS, k=rng.randint(3, 12))).capitalize() + ".\n" for _ in range(n_sentences))
    path.write_text(text)
    return text.encode()


@pytest.mark.slow
def test_a_tiny_run_through_the_runner_writes_bpb_and_one_lr_column_per_group(tmp_path):
    s = train_in_process(tmp_path, *SMALL, "run.steps=6", "run.log_every=1", "run.eval_every=3", "scheduler=cosine_warmup")
    assert s["status"] == "completed" and s["task"] == "tinylm"
    rows = read_metrics(tmp_path)
    assert list(rows[0]) == [
        "step", "lr", "lr_decay", "lr_no_decay", "momentum", "momentum_decay", "momentum_no_decay", "weight_decay",
        "weight_decay_decay", "weight_decay_no_decay", "train_loss", "grad_norm", "val_loss", "val_acc", "val_bpb", "test_loss", "test_acc",
            "test_bpb", "time_s",
    ]  # fmt: skip
    assert rows[0]["weight_decay_decay"] == 0.1 and rows[0]["weight_decay_no_decay"] == 0.0  # each group's own
    assert s["lr_columns"] == ["lr", "lr_decay", "lr_no_decay"]
    assert s["metrics"] == [  # declared by the task: reports read the direction, label and scale from here
        {"name": "loss", "goal": "min", "label": "loss", "scale": "log"},
        {"name": "acc", "goal": "max", "label": "next-byte accuracy", "scale": "linear"},
        {"name": "bpb", "goal": "min", "label": "bits per byte", "scale": "log"},
    ]
    evaluated = [r for r in rows if r["val_loss"] is not None]
    assert [r["step"] for r in evaluated] == [0, 3, 5]
    for r in evaluated:
        assert r["val_bpb"] == pytest.approx(r["val_loss"] / math.log(2), rel=1e-6)
        assert 0.0 <= r["val_acc"] <= 1.0
    # A random init guesses nearly uniformly (ln 256 = 5.55 nats); its tied embeddings make "the byte repeats"
    # a little likelier, worth a few tenths of a nat on source code.
    assert rows[0]["val_loss"] == pytest.approx(math.log(256), abs=0.5)
    assert all(r["lr_decay"] == r["lr_no_decay"] == r["lr"] for r in rows)
    assert s["final_val_bpb"] == evaluated[-1]["val_bpb"] and s["best_val_bpb"] == min(r["val_bpb"] for r in evaluated)


@pytest.mark.slow
def test_validation_loss_falls_clearly_within_100_steps(tmp_path):
    s = train_in_process(tmp_path, *SMALL, "run.steps=100", "run.eval_every=50", "scheduler=cosine_warmup", "optimizer.lr=3e-3")
    first, *_, last = [r for r in read_metrics(tmp_path) if r["val_loss"] is not None]
    # ln 256 = 5.55 nats at init; predicting Python source from byte frequencies alone costs ~3.15 nats
    # (4.5 bits) here, so a loss below 3 means the model uses the context.
    assert first["val_loss"] > 5.0
    assert last["val_loss"] < 3.0, s
    # At init the tied embeddings make "the next byte repeats this one" the guess: right ~20% of the time.
    assert last["val_acc"] > first["val_acc"] + 0.05


@pytest.mark.slow
def test_a_corpus_file_is_read_whole_and_trains(tmp_path):
    text = write_text(tmp_path / "story.txt", 3000)
    task = make(corpus=str(tmp_path / "story.txt"))
    assert task.n_bytes == len(text) and bytes(task.data.tolist()) == text
    s = train_in_process(
        tmp_path / "run", *SMALL, f"task.corpus={tmp_path / 'story.txt'}", "run.steps=40", "run.eval_every=20", "optimizer.lr=3e-3"
    )
    first, *_, last = [r for r in read_metrics(tmp_path / "run") if r["val_loss"] is not None]
    assert s["status"] == "completed" and last["val_loss"] < first["val_loss"] - 1.0


@pytest.mark.slow
def test_a_corpus_folder_reads_its_text_files_in_path_order(tmp_path):
    folder = tmp_path / "texts"
    (folder / "b").mkdir(parents=True)
    (folder / ".git").mkdir()
    parts = [write_text(folder / "a.txt", 200, seed=1), write_text(folder / "b" / "c.md", 200, seed=2)]
    (folder / "b" / "d.bin").write_bytes(bytes(range(256)) * 10)  # not text: skipped
    write_text(folder / ".git" / "config", 50)  # hidden tooling: skipped
    assert bytes(make(corpus=str(folder)).data.tolist()) == b"".join(parts)
    only_md = make(corpus=str(folder), corpus_glob="**/*.md")
    assert bytes(only_md.data.tolist()) == parts[1]
    s = train_in_process(tmp_path / "run", *SMALL, f"task.corpus={folder}", "run.steps=3", "run.eval_every=2")
    assert s["status"] == "completed"


def test_the_default_corpus_is_the_standard_library_in_a_fixed_order():
    files = stdlib_sources()
    names = {f.name for f in files}
    assert {"os.py", "argparse.py", "sysconfig.py"} <= names
    assert not any(part in ("site-packages", "dist-packages") for f in files for part in f.parts)
    task = make(max_corpus_bytes=50_000)
    assert task.n_bytes == 50_000 and bytes(task.data[:1000].tolist()) == files[0].read_bytes()[:1000]


@pytest.mark.slow
def test_a_missing_corpus_is_one_line_from_the_cli(tmp_path):
    missing = tmp_path / "no" / "such.txt"
    out = run_cli(["task=tinylm", f"task.corpus={missing}", "hydra.run.dir=run"], cwd=tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    (line,) = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert line.startswith(f"lrexp: error: task.corpus='{missing}': no such file or folder"), line
    assert not (tmp_path / "run" / "metrics.csv").exists()


@pytest.mark.parametrize(
    "kw, key",
    [
        (dict(context=0), "task.context"),
        (dict(batch_size=0), "task.batch_size"),
        (dict(n_head=3), "task.n_head"),  # 32 is not divisible by 3
        (dict(val_fraction=1.0), "task.val_fraction"),
        (dict(max_corpus_bytes=200), "task.max_corpus_bytes"),  # too little text for a train and a val chunk
    ],
)
def test_nonsense_sizes_are_config_errors(kw, key):
    with pytest.raises(ConfigError) as e:
        make(**kw)
    assert e.value.key == key


def test_a_folder_without_text_files_is_a_config_error(tmp_path):
    (tmp_path / "data.bin").write_bytes(b"\0\1\2" * 1000)
    with pytest.raises(ConfigError) as e:
        make(corpus=str(tmp_path))
    assert e.value.key == "task.corpus" and "no text files" in str(e.value)
    (tmp_path / "short.txt").write_text("too short for one window\n")
    with pytest.raises(ConfigError) as e:
        make(corpus=str(tmp_path / "short.txt"))
    assert e.value.key == "task.corpus" and "too few" in str(e.value)


def test_batches_are_a_function_of_seed_and_step():
    a, b = make(), make()
    for step in [0, 1, 7, 1000, 3, 0]:  # out of order and repeated: no hidden loader state
        xa, ya = a.train_batch(step)
        xb, yb = b.train_batch(step)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    x0, y0 = a.train_batch(0)
    assert x0.shape == y0.shape == (16, 64) and x0.dtype == torch.long
    assert torch.equal(x0[:, 1:], y0[:, :-1])  # targets are the inputs shifted by one byte
    assert not torch.equal(x0, a.train_batch(1)[0])
    assert not torch.equal(x0, make(seed=1).train_batch(0)[0])
    # torch's CPU generator keeps only 32 bits of a seed: seeds 2**32 apart must still differ.
    assert not torch.equal(make(seed=1).train_batch(5)[0], make(seed=1 + 2**32).train_batch(5)[0])


def test_the_split_is_fixed_disjoint_and_does_not_move_with_the_seed():
    a, b = make(seed=0), make(seed=7)
    assert (a.train_chunks, a.val_chunks, a.test_chunks) == (b.train_chunks, b.val_chunks, b.test_chunks)
    for split in ("val", "test"):
        assert all(torch.equal(x, y) for x, y in zip(a.splits[split][0], b.splits[split][0]))
    train, val, test = set(a.train_chunks), set(a.val_chunks), set(a.test_chunks)
    assert not train & val and not train & test and not val & test and len(val) == len(test) == 5  # 5% each of 100 chunks
    assert len(train | val | test) == 100 and max(val) - min(val) > 50 and max(test) - min(test) > 50  # spread through the corpus
    text = bytes(a.data.tolist())
    chunk = lambda i: text[i * a.chunk_len : (i + 1) * a.chunk_len]  # noqa: E731
    windows = torch.cat([a.train_batch(s)[0] for s in range(20)])
    assert all(any(bytes(w.tolist()) in chunk(i) for i in train) for w in windows)
    for split, chunks in (("val", val), ("test", test)):
        assert all(any(bytes(w.tolist()) in chunk(i) for i in chunks) for w in torch.cat(a.splits[split][0]))


def test_weight_decay_applies_to_matmul_weights_only():
    task = make()
    decay, no_decay = task.param_groups()
    assert decay["name"] == "decay" and no_decay["name"] == "no_decay" and no_decay["weight_decay"] == 0.0
    assert "weight_decay" not in decay  # the optimizer's own value
    params = list(task.model.parameters())
    assert sorted(map(id, decay["params"] + no_decay["params"])) == sorted(map(id, params))
    assert all(p.ndim == 2 for p in decay["params"])
    wte = task.model.get_input_embeddings().weight
    assert any(p is wte for p in no_decay["params"]) and task.model.get_output_embeddings().weight is wte


def test_the_task_file_sets_its_run_length_and_the_command_line_wins():
    cfg, _ = compose_config("task=tinylm")
    assert cfg.task._target_ == "lrexp.tasks.tinylm.TinyLMTask" and cfg.task.context == 128
    assert cfg.run.steps == 500 and cfg.run.eval_every <= cfg.run.steps // 10
    assert compose_config("task=tinylm", "run.steps=77")[0].run.steps == 77
    assert compose_config("task=tinylm", "scheduler=poly_warmup")[0].scheduler.num_training_steps == cfg.run.steps
    assert compose_config()[0].run.steps == 600  # digits keeps the primary config's length


@pytest.mark.parametrize("override", ["task.context=long", "task.n_embd=1.5", "task.nonsense=1"])
def test_the_schema_rejects_wrong_types_and_unknown_keys(override):
    with pytest.raises(ConfigCompositionException):
        compose_config("task=tinylm", override)


class CrashOnce(TinyLMTask):
    """tinylm whose run dies at step 9 while armed: a crash after the step-6 checkpoint."""

    armed = False

    def train_batch(self, step):
        if CrashOnce.armed and step == 9:
            CrashOnce.armed = False
            raise RuntimeError("simulated crash")
        return super().train_batch(step)


@pytest.mark.slow
def test_resuming_after_a_crash_reproduces_the_uninterrupted_run(tmp_path):
    run = [
        *SMALL,
        "task._target_=tests.test_tinylm.CrashOnce",
        "run.steps=12",
        "run.log_every=1",
        "run.eval_every=4",
        "run.checkpoint_every=6",
    ]
    train_in_process(tmp_path / "whole", *run)
    CrashOnce.armed = True
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_in_process(tmp_path / "crashed", *run)
    train_in_process(tmp_path / "crashed", *run, "run.resume=true")
    assert table_without_time(read_metrics(tmp_path / "crashed")) == table_without_time(read_metrics(tmp_path / "whole"))


@pytest.mark.slow
def test_a_digits_run_never_imports_transformers(tmp_path):
    code = (
        "import sys; from pathlib import Path; from tests.helpers import train_in_process; "
        "import lrexp.tasks.tinylm; "
        f"train_in_process(Path({str(tmp_path)!r}), 'run.steps=3'); "
        "assert 'transformers' not in sys.modules, 'transformers imported'"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.slow
def test_the_report_tabulates_and_plots_bits_per_byte_and_does_not_invent_a_spread(tmp_path):
    """One run per schedule: the table adds the task's bpb; with no seeds to compare there is no ±, no interval and no verdict."""
    import csv

    from lrexp.report import write_report

    for sched in ("cosine_warmup", "exp"):
        train_in_process(tmp_path / "runs" / sched, *SMALL, "run.steps=12", "run.eval_every=6", f"scheduler={sched}")
    write_report([tmp_path / "runs"], tmp_path / "report")
    with open(tmp_path / "report" / "summary.csv", newline="") as f:
        table = {r["scheduler"]: r for r in csv.DictReader(f)}
    assert set(table) == {"cosine_warmup", "exp"}
    for sched, row in table.items():
        bpb = read_metrics(tmp_path / "runs" / sched)[-1]["test_bpb"]
        assert float(row["final_test_bpb_mean"]) == bpb
        assert row["final_test_bpb_std"] == row["final_test_loss_std"] == row["final_test_loss_ci_low"] == ""  # one run has no spread
    assert (tmp_path / "report" / "report" / "val_bpb.png").stat().st_size > 5000
    md = (tmp_path / "report" / "report.md").read_text()
    assert "| final test bpb |" in md and "±" not in md.split("\n\n")[1]  # the verdict line
    assert "no seed spread to weigh the gaps against and no verdict" in md and "wins" not in md.split("\n\n")[1]
