"""The comparison report: which schedule won on held-out data, by how much, with what confidence, and
whether the regime lets a ranking mean anything.

    python -m lrexp.report DIR [DIR ...] [--out OUT] [--group-by KEY] [--smooth 0.6] [--spread std]

Reads sweep or run directories (lrexp.compare) and writes into OUT (default: the one DIR given):
``report.html`` (self-contained: images embedded, opens offline), ``report.md``, ``summary.csv`` (one
row per group, ranked, with intervals, paired differences, Holm-corrected p-values and diagnostics),
``cells.csv`` (every group x setting, when a sweep also varies e.g. the LR) and the figures in
``report/``. Written automatically into the sweep directory when a multirun ends (lrexp.callbacks), and
rebuilt any time with this command, e.g. after jobs ran on a cluster.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lrexp import sequential
from lrexp.bands import Band, band
from lrexp.compare import Cell, Comparison, compare
from lrexp.diagnostics import Diagnosis, diagnose
from lrexp.errors import ConfigError
from lrexp.plots import draw_lr
from lrexp.protocol import PROTOCOL, SEQUENTIAL_PROTOCOL, Thresholds, recorded_thresholds
from lrexp.record import CELLS_CSV, REPORT_HTML, REPORT_MD, SUMMARY_CSV, TRAIN_LOSS, Goal, Status, finite_or_none
from lrexp.runs import find_runs, varying_keys
from lrexp.sections import Section, to_html, to_markdown
from lrexp.stats import LEVEL
from lrexp.tables import cell_row, result_row
from lrexp.verdict import fmt, fmt_num, headline, markdown_table, steps_text, table_cells, table_header

FIG_DIR = "report"


def write_report(
    paths: Sequence[Path],
    out: Path,
    group_by: str | None = None,
    smoothing: float = 0.0,
    spread: str = "minmax",
    title: str | None = None,
    thresholds: Thresholds | None = None,
) -> Path:
    """Write the report of the runs under ``paths`` into ``out``; returns the path of report.html.
    ``thresholds``: how to judge (default: what the runs recorded, lrexp.protocol)."""
    comparison = compare(find_runs(paths), group_by, thresholds)
    design = sequential.read_design(paths[0]) if len(paths) == 1 and group_by in (None, comparison.group_key) else None
    replayed = None
    if design is not None:  # an adaptive sweep: its design's claims (lrexp.sequential), and what the design did
        comparison, replayed = sequential.judged(comparison, design, sequential.planned_cells(paths[0]))
    diagnosis = diagnose(comparison)
    out.mkdir(parents=True, exist_ok=True)
    (out / FIG_DIR).mkdir(exist_ok=True)
    figures = draw_figures(comparison, out / FIG_DIR, smoothing, spread)
    title = title or f"lrexp: {comparison.group_key} comparison ({len(comparison.runs)} runs)"
    write_csv(out / SUMMARY_CSV, summary_rows(comparison, diagnosis))
    if len(comparison.cells) > len(comparison.results):
        write_csv(out / CELLS_CSV, [cell_row(comparison, c) for c in comparison.cells])
    extra = ([sequential.section(replayed, comparison)] if replayed is not None else []) + sections(comparison, paths, out / FIG_DIR)
    (out / REPORT_MD).write_text(render_markdown(comparison, diagnosis, figures, title, out, extra))
    (out / REPORT_HTML).write_text(render_html(comparison, diagnosis, figures, title, spread, smoothing, out, extra))
    return out / REPORT_HTML


def sections(c: Comparison, paths: Sequence[Path], fig_dir: Path) -> list[Section]:
    """What the report adds when there is more to say: loss vs budget when runs branched from a trunk
    (lrexp.cooldowns), the tuning budget of a sweep with an LR grid (lrexp.budget), and the schedule-loss
    laws' prediction when lrexp.predict has written one into a directory the report reads."""
    from lrexp import budget, cooldowns, prediction

    out = []
    branched = cooldowns.read_budgets(c.runs)
    if branched is not None:
        out.append(cooldowns.section(branched, cooldowns.figure(branched, fig_dir / "budgets.png")))
    if budget.has_grid(c):
        curves = budget.budget(c)
        metric = c.loss.label or c.loss.name
        out.append(budget.section(curves, metric, budget.budget_figure(curves, metric, fig_dir / "budget.png", colors(c))))
    for path in paths:
        found = prediction.read_prediction(path)
        if found is not None:
            out.append(prediction.section(found, path / prediction.PREDICT_DIR))
    return out


def summary_rows(c: Comparison, diagnosis: Diagnosis) -> list[dict[str, Any]]:
    """summary.csv: every ranked group's row (lrexp.tables.result_row) with its diagnostics' numbers."""
    rows = []
    for r in c.results:
        d = diagnosis.of(r.group)
        rows.append(
            result_row(c, r)
            | {
                "val_rise": finite_or_none(d.rise),
                "late_drop": finite_or_none(d.late_drop),
                "late_lr": finite_or_none(d.late_lr),
                "flags": ";".join(f.value for f in d.flags),
            }
        )
    return rows


# --- figures ---------------------------------------------------------------------------------------


def colors(comparison: Comparison) -> dict[str, str]:
    palette = [f"C{i}" for i in range(10)]
    return {g: palette[i % 10] for i, g in enumerate(comparison.groups)}


def draw_figures(comparison: Comparison, fig_dir: Path, smoothing: float, spread: str) -> dict[str, Path]:
    """Every figure the report shows, as PNG files; name -> path, in reading order."""
    color = colors(comparison)
    figs: dict[str, Figure] = {"ranking": ranking_figure(comparison, color)}

    fig = Figure(figsize=(9, 4.8))
    series = {g: _first_run_lr(cell) for g, cell in comparison.best.items()}
    ax = fig.subplots()
    draw_lr(ax, {g: s for g, s in series.items() if s[0]}, title=f"learning rate by {comparison.group_key}")
    for line, g in zip(ax.get_lines(), [g for g, s in series.items() if s[0]]):
        line.set_color(color[g])
    ax.legend(fontsize="small")
    figs["lr"] = fig

    curves = [(TRAIN_LOSS.name, TRAIN_LOSS.label, TRAIN_LOSS.scale == "log", smoothing)]
    curves += [(m.column("val"), m.title("val"), m.scale == "log", 0.0) for m in comparison.metrics]
    for column, label, log, smooth in curves:
        bands = {g: band(cell.runs, column, spread, smooth) for g, cell in comparison.best.items()}
        if any(b.steps for b in bands.values()):
            figs[column] = band_figure(bands, color, label, log, spread, smooth)

    if "optimizer.lr" in comparison.varying and comparison.group_key != "optimizer.lr":
        figs["sensitivity"] = sensitivity_figure(comparison, color)

    paths = {}
    for name, fig in figs.items():
        fig.tight_layout()
        paths[name] = fig_dir / f"{name}.png"
        fig.savefig(paths[name], dpi=110)
    return paths


def _first_run_lr(cell: Cell) -> tuple:
    for r in cell.runs:
        pairs = [(row["step"], row["lr"]) for row in r.rows if row.get("lr") is not None]
        if pairs:
            return tuple(zip(*pairs))
    return ((), ())


def ranking_figure(comparison: Comparison, color: dict[str, str]) -> Figure:
    """Left: each group's final loss on the reported split, mean with its 95% interval and every seed.
    Right: the paired difference from the best group with its 95% interval (zero = no difference)."""
    results, loss, split = comparison.results, comparison.loss, comparison.split
    fig = Figure(figsize=(10, 0.55 * len(results) + 1.8))
    left, right = fig.subplots(1, 2, sharey=True, gridspec_kw={"width_ratios": [3, 2]})
    for i, r in enumerate(results):
        if r.mean is not None:
            has_ci = math.isfinite(r.loss.low)
            xerr = [[r.mean - r.loss.low], [r.loss.high - r.mean]] if has_ci else None
            left.errorbar(r.mean, i, xerr=xerr, fmt="D", color=color[r.group], capsize=5, markersize=7)
        seeds = list(r.values.values())
        left.plot(seeds, [i] * len(seeds), "o", color="black", markersize=3, alpha=0.7)
        bad = len(r.cell.runs) - len(r.cell.completed())
        if bad:
            left.annotate(f"{bad} diverged/failed", (1, i), xycoords=("axes fraction", "data"), xytext=(-4, 4),
                          textcoords="offset points", fontsize="small", color="red", ha="right")  # fmt: skip
        d = r.diff
        if d is not None and math.isfinite(d.mean):
            xerr = [[d.mean - d.low], [d.high - d.mean]] if math.isfinite(d.low) else None
            right.errorbar(d.mean, i, xerr=xerr, fmt="o", color=color[r.group], capsize=5)
    right.axvline(0, color="grey", linewidth=1)
    labels = [f"{r.group}  ({r.cell.label()})" if r.cell.keys else r.group for r in results]
    left.set_yticks(range(len(results)), labels)
    left.invert_yaxis()
    better = "lower" if loss.goal is Goal.MIN else "higher"
    left.set_xlabel(f"final {loss.title(split)} ({better} is better)")
    left.set_title(f"mean with its {LEVEL:.0%} interval; dots: each seed")
    right.set_xlabel(f"difference from the best ({'+' if loss.goal is Goal.MIN else '-'} = worse)")
    right.set_title(f"{'paired' if comparison.paired else 'unpaired'}, {LEVEL:.0%} interval")
    for ax in (left, right):
        ax.grid(True, axis="x", alpha=0.4)
    fig.suptitle(f"ranking by {comparison.group_key} on the {'held-out test' if split == 'test' else 'validation'} split")
    return fig


def band_figure(bands: dict[str, Band], color: dict[str, str], label: str, log: bool, spread: str, smoothing: float) -> Figure:
    fig = Figure(figsize=(9, 4.8))
    ax = fig.subplots()
    for g, b in bands.items():
        if not b.steps:
            continue
        ax.plot(b.steps, b.mean, color=color[g], label=g, linewidth=1.5)
        ax.fill_between(b.steps, b.low, b.high, color=color[g], alpha=0.18, linewidth=0)
    if log and all(v > 0 for b in bands.values() for v in b.low):
        ax.set_yscale("log")
    what = "min-max" if spread == "minmax" else "+-std"
    smooth = f", EMA smoothing {smoothing:g}" if smoothing else ""
    ax.set_title(f"{label}: mean over seeds, band = {what}{smooth}")
    ax.set_xlabel("step")
    ax.set_ylabel(label)
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(fontsize="small")
    return fig


def sensitivity_figure(comparison: Comparison, color: dict[str, str]) -> Figure:
    """The final validation loss against the peak LR, per group: how forgiving each schedule is, and where
    each one's best LR (chosen on validation) sits in the grid."""
    fig = Figure(figsize=(9, 4.8))
    ax = fig.subplots()
    column = comparison.loss.column("val")
    for g in comparison.groups:
        cells = sorted((c for c in comparison.cells if c.group == g and c.lr is not None), key=lambda c: c.lr or 0.0)
        xs, ys, es, bad = [], [], [], []
        for c in cells:
            lr = c.lr or 0.0
            stat = c.stat(column)
            if stat.mean is None:
                bad.append(lr)
            else:
                xs.append(lr)
                ys.append(stat.mean)
                es.append(stat.std or 0.0)
        ax.errorbar(xs, ys, yerr=es, color=color[g], marker="o", capsize=3, label=g)
        if bad:
            top = max(ys) if ys else 1.0
            ax.plot(bad, [top] * len(bad), "x", color=color[g], markersize=9)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (optimizer.lr)")
    ax.set_ylabel(f"final {comparison.loss.title('val')}")
    ax.set_title("LR sensitivity on validation: mean over seeds +-std (x = every seed diverged or failed)")
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(fontsize="small")
    return fig


# --- tables and text -------------------------------------------------------------------------------


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, list(rows[0]) if rows else [])
        writer.writeheader()
        writer.writerows(rows)


def shown(path: Path, base: Path) -> str:
    """A run directory as the report names it: relative to the report, so the report can move with it."""
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path.resolve())


def notes(comparison: Comparison, diagnosis: Diagnosis, base: Path) -> list[str]:
    """The diagnostics with the numbers behind them, steps to target, then, cell by cell, the runs that
    did not complete."""
    out = [f.text for f in diagnosis.flags]
    if comparison.target is not None:
        reached = ", ".join(f"{r.group} {steps_text(r)}" for r in comparison.ranked)
        how = (
            "report.target"
            if comparison.thresholds.target is not None
            else (f"the reference's median final validation {comparison.loss.label} made {comparison.thresholds.target_relax:.0%} worse")
        )
        out.append(
            f"Steps to target: the first evaluated step whose validation {comparison.loss.label} reaches {fmt_num(comparison.target)} "
            f"({how}); median over seeds, a run that never reaches it counting as never (AlgoPerf's rule): {reached}."
        )
    for cell in comparison.cells:
        where = cell.group + (f" at {cell.label()}" if cell.keys else "")
        diverged = [r for r in cell.runs if r.status is Status.DIVERGED]
        if diverged:
            steps = ", ".join(str(r.summary.diverged_at_step) for r in diverged)
            out.append(f"{where}: {len(diverged)} of {len(cell.runs)} runs diverged (at step {steps})")
        for r in cell.runs:
            if not r.status.has_result:
                out.append(f"{where}: {shown(r.dir, base)} {r.status.value}" + (f" ({r.summary.error})" if r.summary.error else ""))
    return out


def robustness_lines(comparison: Comparison) -> list[tuple[str, str, str]]:
    """(peak LR, ranking at that LR, Kendall's tau with the tuned ranking), the tuned ranking first."""
    rb = comparison.robustness
    if rb is None:
        return []
    lines = [("each at its best (tuned)", " > ".join(rb.tuned), "1")]
    lines += [(lr, " > ".join(ranking) or "-", "n/a" if math.isnan(tau) else f"{tau:+.2f}") for lr, ranking, tau in rb.per_lr]
    return lines


ROBUSTNESS_INTRO = (
    "The ranking at each single peak LR, against the tuned one (every {key} at its own best LR). "
    "Kendall's tau near 1: the answer does not depend on how the LR is chosen; near 0 or negative: it does."
)


def method_text(comparison: Comparison) -> str:
    where = "" if comparison.split == "test" else " No run recorded a test split: the table reports validation."
    protocol = f"{SEQUENTIAL_PROTOCOL} Design: {comparison.design}." if comparison.design else PROTOCOL
    return (
        f"{protocol}{where} Margin: {comparison.thresholds.margin:g} x the reference's loss = {fmt_num(comparison.margin_abs)}. "
        f"Varying keys: {', '.join(comparison.varying) or 'none'}."
    )


def render_markdown(
    comparison: Comparison, diagnosis: Diagnosis, figures: dict[str, Path], title: str, base: Path, extra: Sequence[Section] = ()
) -> str:
    lines = [f"# {title}", "", headline(comparison, diagnosis), "", markdown_table(comparison, diagnosis), "", method_text(comparison), ""]
    if notes(comparison, diagnosis, base):
        lines += ["## Notes", ""] + [f"- {n}" for n in notes(comparison, diagnosis, base)] + [""]
    if comparison.robustness:
        lines += ["## Rank robustness", "", ROBUSTNESS_INTRO.format(key=comparison.group_key), ""]
        lines += ["| peak LR | ranking | Kendall's tau |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in robustness_lines(comparison)] + [""]
    lines += [to_markdown(section, base=base) for section in extra]
    lines += ["## Figures", ""]
    for name, path in figures.items():
        lines += [f"![{name}]({FIG_DIR}/{path.name})", ""]
    return "\n".join(lines)


CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 0 auto; max-width: 1180px;
       padding: 1.2em 1.5em 3em; color: #1d2330; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
.headline { font-size: 1.05em; background: #eef5ee; border-left: 4px solid #2e7d32; padding: 0.7em 1em; }
.headline.caution { background: #fff6e5; border-left-color: #e08a00; }
table { border-collapse: collapse; width: 100%; font-size: 0.88em; margin: 1em 0; }
th, td { border-bottom: 1px solid #d8dce3; padding: 0.35em 0.5em; text-align: right; }
th { background: #f3f5f8; } td:nth-child(2), td:nth-child(3), th:nth-child(2), th:nth-child(3) { text-align: left; }
td:last-child, th:last-child { text-align: left; }
tr.winner td { font-weight: 600; background: #f6fbf6; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0 1.6em; }
.meta { color: #5a6270; font-size: 0.9em; } li { margin: 0.3em 0; } code { background: #f3f5f8; padding: 0 0.25em; }
"""


def render_html(
    comparison: Comparison,
    diagnosis: Diagnosis,
    figures: dict[str, Path],
    title: str,
    spread: str,
    smoothing: float,
    base: Path,
    extra: Sequence[Section] = (),
) -> str:
    esc = html.escape
    key = comparison.group_key
    head = table_header(comparison)
    body = "".join(
        f"<tr{' class=winner' if r.rank == 1 else ''}>"
        + "".join(f"<td>{esc(c)}</td>" for c in table_cells(comparison, r, diagnosis))
        + "</tr>"
        for r in comparison.results
    )
    images = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"></figure>'
        for name, path in figures.items()
    )
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes(comparison, diagnosis, base))
    robust = ""
    if comparison.robustness:
        lines = "".join(f"<tr><td>{esc(a)}</td><td>{esc(b)}</td><td>{esc(c)}</td></tr>" for a, b, c in robustness_lines(comparison))
        robust = (
            f'<h2>Rank robustness</h2><p>{esc(ROBUSTNESS_INTRO.format(key=key))}</p><table id="robustness">'
            f"<thead><tr><th>peak LR</th><th>ranking</th><th>Kendall's tau</th></tr></thead><tbody>{lines}</tbody></table>"
        )
    column = comparison.loss.column(comparison.split)
    run_items = "".join(
        f"<tr><td>{esc(shown(r.dir, base))}</td><td>{esc(r.value(key))}</td><td>{esc(str(r.summary.seed))}</td>"
        f"<td>{esc(r.status.value)}</td><td>{fmt(r.summary.final.get(column))}</td></tr>"
        for r in comparison.runs
    )
    caution = " caution" if diagnosis.regime or comparison.winner is None else ""
    band_kind = "min-max" if spread == "minmax" else "±std"
    smooth = f", training loss EMA-smoothed {smoothing:g}" if smoothing else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body>
<h1>{esc(title)}</h1>
<p class="headline{caution}" id="headline">{esc(headline(comparison, diagnosis))}</p>
<table id="summary"><thead><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr></thead><tbody>{body}</tbody></table>
<p class="meta">{esc(method_text(comparison))} Curves show the mean with a {band_kind} band{smooth}.</p>
{f'<h2>Notes</h2><ul id="notes">{note_items}</ul>' if note_items else ""}
{robust}
{"".join(to_html(section) for section in extra)}
<h2>Figures</h2>
{images}
<h2>Runs</h2>
<details><summary>{len(comparison.runs)} run directories</summary>
<table><thead><tr><th>directory</th><th>{esc(key)}</th><th>seed</th><th>status</th><th>final {esc(column.replace("_", " "))}</th></tr></thead>
<tbody>{run_items}</tbody></table></details>
</body></html>
"""


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrexp.report", description="Build the comparison report of sweep or run directories.")
    p.add_argument("dirs", nargs="+", type=Path, help="sweep or run directories (searched recursively for runs)")
    p.add_argument("--out", type=Path, help="where to write the report (default: the directory given, if only one)")
    p.add_argument("--group-by", help="the key to compare (default: scheduler, or whatever varies)")
    p.add_argument("--smooth", type=float, default=0.0, help="EMA smoothing of the training loss, 0 <= x < 1")
    p.add_argument("--spread", choices=["minmax", "std"], default="minmax", help="what the band around the mean shows")
    p.add_argument("--title")
    p.add_argument("--margin", type=float, help="report.margin: a gap below this fraction of the reference's loss is negligible")
    p.add_argument("--target", type=float, help="report.target: the validation loss steps-to-target counts to")
    p.add_argument("--target-relax", type=float, help="report.target_relax: the derived target, this fraction worse than the best")
    a = p.parse_args(argv)
    try:
        if a.out is None and len(a.dirs) > 1:
            raise ValueError("--out is required with several directories")
        if not 0.0 <= a.smooth < 1.0:
            raise ValueError(f"--smooth={a.smooth}: must be in [0, 1)")
        runs = find_runs(a.dirs)
        if a.group_by and not any(r.value(a.group_by) for r in runs):
            raise ValueError(f"--group-by={a.group_by}: no run has this key (varying keys: {', '.join(varying_keys(runs)) or 'none'})")
        thresholds = chosen_thresholds([r.dir for r in runs], a.margin, a.target, a.target_relax)
        path = write_report(a.dirs, a.out or a.dirs[0], a.group_by, a.smooth, a.spread, a.title, thresholds)
    except (ValueError, FileNotFoundError) as e:  # ConfigError is a ValueError: a bad --margin, say
        print(f"lrexp.report: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


def chosen_thresholds(run_dirs: Sequence[Path], margin: float | None, target: float | None, relax: float | None) -> Thresholds:
    """The report settings the runs recorded, with whatever the command line sets instead (runs that
    recorded different ones need the command line to choose)."""
    given = {"margin": margin, "target": target, "target_relax": relax}
    try:
        recorded: Thresholds | None = recorded_thresholds(run_dirs)
    except ConfigError:
        if margin is None or relax is None:
            raise
        recorded = None
    if recorded is not None:
        given = {k: getattr(recorded, k) if v is None else v for k, v in given.items()}
    return Thresholds.of(given)


if __name__ == "__main__":
    sys.exit(main())
