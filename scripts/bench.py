"""lrexp's performance suite: ratios measured side by side in one run, never absolute timings in tests.

    python scripts/bench.py            # everything, prints a table, writes bench-results/bench.json
    python scripts/bench.py --quick    # fewer rounds and steps (a smoke test of the suite itself)
    python scripts/bench.py --only throughput,startup

Sections:
- throughput: lrexp's training loop vs a plain hand-written loop (scripts/plain_loop.py) on digits,
  interleaved round by round in this process: with identical optimizer settings (fused AdamW in both),
  and lrexp's defaults vs a plain loop using torch's default AdamW.
- startup: process start -> first optimizer step of `python -m lrexp`, against `python -c "import
  torch"` and against the plain loop run as a script. torch 2.13's Optimizer.step imports torch._dynamo
  on its first call (~1.9 s here), so no program that steps a torch optimizer gets its first step within
  1 s of `import torch`; `import torch, torch._dynamo` is printed as that floor.
- tinylm: lrexp's loop on `task=tinylm` (its default model and eval cadence) vs a plain nanoGPT-style
  loop doing the same work (scripts/plain_loop.py), interleaved with a 2048^3 fp32 matmul (best of
  several, the training thread count; the best round is the machine's peak). MFU = the median training
  tokens/s x 6 x parameters / that peak; validation passes are in the loop's time, so MFU errs low.
- memory: peak RSS (ru_maxrss) of a `python -m lrexp` digits run and a tinylm run, each its own process.
- sweep: wall time of the 15-job digits sweep (+sweep=article) under the basic and the joblib launcher.
- hf: task=hf_lm against a plain Hugging Face loop at identical settings (a GPT-2 made and saved here).
- contention: the batched launcher on an idle machine and with one core busy with another process.
- alone: a digits and a tinylm run alone (`python -m lrexp`), idle and with one core busy, under the old
  thread rule (torch's default: every core), the new one (the cores other processes leave free,
  lrexp.device.free_threads) and one thread; training time from each run's summary.json. Goal: busy <=
  1.3 x idle; a compute-bound run on half the cores is also read against one thread on the idle machine.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # plain_loop.py, run as a sibling script

from plain_loop import train_plain, train_plain_hf, train_plain_tinylm  # noqa: E402

from lrexp.record import Summary  # noqa: E402


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def compose_lrexp(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_module

    import lrexp.config  # noqa: F401

    with initialize_config_module("lrexp.conf", version_base="1.3"):
        return hydra_compose("config", overrides=["run.progress=false", *overrides])


def same_work(steps: int) -> list[str]:
    """lrexp doing what the plain loops do: the run length, and only the checkpoint at the end (the plain
    loops write none; every run.checkpoint_every steps lrexp pickles and fsyncs the model and optimizer,
    ~5% of a 3000-step digits run at the default 200: 15 saves, 0.1 s, measured with cProfile)."""
    return [f"run.steps={steps}", f"run.checkpoint_every={steps}"]


def train_summary(cfg) -> Summary:
    """lrexp's own loop in this process, no loggers (no plots): the run's summary."""
    from lrexp.train import RunSpec, train

    with tempfile.TemporaryDirectory() as d:
        return train(RunSpec(cfg, Path(d)))


def lrexp_loop(steps: int, fused: bool = True) -> float:
    """lrexp's digits loop in this process (plots off, no progress bar): steps per second."""
    return train_summary(compose_lrexp(*same_work(steps), f"optimizer.fused={fused}", f"scheduler.T_max={steps // 3}")).steps_per_s


def interleaved(contenders: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each contender once per round, alternating the order, so drift on a shared machine hits all."""
    results: dict[str, list[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            results[name].append(contenders[name]())
    return results


def bench_throughput(steps: int, rounds: int) -> dict[str, float]:
    lrexp_loop(50)  # warm-up: first-call costs (imports, allocator) paid by nobody measured
    train_plain(50, fused=True)
    r = interleaved(
        {
            "lrexp (defaults: fused AdamW)": lambda: lrexp_loop(steps, fused=True),
            "plain loop, fused AdamW": lambda: train_plain(steps, fused=True)[0],
            "plain loop, torch's default AdamW": lambda: train_plain(steps, fused=False)[0],
        },
        rounds,
    )
    lrexp_sps = median(r["lrexp (defaults: fused AdamW)"])
    same = median(r["plain loop, fused AdamW"])
    default = median(r["plain loop, torch's default AdamW"])
    return {
        "digits_lrexp_steps_per_s": lrexp_sps,
        "digits_plain_fused_steps_per_s": same,
        "digits_plain_default_adamw_steps_per_s": default,
        "ratio_vs_plain_same_settings": lrexp_sps / same,
        "ratio_vs_plain_default_adamw": lrexp_sps / default,
    }


def timed_process(cmd: list[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def bench_startup(rounds: int) -> dict[str, float]:
    py = sys.executable
    work = Path(tempfile.mkdtemp(prefix="lrexp-bench-"))
    import_torch, import_dynamo, plain_first, lrexp_first = [], [], [], []
    try:
        for i in range(rounds):
            import_torch.append(timed_process([py, "-c", "import torch"], work))
            import_dynamo.append(timed_process([py, "-c", "import torch, torch._dynamo"], work))
            out = subprocess.run(
                [py, str(ROOT / "scripts" / "plain_loop.py"), "--fused"], cwd=work, check=True, capture_output=True, text=True
            ).stdout
            plain_first.append(float(out.strip().split("=")[1]))
            run_dir = work / f"run{i}"
            subprocess.run(
                [py, "-m", "lrexp", "run.steps=20", "logger.local.plots=false", f"hydra.run.dir={run_dir}"],
                cwd=work,
                check=True,
                capture_output=True,
            )
            lrexp_first.append(json.loads((run_dir / "summary.json").read_text())["time_to_first_step_s"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    t_import, t_plain, t_lrexp = median(import_torch), median(plain_first), median(lrexp_first)
    return {
        "import_torch_s": t_import,
        "import_torch_and_dynamo_s": median(import_dynamo),
        "plain_loop_first_step_s": t_plain,
        "lrexp_first_step_s": t_lrexp,
        "lrexp_first_step_after_import_torch_s": t_lrexp - t_import,
        "lrexp_first_step_after_plain_loop_s": t_lrexp - t_plain,
    }


def matmul_peak_flops(n: int = 2048, repeats: int = 5) -> float:
    """fp32 FLOP/s of the best of ``repeats`` n^3 matmuls, at torch's current thread count."""
    import torch

    a, b, c = torch.randn(n, n), torch.randn(n, n), torch.empty(n, n)
    torch.mm(a, b, out=c)  # first call: allocation, kernel selection
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        torch.mm(a, b, out=c)
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best


def bench_tinylm(steps: int, rounds: int) -> dict[str, float]:
    cfg = compose_lrexp("task=tinylm", *same_work(steps))
    task, run = cfg.task, cfg.run
    tokens_per_step = task.batch_size * task.context

    def plain(n_steps: int) -> float:
        return train_plain_tinylm(
            n_steps,
            task.batch_size,
            task.context,
            task.n_layer,
            task.n_head,
            task.n_embd,
            task.max_corpus_bytes,
            task.eval_batches,
            task.test_batches,
            log_every=run.log_every,
            eval_every=run.eval_every,
        )

    parameters = train_summary(compose_lrexp("task=tinylm", "run.steps=3")).parameters  # warm-up: imports, allocator
    plain(3)
    r = interleaved(
        {
            "lrexp": lambda: train_summary(cfg).steps_per_s,
            "plain": lambda: plain(steps),
            "peak": matmul_peak_flops,
        },
        rounds,
    )
    lrexp_sps, plain_sps = median(r["lrexp"]), median(r["plain"])
    # A peak is the best the machine did; throughput is typical (median): on a shared machine this errs low.
    peak = max(r["peak"])
    model_flops = lrexp_sps * tokens_per_step * 6 * parameters
    return {
        "tinylm_parameters": parameters,
        "tinylm_tokens_per_step": tokens_per_step,
        "tinylm_lrexp_steps_per_s": lrexp_sps,
        "tinylm_lrexp_tokens_per_s": lrexp_sps * tokens_per_step,
        "tinylm_plain_steps_per_s": plain_sps,
        "tinylm_ratio_vs_plain": lrexp_sps / plain_sps,
        # Round by round (neighbours in time): how much of the ratio is the machine's noise.
        "tinylm_ratio_lowest_round": min(a / b for a, b in zip(r["lrexp"], r["plain"])),
        "tinylm_ratio_highest_round": max(a / b for a, b in zip(r["lrexp"], r["plain"])),
        "matmul_peak_gflops": peak / 1e9,
        "tinylm_model_gflops": model_flops / 1e9,
        "tinylm_mfu": model_flops / peak,
    }


# Linux keeps a process's peak RSS across fork and exec: a child forked from this (large) process would
# report at least this process's peak. So a small Python forks the measured command and reports its peak.
RSS_PROBE = (
    "import os, subprocess, sys; p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL); "
    "_, status, usage = os.wait4(p.pid, 0); print(usage.ru_maxrss); sys.exit(os.waitstatus_to_exitcode(status))"
)


def peak_rss_mb(cmd: list[str], cwd: Path) -> float:
    """Peak RSS (ru_maxrss, from wait4: that child's own, not the max over all children) in MB."""
    out = subprocess.run([sys.executable, "-c", RSS_PROBE, *cmd], cwd=cwd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-2000:]}")
    return int(out.stdout) * 1024 / 1e6  # Linux reports KiB


def bench_memory(digits_steps: int, tinylm_steps: int) -> dict[str, float]:
    """Whole default runs (plots included), only shorter: RSS is set by the model and data, not the length."""
    work = Path(tempfile.mkdtemp(prefix="lrexp-bench-"))
    lrexp = [sys.executable, "-m", "lrexp"]
    try:
        return {
            "digits_peak_rss_mb": peak_rss_mb([*lrexp, f"run.steps={digits_steps}", f"hydra.run.dir={work / 'digits'}"], work),
            "tinylm_peak_rss_mb": peak_rss_mb(
                [*lrexp, "task=tinylm", f"run.steps={tinylm_steps}", f"hydra.run.dir={work / 'tinylm'}"], work
            ),
        }
    finally:
        shutil.rmtree(work, ignore_errors=True)


def bench_hf(steps: int, rounds: int) -> dict[str, float]:
    """task=hf_lm against a plain Hugging Face loop (scripts/plain_loop.py) at identical settings: the same
    GPT-2 (4 layers, width 128, made and saved here; nothing downloaded), the same tokenized text, batch 8
    x 128 tokens, AdamW at 5e-5 with decay on the matrices, a cosine schedule with warm-up, validation
    every 50 steps and the test windows at the end. Interleaved rounds, lrexp's loop in this process."""
    import numpy as np
    from transformers import AutoTokenizer

    sys.path.insert(0, str(ROOT))
    from tests.hf_models import OFFLINE, make_models

    os.environ.update(OFFLINE)
    work = Path(tempfile.mkdtemp(prefix="lrexp-bench-hf-"))
    os.environ["LREXP_CACHE"] = str(work / "cache")
    try:
        paths = make_models(work / "models", width=128, layers=4, vocab=2000, files=60)
        tokenizer = AutoTokenizer.from_pretrained(paths["gpt"])
        tokens = np.array(tokenizer(paths["corpus"].read_text())["input_ids"], dtype=np.int64)
        task = [f"task.model={paths['gpt']}", f"task.data={paths['corpus']}", "task.batch_size=8", "task.context=128"]
        cfg = compose_lrexp(
            "task=hf_lm", *task, *same_work(steps), "optimizer.lr=5e-5", "optimizer.weight_decay=0.01", "scheduler=cosine_warmup"
        )

        def plain() -> float:
            return train_plain_hf(steps, str(paths["gpt"]), tokens, 8, 128, cfg.task.eval_windows // 8, cfg.task.test_windows // 8)

        train_summary(compose_lrexp("task=hf_lm", *task, "run.steps=3"))  # warm-up: imports, the tokenized cache, allocator
        r = interleaved({"lrexp": lambda: train_summary(cfg).steps_per_s, "plain": plain}, rounds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    lrexp_sps, plain_sps = median(r["lrexp"]), median(r["plain"])
    return {
        "hf_lm_lrexp_steps_per_s": lrexp_sps,
        "hf_lm_plain_steps_per_s": plain_sps,
        "hf_lm_ratio_vs_plain": lrexp_sps / plain_sps,
        "hf_lm_ratio_lowest_round": min(a / b for a, b in zip(r["lrexp"], r["plain"])),
        "hf_lm_ratio_highest_round": max(a / b for a, b in zip(r["lrexp"], r["plain"])),
    }


# The sweeps the launchers are compared on (issue 14): what a user runs, whole commands.
SWEEPS = {
    # The article's 5 schedules x 3 seeds, digits at its defaults.
    "article15": ["+sweep=article"],
    # A fair-comparison grid: 4 schedules x 4 peak LRs x 3 seeds, digits at its defaults.
    "fair48": ["scheduler=cosine,linear,wsd,constant_warmup", "optimizer.lr=1e-3,3e-3,1e-2,3e-2", "seed=0,1,2"],
    # tinylm: 4 schedules x 2 seeds.
    "tinylm8": ["task=tinylm", "scheduler=cosine,linear,wsd,constant", "seed=0,1"],
}
LAUNCHERS = ("basic", "joblib", "batched")


def bench_sweeps(digits_steps: int, tinylm_steps: int, only: Sequence[str] = tuple(SWEEPS)) -> dict[str, float]:
    """Wall time of whole `python -m lrexp -m` sweeps (plots and the report included: what a user waits
    for) under the basic, joblib and batched launchers, one after another in this run. joblib runs one job
    per core with one torch thread each (lrexp.jobs.job_threads); batched trains the jobs together in one
    process on every core."""
    out: dict[str, float] = {}
    for name in only:
        work = Path(tempfile.mkdtemp(prefix="lrexp-bench-"))
        steps = tinylm_steps if name.startswith("tinylm") else digits_steps
        sweep = [sys.executable, "-m", "lrexp", "-m", *SWEEPS[name], f"run.steps={steps}", "run.progress=false"]
        if name.startswith("tinylm"):
            sweep.append(f"run.eval_every={max(1, steps // 4)}")
        try:
            for launcher in LAUNCHERS:
                out[f"{name}_{launcher}_s"] = timed_process(
                    [*sweep, f"hydra/launcher={launcher}", f"hydra.sweep.dir={work / launcher}"], work
                )
            out[f"{name}_jobs"] = sum(1 for p in (work / "basic").iterdir() if p.name.isdigit())
            out[f"{name}_steps_per_job"] = steps
        finally:
            shutil.rmtree(work, ignore_errors=True)
        basic, joblib, batched = (out[f"{name}_{launcher}_s"] for launcher in LAUNCHERS)
        out[f"{name}_joblib_vs_basic"] = basic / joblib
        out[f"{name}_batched_vs_basic"] = basic / batched
        out[f"{name}_batched_vs_joblib"] = joblib / batched
    return out


@contextlib.contextmanager
def one_core_busy(busy: bool) -> Iterator[None]:
    """Another process spinning on one core while the block runs (or nothing, on an idle machine)."""
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        yield
    finally:
        if hog is not None:
            hog.kill()
            hog.wait()


def bench_contention(digits_steps: int) -> dict[str, float]:
    """The batched launcher on an idle machine and with one core kept busy by another process (a spinning
    Python), next to the parallel (joblib) launcher and to the batched launcher forced onto every core
    (run.threads = all of them: how it ran before it counted free cores). 16 digits runs: 4 schedules x 2
    peak LRs x 2 seeds. Whole commands, report included."""
    cores = os.cpu_count() or 1
    sweep = ["scheduler=cosine,linear,wsd,constant_warmup", "optimizer.lr=1e-3,1e-2", "seed=0,1", f"run.steps={digits_steps}"]
    sweep += ["run.progress=false", "logger.local.plots=false"]
    variants = {"parallel": ["hydra/launcher=parallel"], "batched": ["hydra/launcher=batched"]}
    variants["batched_all_cores"] = ["hydra/launcher=batched", f"run.threads={cores}"]
    out: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="lrexp-bench-"))
    try:
        for load in ("idle", "busy"):
            with one_core_busy(load == "busy"):
                for name, args in variants.items():
                    command = [sys.executable, "-m", "lrexp", "-m", *sweep, *args, f"hydra.sweep.dir={work / f'{load}-{name}'}"]
                    out[f"contention_{load}_{name}_s"] = timed_process(command, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for load in ("idle", "busy"):
        out[f"contention_{load}_batched_vs_parallel"] = out[f"contention_{load}_parallel_s"] / out[f"contention_{load}_batched_s"]
        out[f"contention_{load}_batched_vs_all_cores"] = out[f"contention_{load}_batched_all_cores_s"] / out[f"contention_{load}_batched_s"]
    out["contention_batched_busy_vs_idle"] = out["contention_idle_batched_s"] / out["contention_busy_batched_s"]
    return out


def bench_alone(digits_steps: int, tinylm_steps: int, rounds: int) -> dict[str, float]:
    """A run alone, idle and with one core kept busy by a spinning Python, under the old thread rule (every
    core: run.threads = the core count, what torch's default gave) and the new default (free cores). The
    training time each run records (summary.json wall_time_s, start-up excluded), median of ``rounds``.
    OMP_NUM_THREADS is unset: where it is set it wins under both rules."""
    cores = os.cpu_count() or 1
    runs = {"digits": [f"run.steps={digits_steps}"], "tinylm": ["task=tinylm", f"run.steps={tinylm_steps}", "run.eval_every=50"]}
    # "one": a single thread, the machine's own limit once a core is taken: what the busy new rule is read against.
    rules = {"old": [f"run.threads={cores}"], "new": [], "one": ["run.threads=1"]}
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    out: dict[str, float] = {}
    work = Path(tempfile.mkdtemp(prefix="lrexp-bench-"))
    try:
        for load in ("idle", "busy"):
            with one_core_busy(load == "busy"):
                for task, args in runs.items():
                    for rule, extra in rules.items():
                        times = []
                        for i in range(rounds):
                            run_dir = work / f"{load}-{task}-{rule}-{i}"
                            cmd = [sys.executable, "-m", "lrexp", *args, *extra, "run.progress=false", "logger.local.plots=false",
                                   f"hydra.run.dir={run_dir}"]  # fmt: skip
                            subprocess.run(cmd, cwd=work, env=env, check=True, capture_output=True)
                            times.append(json.loads((run_dir / "summary.json").read_text())["wall_time_s"])
                        out[f"alone_{task}_{load}_{rule}_s"] = median(times)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for task in runs:
        for rule in rules:
            out[f"alone_{task}_{rule}_busy_vs_idle"] = out[f"alone_{task}_busy_{rule}_s"] / out[f"alone_{task}_idle_{rule}_s"]
        # busy under the new rule against one thread on the idle machine: what contention costs beyond the core taken
        out[f"alone_{task}_new_busy_vs_one_thread_idle"] = out[f"alone_{task}_busy_new_s"] / out[f"alone_{task}_idle_one_s"]
    return out


SECTIONS = {
    "throughput": lambda q: bench_throughput(steps=600 if q else 3000, rounds=2 if q else 5),
    "startup": lambda q: bench_startup(rounds=1 if q else 3),
    "tinylm": lambda q: bench_tinylm(steps=10 if q else 40, rounds=1 if q else 7),
    "memory": lambda q: bench_memory(digits_steps=50 if q else 1000, tinylm_steps=3 if q else 50),
    "sweep": lambda q: bench_sweeps(digits_steps=150 if q else 600, tinylm_steps=10 if q else 100),
    "hf": lambda q: bench_hf(steps=10 if q else 100, rounds=1 if q else 5),
    "contention": lambda q: bench_contention(digits_steps=150 if q else 600),
    "alone": lambda q: bench_alone(digits_steps=150 if q else 600, tinylm_steps=10 if q else 100, rounds=1 if q else 3),
}

TARGETS = {
    "ratio_vs_plain_same_settings": (">=", 0.97),
    "ratio_vs_plain_default_adamw": (">", 1.0),
    "lrexp_first_step_after_import_torch_s": ("<=", 1.0),
    "tinylm_ratio_vs_plain": (">=", 0.97),
    "tinylm_mfu": (">=", 0.35),
    "digits_peak_rss_mb": ("<=", 500.0),
    "article15_joblib_vs_basic": (">=", 1.3),
    "fair48_batched_vs_joblib": (">=", 2.0),
    "tinylm8_batched_vs_joblib": (">=", 1.0),
    "hf_lm_ratio_vs_plain": (">=", 0.95),
    "alone_digits_new_busy_vs_idle": ("<=", 1.3),
    "alone_tinylm_new_busy_vs_idle": ("<=", 1.3),
}


def verdict(key: str, value: float) -> str:
    if key not in TARGETS:
        return ""
    op, bound = TARGETS[key]
    ok = {">=": value >= bound, ">": value > bound, "<=": value <= bound}[op]
    return f"target {op} {bound:g}: {'met' if ok else 'NOT met'}"


def main() -> None:
    p = argparse.ArgumentParser(description="lrexp's performance suite")
    p.add_argument("--quick", action="store_true", help="fewer rounds and steps")
    p.add_argument("--only", default=",".join(SECTIONS), help=f"comma-separated sections of: {', '.join(SECTIONS)}")
    p.add_argument("--out", default=str(ROOT / "bench-results" / "bench.json"))
    a = p.parse_args()
    results: dict[str, dict[str, float]] = {}
    for name in a.only.split(","):
        if name not in SECTIONS:
            raise SystemExit(f"--only: unknown section {name!r} (known: {', '.join(SECTIONS)})")
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        results[name] = SECTIONS[name](a.quick)
    import torch

    meta = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "quick": a.quick,
    }
    width = max(len(k) for r in results.values() for k in r)
    print(f"lrexp bench ({', '.join(f'{k} {v}' for k, v in meta.items())})")
    for section, r in results.items():
        print(f"\n{section}")
        for k, v in r.items():
            print(f"  {k:<{width}}  {v:10.3f}  {verdict(k, v)}")
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2) + "\n")
    print(f"\nwritten: {out}")


if __name__ == "__main__":
    main()
