"""lrexp's replication suite: seven published findings about LR schedules, each a sweep preset
(conf/sweep/), run with the parallel launcher, then analysed with paired statistics (lrexp.studies.replication).

    python scripts/replicate.py                       # every finding: ~45 minutes on 2 CPU cores
    python scripts/replicate.py --finding 1,5         # chosen findings (numbers or preset names)
    python scripts/replicate.py --reduced --finding 3,5   # the small versions CI runs (~30 s)
    python scripts/replicate.py --no-run              # analyse what OUT already holds
    python scripts/replicate.py --finding 7 --keep scripts/figures/replication.json   # one finding, the others' rows kept

Each finding's sweep goes to OUT/<preset>/ (one run directory per job, the comparison report at the
top) and is resumed, not redone, when the script is run again (run.resume=true: finished runs are kept).
The table, with every effect's 95% interval and verdict, is printed and written to OUT/replication.md
and OUT/replication.json; each sweep's wall time is in OUT/<preset>/replicate_time.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from lrexp.studies.replication import FINDINGS, Finding, Outcome, Verdict, analyse, markdown_table

ROOT = Path(__file__).resolve().parent.parent
TIME_FILE = "replicate_time.json"


def chosen(spec: str | None) -> list[Finding]:
    if not spec:
        return list(FINDINGS)
    wanted = [s.strip() for s in spec.split(",") if s.strip()]
    by_key = {str(f.number): f for f in FINDINGS} | {f.preset: f for f in FINDINGS}
    unknown = [w for w in wanted if w not in by_key]
    if unknown:
        allowed = ", ".join(f"{f.number} ({f.preset})" for f in FINDINGS)
        raise SystemExit(f"replicate.py: error: --finding={','.join(unknown)}: no such finding; allowed: {allowed}")
    return [by_key[w] for w in dict.fromkeys(wanted)]


def missing_extras(findings: list[Finding], launcher: str) -> list[str]:
    """The lrexp extras the chosen sweeps need that are not installed (checked before any sweep runs)."""
    needed = {"joblib": "hydra_plugins.hydra_joblib_launcher"} if launcher == "parallel" else {}
    if any(f.preset == "schedule_free" for f in findings):
        needed["schedulefree"] = "schedulefree"
    return [extra for extra, module in needed.items() if importlib.util.find_spec(module) is None]


def run_sweep(finding: Finding, out: Path, reduced: bool, launcher: str) -> float:
    """The finding's preset as one `python -m lrexp -m` sweep into OUT/<preset>; returns its wall time."""
    sweep_dir = out / finding.preset
    command = [
        sys.executable, "-m", "lrexp", "-m", f"+sweep={finding.preset}", f"hydra/launcher={launcher}",
        f"hydra.sweep.dir={sweep_dir}", "run.resume=true", "run.progress=false",
        *(finding.reduced if reduced else ()),
    ]  # fmt: skip
    print(f"[{finding.number}] {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, env=os.environ | {"PYTHONUNBUFFERED": "1"}, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    sweep_dir.mkdir(parents=True, exist_ok=True)  # a sweep refused before it started made none
    (sweep_dir / "replicate.log").write_text(done.stdout + done.stderr)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-15:])
        raise SystemExit(f"replicate.py: the sweep of finding {finding.number} failed (exit {done.returncode}):\n{tail}")
    launches = json.loads((sweep_dir / TIME_FILE).read_text())["launches"] if (sweep_dir / TIME_FILE).is_file() else []
    launches.append({"seconds": round(seconds, 1), "reduced": reduced, "launcher": launcher, "cores": os.cpu_count()})
    (sweep_dir / TIME_FILE).write_text(json.dumps({"launches": launches}, indent=2) + "\n")
    print(f"[{finding.number}] {seconds:.0f} s", flush=True)
    return seconds


def kept_with(outcomes: list[Outcome], findings: list[Finding], path: Path) -> list[Outcome]:
    """The rows of ``path`` (an earlier replication.json), those of the chosen findings replaced by
    ``outcomes``, in the suite's order."""
    chosen = {str(f.number) for f in findings}
    earlier = [Outcome(**(d | {"verdict": Verdict(d["verdict"])})) for d in json.loads(path.read_text())]
    rows = [o for o in earlier if finding_number(o) not in chosen] + outcomes
    order = {str(f.number): i for i, f in enumerate(FINDINGS)}
    return sorted(rows, key=lambda o: order[finding_number(o)])  # stable: a finding's rows keep their order


def finding_number(o: Outcome) -> str:
    """ "1a" -> "1", "4 @200" -> "4": the finding a row belongs to."""
    match = re.match(r"\d+", o.finding)
    assert match is not None, o.finding
    return match[0]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--finding", help="comma-separated finding numbers or preset names (default: all)")
    p.add_argument("--out", type=Path, default=ROOT / "multirun" / "replication", help="where the sweeps go")
    p.add_argument("--reduced", action="store_true", help="the small versions (fewer seeds and LRs) CI runs")
    p.add_argument("--no-run", action="store_true", help="analyse the sweeps OUT already holds")
    p.add_argument("--launcher", default="parallel", help="the Hydra launcher of the sweeps (default: parallel)")
    p.add_argument(
        "--keep",
        type=Path,
        help="a replication.json whose rows of the findings not chosen are kept: the table updated one finding at a time",
    )
    args = p.parse_args(argv)
    findings = chosen(args.finding)
    out = args.out.resolve()
    if not args.no_run:
        if missing := missing_extras(findings, args.launcher):
            raise SystemExit(
                f"replicate.py: error: these sweeps need lrexp's extras {', '.join(missing)}: "
                f"pip install -e '.[{','.join(missing)}]'" + (" (or --launcher basic)" if "joblib" in missing else "")
            )
        for f in findings:
            run_sweep(f, out, args.reduced, args.launcher)
    outcomes = [o for f in findings for o in analyse(f, out / f.preset)]
    if args.keep:
        outcomes = kept_with(outcomes, findings, args.keep)
    table = markdown_table(outcomes)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "replication.md").write_text(table + "\n")
    (out / "replication.json").write_text(json.dumps([o.as_dict() for o in outcomes], indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
