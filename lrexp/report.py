"""The comparison report: which schedule won, by how much, with what spread.

    python -m lrexp.report DIR [DIR ...] [--out OUT] [--group-by KEY] [--smooth 0.6] [--spread std]

Reads sweep or run directories (lrexp.compare) and writes into OUT (default: the one DIR given):
``report.html`` (self-contained: images embedded, opens offline), ``report.md``, ``summary.csv`` (one
row per group, ranked), ``cells.csv`` (every group x setting, when a sweep also varies e.g. the LR) and
the figures in ``report/``. Written automatically into the sweep directory when a multirun ends
(lrexp.callbacks), and rebuilt any time with this command, e.g. after jobs ran on a cluster.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from lrexp.compare import Band, Cell, Comparison, band, compare, find_runs, fmt, headline, markdown_table, table_cells, table_header
from lrexp.plots import draw_lr
from lrexp.record import STALL_NOTABLE, STALL_RATIO, TRAIN_LOSS, Goal, Status

FIG_DIR = "report"


def write_report(
    paths: Sequence[Path],
    out: Path,
    group_by: str | None = None,
    smoothing: float = 0.0,
    spread: str = "minmax",
    title: str | None = None,
) -> Path:
    """Write the report of the runs under ``paths`` into ``out``; returns the path of report.html."""
    comparison = compare(find_runs(paths), group_by)
    out.mkdir(parents=True, exist_ok=True)
    (out / FIG_DIR).mkdir(exist_ok=True)
    figures = draw_figures(comparison, out / FIG_DIR, smoothing, spread)
    title = title or f"lrexp: {comparison.group_key} comparison ({len(comparison.runs)} runs)"
    write_csv(out / "summary.csv", comparison.table)
    if len(comparison.cells) > len(comparison.best):
        write_csv(out / "cells.csv", [cell_row(c, comparison) for c in comparison.cells])
    (out / "report.md").write_text(render_markdown(comparison, figures, title, out))
    (out / "report.html").write_text(render_html(comparison, figures, title, spread, smoothing, out))
    return out / "report.html"


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
    """The final validation loss per group: the mean (bar), every seed (dots), +-std (error bar)."""
    groups, loss = comparison.groups, comparison.loss
    column = loss.column("val")
    fig = Figure(figsize=(9, 0.55 * len(groups) + 1.6))
    ax = fig.subplots()
    for i, g in enumerate(groups):
        cell = comparison.best[g]
        mean, std = cell.stat(column)
        if mean is not None:
            ax.barh(i, mean, xerr=std, color=color[g], alpha=0.55, capsize=4)
        seeds = [v for v in (r.summary.final.get(column) for r in cell.completed()) if v is not None]
        ax.plot(seeds, [i] * len(seeds), "o", color="black", markersize=3.5)
        bad = len(cell.runs) - len(cell.completed())
        if bad:
            ax.annotate(f"{bad} diverged/failed", (0, i), xytext=(4, -3), textcoords="offset points", fontsize="small", color="red")
    ax.set_yticks(range(len(groups)), [f"{g}  ({comparison.best[g].label()})" if comparison.best[g].keys else g for g in groups])
    ax.invert_yaxis()
    better = "lower" if loss.goal is Goal.MIN else "higher"
    ax.set_xlabel(f"final {loss.title('val')} ({better} is better): mean, each seed, +-std")
    ax.set_title(f"ranking by {comparison.group_key}")
    ax.grid(True, axis="x", alpha=0.4)
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
    """The final validation loss against the peak LR, per group: how forgiving each schedule is."""
    fig = Figure(figsize=(9, 4.8))
    ax = fig.subplots()
    column = comparison.loss.column("val")
    for g in comparison.groups:
        cells = sorted((c for c in comparison.cells if c.group == g), key=lambda c: float(c.keys.get("optimizer.lr", "nan")))
        xs, ys, es, bad = [], [], [], []
        for c in cells:
            lr = float(c.keys["optimizer.lr"])
            mean, std = c.stat(column)
            if mean is None:
                bad.append(lr)
            else:
                xs.append(lr)
                ys.append(mean)
                es.append(std or 0.0)
        ax.errorbar(xs, ys, yerr=es, color=color[g], marker="o", capsize=3, label=g)
        if bad:
            top = max(ys) if ys else 1.0
            ax.plot(bad, [top] * len(bad), "x", color=color[g], markersize=9)
    ax.set_xscale("log")
    ax.set_xlabel("peak learning rate (optimizer.lr)")
    ax.set_ylabel(f"final {comparison.loss.title('val')}")
    ax.set_title("LR sensitivity: mean over seeds +-std (x = every seed diverged or failed)")
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(fontsize="small")
    return fig


# --- tables and text -------------------------------------------------------------------------------


def cell_row(cell: Cell, comparison: Comparison) -> dict[str, Any]:
    row: dict[str, Any] = {
        comparison.group_key: cell.group,
        **cell.keys,
        "runs": len(cell.runs),
        "completed": cell.count(Status.COMPLETED),
        "diverged": cell.count(Status.DIVERGED),
    }
    for metric in comparison.metrics:
        column = metric.column("val")
        row[f"final_{column}_mean"], row[f"final_{column}_std"] = cell.stat(column)
    return row


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


def notes(comparison: Comparison, base: Path) -> list[str]:
    out = []
    for run in comparison.runs:
        if run.status is Status.DIVERGED:
            out.append(f"{shown(run.dir, base)}: diverged at step {run.summary.diverged_at_step}")
        elif run.status is not Status.COMPLETED:
            out.append(f"{shown(run.dir, base)}: {run.status.value}" + (f" ({run.summary.error})" if run.summary.error else ""))
    for g, cell in comparison.best.items():
        frac = max((r.summary.lr_stalled_fraction or 0.0) for r in cell.runs)
        if frac > STALL_NOTABLE:
            out.append(
                f"{g}: the LR stays below {STALL_RATIO:g} x its peak for {100 * frac:.0f}% of the run: training effectively stopped early"
            )
    return out


def render_markdown(comparison: Comparison, figures: dict[str, Path], title: str, base: Path) -> str:
    key = comparison.group_key
    lines = [f"# {title}", "", headline(comparison), "", markdown_table(comparison)]
    lines += ["", f"Varying keys: {', '.join(comparison.varying) or 'none'}. Grouped by `{key}`; mean ± std over seeds.", ""]
    for name, path in figures.items():
        lines += [f"![{name}]({FIG_DIR}/{path.name})", ""]
    if notes(comparison, base):
        lines += ["## Notes", ""] + [f"- {n}" for n in notes(comparison, base)] + [""]
    return "\n".join(lines)


CSS = """
body { font-family: system-ui, -apple-system, Segoe UI, Roboto, sans-serif; margin: 0 auto; max-width: 1100px;
       padding: 1.2em 1.5em 3em; color: #1d2330; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
.headline { font-size: 1.1em; background: #eef5ee; border-left: 4px solid #2e7d32; padding: 0.7em 1em; }
table { border-collapse: collapse; width: 100%; font-size: 0.92em; margin: 1em 0; }
th, td { border-bottom: 1px solid #d8dce3; padding: 0.35em 0.6em; text-align: right; white-space: nowrap; }
th { background: #f3f5f8; } td:nth-child(2), td:nth-child(3), th:nth-child(2), th:nth-child(3) { text-align: left; }
tr.winner td { font-weight: 600; background: #f6fbf6; }
img { max-width: 100%; height: auto; display: block; margin: 0.8em 0 1.6em; }
.meta { color: #5a6270; font-size: 0.9em; } li { margin: 0.2em 0; } code { background: #f3f5f8; padding: 0 0.25em; }
"""


def render_html(comparison: Comparison, figures: dict[str, Path], title: str, spread: str, smoothing: float, base: Path) -> str:
    esc = html.escape
    key = comparison.group_key
    head = table_header(comparison)
    rows = "".join(
        f"<tr{' class=winner' if r['rank'] == 1 else ''}>" + "".join(f"<td>{esc(c)}</td>" for c in table_cells(r, comparison)) + "</tr>"
        for r in comparison.table
    )
    images = "".join(
        f'<figure><img alt="{esc(name)}" src="data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}"></figure>'
        for name, path in figures.items()
    )
    note_items = "".join(f"<li>{esc(n)}</li>" for n in notes(comparison, base))
    loss = comparison.loss.column("val")
    run_items = "".join(
        f"<tr><td>{esc(shown(r.dir, base))}</td><td>{esc(r.value(key))}</td><td>{esc(str(r.summary.seed))}</td>"
        f"<td>{esc(r.status.value)}</td><td>{fmt(r.summary.final.get(loss))}</td></tr>"
        for r in comparison.runs
    )
    band = "min-max" if spread == "minmax" else "±std"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}</style></head>
<body>
<h1>{esc(title)}</h1>
<p class="meta">Grouped by <code>{esc(key)}</code>; varying keys: {esc(", ".join(comparison.varying) or "none")}.
Numbers are mean ± std over seeds of completed runs; curves show the mean with a {band} band{", training loss EMA-smoothed " + format(smoothing, "g") if smoothing else ""}.</p>
<p class="headline" id="headline">{esc(headline(comparison))}</p>
<table id="summary"><thead><tr>{"".join(f"<th>{esc(h)}</th>" for h in head)}</tr></thead><tbody>{rows}</tbody></table>
{f'<h2>Notes</h2><ul id="notes">{note_items}</ul>' if note_items else ""}
<h2>Figures</h2>
{images}
<h2>Runs</h2>
<details><summary>{len(comparison.runs)} run directories</summary>
<table><thead><tr><th>directory</th><th>{esc(key)}</th><th>seed</th><th>status</th><th>final {esc(loss.replace("_", " "))}</th></tr></thead>
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
    a = p.parse_args(argv)
    try:
        if a.out is None and len(a.dirs) > 1:
            raise ValueError("--out is required with several directories")
        if not 0.0 <= a.smooth < 1.0:
            raise ValueError(f"--smooth={a.smooth}: must be in [0, 1)")
        runs = find_runs(a.dirs)
        if a.group_by and not any(r.value(a.group_by) for r in runs):
            raise ValueError(f"--group-by={a.group_by}: no run has this key (varying keys: {', '.join(compare(runs).varying) or 'none'})")
        path = write_report(a.dirs, a.out or a.dirs[0], a.group_by, a.smooth, a.spread, a.title)
    except (ValueError, FileNotFoundError) as e:
        print(f"lrexp.report: error: {e}", file=sys.stderr)
        return 2
    print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
