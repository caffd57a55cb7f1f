"""Figures of one run, drawn from its run directory (metrics.csv + summary.json) into ``plots/``.

LR plots follow the article's conventions: x = step, y = learning rate, a title naming the scheduler, a
grid, a legend, dashed red vertical lines at warm-up end and milestones, each kind labelled once.
lrexp adds a grey band where the LR has fallen below 1e-3 x its peak for good (training has stopped).

Figures are ``matplotlib.figure.Figure`` objects, never pyplot's global state: sweeps draw hundreds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lrexp.record import PLOTS_DIR, STALL_NOTABLE, STALL_RATIO, column, read_metrics, read_summary

MARKER_STYLE = dict(color="red", linestyle="--", linewidth=1.2)


def schedule_title(summary: Mapping[str, Any]) -> str:
    target = (summary.get("scheduler_target") or "").rsplit(".", 1)[-1]
    name = summary.get("scheduler") or target
    return f"{name} ({target})" if target and target != name else name


def draw_lr(
    ax: Axes,
    series: Mapping[str, tuple],
    markers: Sequence[Mapping[str, Any]] = (),
    title: str = "",
    stalled_from: Optional[int] = None,
    end_step: Optional[int] = None,
) -> None:
    """LR vs step on ``ax``: one line per series (label -> (steps, lrs)), the article's marker lines."""
    for label, (steps, lrs) in series.items():
        ax.plot(steps, lrs, label=label, linewidth=1.6)
    by_kind: Dict[str, List[int]] = {}
    for m in markers:
        by_kind.setdefault(m["label"], []).append(m["step"])
    for kind, steps in by_kind.items():
        label = f"{kind} (step {steps[0]})" if len(steps) == 1 else f"{kind}s ({', '.join(map(str, steps))})"
        for i, s in enumerate(steps):
            ax.axvline(s, label=label if i == 0 else "_nolegend_", **MARKER_STYLE)
    if stalled_from is not None and end_step is not None:
        ax.axvspan(stalled_from, end_step, color="grey", alpha=0.18, label=f"LR < {STALL_RATIO:g} x peak")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    if title:
        ax.set_title(title)
    ax.grid(True, alpha=0.4)
    ax.legend(loc="best", fontsize="small")


def _stall(summary: Mapping[str, Any]) -> Dict[str, Any]:
    """The grey band, when a notable share of the run was stalled."""
    if (summary.get("lr_stalled_fraction") or 0.0) > STALL_NOTABLE:
        return {"stalled_from": summary["lr_stalled_from_step"], "end_step": summary.get("steps_done")}
    return {}


def _lr_series(rows: Sequence[Mapping], summary: Mapping[str, Any]) -> Dict[str, tuple]:
    names = summary.get("lr_columns") or ["lr"]
    cols = names[1:] if len(names) > 1 else names  # with several groups, one line per group
    return {("learning rate" if c == "lr" else c): column(rows, c) for c in cols}


def _draw_losses(ax: Axes, rows: Sequence[Mapping]) -> None:
    ax.plot(*column(rows, "train_loss"), label="train loss", linewidth=1.0, alpha=0.8)
    steps, val = column(rows, "val_loss")
    if val:
        ax.plot(steps, val, label="validation loss", marker="o", markersize=3, linewidth=1.6)
    if all(v > 0 for v in column(rows, "train_loss")[1] + val):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(loc="best", fontsize="small")


def _draw_accuracy(ax: Axes, rows: Sequence[Mapping]) -> None:
    steps, acc = column(rows, "val_acc")
    ax.plot(steps, acc, label="validation accuracy", marker="o", markersize=3, color="tab:green", linewidth=1.6)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.grid(True, alpha=0.4)
    ax.legend(loc="best", fontsize="small")


def draw_run_plots(run_dir: Path, dpi: int = 110) -> List[Path]:
    """lr.png, loss.png, accuracy.png and overview.png (the three side by side) in ``run_dir/plots``."""
    rows, summary = read_metrics(run_dir), read_summary(run_dir)
    out = run_dir / PLOTS_DIR
    out.mkdir(exist_ok=True)
    title = schedule_title(summary)
    status = summary.get("status")
    suffix = "" if status == "completed" else f" [{status}]"
    lr_args = dict(series=_lr_series(rows, summary), markers=summary.get("lr_markers", []), **_stall(summary))
    has_acc = any(r.get("val_acc") is not None for r in rows)

    figures: Dict[str, Figure] = {}
    fig = figures["lr"] = Figure(figsize=(8, 4.5))
    draw_lr(fig.subplots(), title=f"{title}: learning rate{suffix}", **lr_args)
    fig = figures["loss"] = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    _draw_losses(ax, rows)
    ax.set_title(f"{title}: loss{suffix}")
    if has_acc:
        fig = figures["accuracy"] = Figure(figsize=(8, 4.5))
        ax = fig.subplots()
        _draw_accuracy(ax, rows)
        ax.set_title(f"{title}: validation accuracy{suffix}")

    panels = 3 if has_acc else 2
    fig = figures["overview"] = Figure(figsize=(6 * panels, 4.5))
    axes = fig.subplots(1, panels)
    draw_lr(axes[0], title="learning rate", **lr_args)
    _draw_losses(axes[1], rows)
    axes[1].set_title("loss")
    if has_acc:
        _draw_accuracy(axes[2], rows)
        axes[2].set_title("validation accuracy")
    fig.suptitle(f"{title}, seed {summary.get('seed')}{suffix}")

    paths = []
    for name, fig in figures.items():
        fig.tight_layout()
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=dpi)
    return paths
