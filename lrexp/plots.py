"""Figures of one run, drawn from its run directory (metrics.csv + summary.json) into ``plots/``.

LR plots follow the article's conventions: x = step, y = learning rate, a title naming the scheduler, a
grid, a legend, dashed red vertical lines at warm-up end and milestones, each kind labelled once.
lrexp adds a grey band where the LR has fallen below 1e-3 x its peak for good (training has stopped).

Figures are ``matplotlib.figure.Figure`` objects, never pyplot's global state: sweeps draw hundreds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lrexp.record import PLOTS_DIR, STALL_NOTABLE, STALL_RATIO, TRAIN_LOSS, Metric, Row, Status, Summary, column, read_metrics, read_summary

MARKER_STYLE: dict[str, Any] = dict(color="red", linestyle="--", linewidth=1.2)


def schedule_title(name: str | None, target: str | None) -> str:
    """ "cosine (CosineAnnealingLR)": the option name and the callable it points at."""
    target = (target or "").rsplit(".", 1)[-1]
    name = name or target
    return f"{name} ({target})" if target and target != name else name


def draw_lr(
    ax: Axes,
    series: Mapping[str, tuple],
    markers: Sequence[Mapping[str, Any]] = (),
    title: str = "",
    stalled_from: int | None = None,
    end_step: int | None = None,
) -> None:
    """LR vs step on ``ax``: one line per series (label -> (steps, lrs)), the article's marker lines."""
    for label, (steps, lrs) in series.items():
        ax.plot(steps, lrs, label=label, linewidth=1.6)
    by_kind: dict[str, list[int]] = {}
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


def _stall(summary: Summary) -> dict[str, Any]:
    """The grey band, when a notable share of the run was stalled."""
    if (summary.lr_stalled_fraction or 0.0) > STALL_NOTABLE:
        return {"stalled_from": summary.lr_stalled_from_step, "end_step": summary.steps_done}
    return {}


def _lr_series(rows: Sequence[Row], summary: Summary) -> dict[str, tuple]:
    names = summary.lr_columns or ["lr"]
    cols = names[1:] if len(names) > 1 else names  # with several groups, one line per group
    return {("learning rate" if c == "lr" else c): column(rows, c) for c in cols}


def _draw_losses(ax: Axes, rows: Sequence[Row], loss: Metric) -> None:
    """Training loss at every row, and the task's loss on the validation split where evaluated."""
    train = column(rows, TRAIN_LOSS.name)
    ax.plot(*train, label=TRAIN_LOSS.label, linewidth=1.0, alpha=0.8)
    steps, val = column(rows, loss.column("val"))
    if val:
        ax.plot(steps, val, label=loss.title("val"), marker="o", markersize=3, linewidth=1.6)
    if loss.scale == "log" and all(v > 0 for v in train[1] + val):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(loss.label)
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(loc="best", fontsize="small")


def _draw_metric(ax: Axes, rows: Sequence[Row], metric: Metric) -> None:
    steps, values = column(rows, metric.column("val"))
    ax.plot(steps, values, label=metric.title("val"), marker="o", markersize=3, color="tab:green", linewidth=1.6)
    if metric.scale == "log" and all(v > 0 for v in values):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(metric.label)
    ax.grid(True, which="both", alpha=0.4)
    ax.legend(loc="best", fontsize="small")


def _draw_settings(axes: Sequence[Axes], rows: Sequence[Row], summary: Summary) -> None:
    """Momentum (Adam's beta1) and weight decay per step, one line per column (per group)."""
    for ax, setting, label in zip(axes, ("momentum", "weight_decay"), ("momentum (Adam: beta1)", "weight decay")):
        columns = [c for c in summary.setting_columns if c.startswith(setting)]
        for c in columns[1:] if len(columns) > 1 else columns:  # with several groups, one line per group
            ax.plot(*column(rows, c), label=c, linewidth=1.4)
        ax.set_xlabel("step")
        ax.set_ylabel(label)
        ax.grid(True, alpha=0.4)
        if columns:
            ax.legend(loc="best", fontsize="small")


def draw_run_plots(run_dir: Path, dpi: int = 110) -> list[Path]:
    """In ``run_dir/plots``: lr.png, loss.png (training and validation loss), one figure per other metric
    the task declares (val_acc.png, ...), optimizer.png (momentum and weight decay as applied), and
    overview.png with the LR, the loss and the metrics side by side."""
    rows, summary = read_metrics(run_dir), read_summary(run_dir)
    out = run_dir / PLOTS_DIR
    out.mkdir(exist_ok=True)
    title = schedule_title(summary.scheduler, summary.scheduler_target)
    suffix = "" if summary.status is Status.COMPLETED else f" [{summary.status.value}]"
    lr_args: dict[str, Any] = dict(series=_lr_series(rows, summary), markers=summary.lr_markers, **_stall(summary))
    loss, *others = summary.metrics or [Metric("loss", label="loss", scale="log")]
    others = [m for m in others if any(r.get(m.column("val")) is not None for r in rows)]

    figures: dict[str, Figure] = {}
    fig = figures["lr"] = Figure(figsize=(8, 4.5))
    draw_lr(fig.subplots(), title=f"{title}: learning rate{suffix}", **lr_args)
    fig = figures["loss"] = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    _draw_losses(ax, rows, loss)
    ax.set_title(f"{title}: loss{suffix}")
    for metric in others:
        fig = figures[metric.column("val")] = Figure(figsize=(8, 4.5))
        ax = fig.subplots()
        _draw_metric(ax, rows, metric)
        ax.set_title(f"{title}: {metric.title('val')}{suffix}")

    if summary.setting_columns:
        fig = figures["optimizer"] = Figure(figsize=(8, 6))
        _draw_settings(fig.subplots(2, 1, sharex=True), rows, summary)
        fig.suptitle(f"{title}: momentum and weight decay{suffix}")

    panels = 2 + len(others)
    fig = figures["overview"] = Figure(figsize=(6 * panels, 4.5))
    axes = fig.subplots(1, panels)
    draw_lr(axes[0], title="learning rate", **lr_args)
    _draw_losses(axes[1], rows, loss)
    axes[1].set_title("loss")
    for ax, metric in zip(axes[2:], others):
        _draw_metric(ax, rows, metric)
        ax.set_title(metric.title("val"))
    fig.suptitle(f"{title}, seed {summary.seed}{suffix}")

    paths = []
    for name, fig in figures.items():
        fig.tight_layout()
        paths.append(out / f"{name}.png")
        fig.savefig(paths[-1], dpi=dpi)
    return paths
