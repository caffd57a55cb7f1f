"""``python -m lrexp.wandb_report``: a sweep's comparison as a W&B Report (wandb-workspaces).

    python -m lrexp.wandb_report [DIR ...] [--entity E] [--project P] [--group G] [--group-by KEY]
                                 [--dry-run] [--out SPEC.json]

The report: a title and a one-paragraph summary (which schedule won, by how much, from the local
runs), LR, training loss and each validation metric vs step grouped by schedule (mean with a min-max
band), a run comparer, a parallel-coordinates plot (schedule, peak LR, final test loss) and the
local comparison table. Its panels read the W&B runs of one group (the sweep) in one project.

DIR: sweep or run directories (lrexp.compare reads them); the summary and table come from them, and
so do the defaults of --project, --entity and --group (each job's summary.json records its W&B run).
Without DIR, the latest sweep under ./multirun is read if there is one.

--dry-run writes the report's spec (what ``Report.save()`` would send) as JSON and needs no network;
without it the report is saved to W&B and its URL printed. wandb-workspaces is imported here only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from lrexp.compare import Comparison, compare
from lrexp.diagnostics import diagnose
from lrexp.errors import describe
from lrexp.protocol import PROTOCOL
from lrexp.record import STEP, Metric, Status
from lrexp.runs import LOSS, RunRecord, find_runs
from lrexp.verdict import headline, markdown_table

DEFAULT_PROJECT = "lrexp"
SPEC_FILE = "wandb-report.json"
# Option names: the W&B run config holds them under "choices" (the composed config holds only contents).
CHOICE_KEYS = ("scheduler", "optimizer", "task")
SPREAD: Literal["minmax"] = "minmax"  # the band around each group's mean, as in the local report's default


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    paths = args.dirs or latest_sweep(Path.cwd())
    if paths and not args.dirs:
        print(f"lrexp.wandb_report: reading the latest sweep, {paths[0]}", file=sys.stderr)
    try:
        runs = find_runs(paths) if paths else []
        comparison = compare(runs, args.group_by) if runs else None
    except (FileNotFoundError, ValueError) as e:
        print(f"lrexp.wandb_report: error: {e}", file=sys.stderr)
        return 2
    recorded = recorded_wandb(runs)
    where: dict[str, Any] = {
        "project": args.project or recorded.get("project") or DEFAULT_PROJECT,
        "entity": args.entity or recorded.get("entity") or os.environ.get("WANDB_ENTITY"),
        "group": args.group or recorded.get("group"),
    }
    if not runs:
        print("lrexp.wandb_report: no local runs given: the report has panels but no summary or table", file=sys.stderr)
    if where["group"] is None:
        print("lrexp.wandb_report: no W&B group known (pass --group): the panels show every run of the project", file=sys.stderr)
    try:
        import wandb_workspaces.reports.v2  # noqa: F401 - one clear line if the extra is missing
    except ImportError:
        print("lrexp.wandb_report: error: wandb-workspaces is not installed (pip install 'lrexp[wandb-report]')", file=sys.stderr)
        return 2

    out = args.out or default_out(paths)
    metrics = comparison.metrics if comparison else [LOSS]
    if args.dry_run:
        write_spec(build_wandb_report(comparison, **where, runsets_online=False, metrics=metrics), out)
        print(f"report spec: {out}")
        return 0
    return save_report(comparison, where, metrics, out if args.out else None)


def save_report(comparison: Comparison | None, where: dict[str, Any], metrics: list[Metric], spec_out: Path | None) -> int:
    """Save to W&B and print the URL; without credentials or network, one error line and exit code 1."""
    import wandb

    from lrexp.wandb_credentials import configured_credentials, redacted

    has_key, key = configured_credentials(wandb)
    if not has_key:  # wandb.Api() would prompt for a key on a terminal and wait: say it instead
        print(
            "lrexp.wandb_report: error: no W&B API key configured (set WANDB_API_KEY or run `wandb login`); "
            "--dry-run writes the spec without network",
            file=sys.stderr,
        )
        return 1
    try:
        # Online, every runset names its entity: by default the one the API key belongs to.
        entity = where["entity"] or wandb.Api().default_entity
        report = build_wandb_report(comparison, **{**where, "entity": entity}, runsets_online=True, metrics=metrics)
        report.save()
        url = report.url
    except Exception as e:
        message = redacted(describe(e), key)
        print(
            f"lrexp.wandb_report: error: could not save the report to W&B ({message}); --dry-run writes its spec without network",
            file=sys.stderr,
        )
        return 1
    if spec_out is not None:
        write_spec(report, spec_out)
    print(url)
    return 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m lrexp.wandb_report",
        description="Build a W&B Report comparing a sweep's runs (curves grouped by schedule, run comparer, "
        "parallel coordinates, the local comparison table); --dry-run writes its spec without network.",
    )
    p.add_argument("dirs", nargs="*", type=Path, help="sweep or run directories (default: the latest under ./multirun)")
    p.add_argument("--entity", help="W&B entity (default: recorded in the runs, else WANDB_ENTITY, else your default entity)")
    p.add_argument("--project", help=f"W&B project (default: recorded in the runs, else {DEFAULT_PROJECT})")
    p.add_argument("--group", help="W&B group of the sweep's runs (default: recorded in the runs)")
    p.add_argument("--group-by", help="the key whose values are compared (default: scheduler, if it varies)")
    p.add_argument("--dry-run", action="store_true", help="write the report spec as JSON; no network")
    p.add_argument(
        "--out",
        type=Path,
        help=f"where the spec goes (default: DIR/{SPEC_FILE} for one DIR, else ./{SPEC_FILE}; when saving, only if given)",
    )
    return p.parse_args(argv)


# --- the report ---------------------------------------------------------------------------------------


def build_wandb_report(
    comparison: Comparison | None,
    *,
    entity: str | None,
    project: str,
    group: str | None,
    runsets_online: bool,
    metrics: Sequence[Metric] = (LOSS,),
) -> Any:
    """The W&B Report object (wandb-workspaces): what save() sends, or what --dry-run writes as JSON."""
    import wandb_workspaces.reports.v2 as wr
    from wandb_workspaces import expr

    group_key = comparison.group_key if comparison else "scheduler"
    split = comparison.split if comparison else "test"  # the split the comparison reports
    by = config_key(group_key)

    def runset() -> Any:  # one per grid: a runset belongs to the grid that shows it
        return wr.Runset(
            entity=(entity or "") if runsets_online else "",
            project=project,
            name=f"sweep {sweep_name(group)}" if group else project,
            filters=[expr.Metric("Group") == group] if group else "",
            groupby=[f"config.{by}"],
        )

    def curve(metric: str, title: str, x: int, y: int) -> Any:
        return wr.LinePlot(
            title=title,
            x=STEP,
            y=[metric],
            title_x="step",
            title_y=metric,
            groupby=f"config.{by}",
            groupby_aggfunc="mean",
            groupby_rangefunc=SPREAD,
            layout=wr.Layout(x=x, y=y, w=12, h=8),
        )

    curves = [curve("lr", "Learning rate vs step", 0, 0), curve("train_loss", "Training loss vs step", 12, 0)]
    for i, metric in enumerate(metrics):
        column = metric.column("val")
        curves.append(curve(column, f"{column} vs step", 12 * (i % 2), 8 + 8 * (i // 2)))

    columns = [wr.ParallelCoordinatesPlotColumn(metric=wr.Config(config_key("scheduler")), display_name="schedule")]
    if group_key not in ("scheduler", "optimizer.lr"):
        columns.insert(0, wr.ParallelCoordinatesPlotColumn(metric=wr.Config(by), display_name=group_key))
    columns += [
        wr.ParallelCoordinatesPlotColumn(metric=wr.Config("optimizer.lr"), display_name="peak LR", log=True),
        wr.ParallelCoordinatesPlotColumn(
            metric=wr.SummaryMetric(f"final_{metrics[0].column(split)}"), display_name=f"final {split} {metrics[0].name}"
        ),
    ]

    blocks: list[Any] = [wr.P(summary_text(comparison))]
    blocks += [wr.H2("Curves, grouped by " + group_key), wr.PanelGrid(runsets=[runset()], panels=curves)]
    blocks += [
        wr.H2("Runs side by side"),
        wr.PanelGrid(
            runsets=[runset()],
            panels=[
                wr.ParallelCoordinatesPlot(
                    title="schedule, peak LR, final validation loss", columns=columns, layout=wr.Layout(x=0, y=0, w=24, h=8)
                ),
                wr.RunComparer(diff_only="split", layout=wr.Layout(x=0, y=8, w=24, h=10)),
            ],
        ),
    ]
    if comparison is not None:
        diagnosis = diagnose(comparison)
        blocks += [wr.H2("Local comparison table"), wr.MarkdownBlock(text=markdown_table(comparison, diagnosis))]
        if diagnosis.flags:
            blocks += [wr.H2("Notes"), wr.MarkdownBlock(text="\n".join(f"- {f.text}" for f in diagnosis.flags))]
    title = f"lrexp: {group_key} comparison" + (f" ({sweep_name(group)})" if group else "")
    return wr.Report(
        entity=entity or "",
        project=project,
        title=title[:128],
        description=headline(comparison, diagnose(comparison)) if comparison else NO_LOCAL_RUNS,
        blocks=blocks,
        width="fluid",
    )


def report_spec(report: Any) -> dict[str, Any]:
    """What ``Report.save()`` sends, as JSON-ready data: where the report goes and its spec (blocks, panels)."""
    model = report._to_model()  # wandb-workspaces' own serialisation, the one save() uses
    return {
        "entity": report.entity or None,
        "project": report.project,
        "title": model.display_name,
        "description": model.description,
        "spec": model.spec.model_dump(by_alias=True, exclude_none=True, mode="json"),
    }


def write_spec(report: Any, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report_spec(report), indent=1) + "\n")


def sweep_name(group: str) -> str:
    """multirun/2026-11-23/23-31-49.894719 -> 2026-11-23/23-31-49.894719: the sweep's date and time."""
    return "/".join(Path(group).parts[-2:])


def config_key(key: str) -> str:
    """The W&B config key holding ``key``'s value: option names under ``choices``, others as composed."""
    return f"choices.{key}" if key in CHOICE_KEYS else key


# --- text from the local comparison ---------------------------------------------------------------------


NO_LOCAL_RUNS = "Runs of the sweep in W&B, grouped by schedule."


def summary_text(comparison: Comparison | None) -> str:
    if comparison is None:
        return NO_LOCAL_RUNS + " Pass the sweep directory for the summary and the comparison table."
    runs = comparison.runs
    counts = {s.value: sum(r.status is s for r in runs) for s in Status}
    done = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    return (
        f"{headline(comparison, diagnose(comparison))} {len(runs)} runs ({done}); {plural(len(comparison.groups), 'value')} of "
        f"{comparison.group_key} compared; varying: {', '.join(comparison.varying) or 'nothing'}. {PROTOCOL} Curves show the mean "
        "with a min-max band."
    )


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' * (n != 1)}"


# --- what the local runs say about W&B ---------------------------------------------------------------------


def recorded_wandb(runs: Sequence[RunRecord]) -> dict[str, Any]:
    """project, entity and group, where every run that went to W&B recorded the same value."""
    out: dict[str, Any] = {}
    records = [
        r.summary.extra["wandb"] for r in runs if isinstance(r.summary.extra.get("wandb"), dict) and r.summary.extra["wandb"].get("id")
    ]
    for field in ("project", "entity", "group"):
        values = {rec.get(field) for rec in records} - {None}
        if len(values) == 1:
            out[field] = values.pop()
    return out


def latest_sweep(cwd: Path) -> list[Path]:
    sweeps = sorted((p for p in cwd.glob("multirun/*/*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    return sweeps[-1:]


def default_out(dirs: Sequence[Path]) -> Path:
    """Beside the runs it compares (as the local report is), when there is one directory."""
    return dirs[0] / SPEC_FILE if len(dirs) == 1 and dirs[0].is_dir() else Path(SPEC_FILE)


if __name__ == "__main__":
    raise SystemExit(main())
