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
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))  # plain_loop.py, run as a sibling script

from plain_loop import train_plain  # noqa: E402


def median(xs: List[float]) -> float:
    return statistics.median(xs)


def lrexp_loop(steps: int, fused: bool = True, threads: int = 0) -> float:
    """lrexp's own loop in this process (plots off, no progress bar): steps per second."""
    from hydra import compose, initialize_config_module
    from omegaconf import open_dict

    import lrexp.config  # noqa: F401
    from lrexp.train import train

    with initialize_config_module("lrexp.conf", version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[f"run.steps={steps}", "run.progress=false", f"optimizer.fused={fused}", "scheduler.T_max=" + str(steps // 3)],
        )
    with tempfile.TemporaryDirectory() as d:
        return train(cfg, Path(d), threads=threads)["steps_per_s"]


def interleaved(contenders: Dict[str, Callable[[], float]], rounds: int) -> Dict[str, List[float]]:
    """Run each contender once per round, alternating the order, so drift on a shared machine hits all."""
    results: Dict[str, List[float]] = {name: [] for name in contenders}
    names = list(contenders)
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            results[name].append(contenders[name]())
    return results


def bench_throughput(steps: int, rounds: int) -> Dict[str, float]:
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


def timed_process(cmd: List[str], cwd: Path) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, capture_output=True)
    return time.perf_counter() - t


def bench_startup(rounds: int) -> Dict[str, float]:
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
                cwd=work, check=True, capture_output=True,
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


SECTIONS = {
    "throughput": lambda q: bench_throughput(steps=600 if q else 3000, rounds=2 if q else 5),
    "startup": lambda q: bench_startup(rounds=1 if q else 3),
}

TARGETS = {
    "ratio_vs_plain_same_settings": (">=", 0.97),
    "ratio_vs_plain_default_adamw": (">", 1.0),
    "lrexp_first_step_after_import_torch_s": ("<=", 1.0),
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
    results: Dict[str, Dict[str, float]] = {}
    for name in a.only.split(","):
        if name not in SECTIONS:
            raise SystemExit(f"--only: unknown section {name!r} (known: {', '.join(SECTIONS)})")
        print(f"[{name}] ...", file=sys.stderr, flush=True)
        results[name] = SECTIONS[name](a.quick)
    import torch

    meta = {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
            "threads": torch.get_num_threads(), "machine": platform.machine(), "quick": a.quick}
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
