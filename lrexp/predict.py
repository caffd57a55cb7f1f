"""``python -m lrexp.predict DIR``: fit schedule-loss laws to a few runs, predict every schedule.

    python -m lrexp.predict DIR [--fit constant,cosine_full,two_stage] [--laws mpl,momentum] [--out OUT]

DIR holds runs that differ in their schedule and seed only (a sweep such as ``-m scheduler=...
seed=...``). The laws of lrexp.laws are fitted to the mean validation-loss curve of the ``--fit``
schedules; each other schedule's curve is predicted from its LR sequence alone and set against its
measured one (mean and worst relative error over the points from 10% of the run on, the final point's
error, and the seeds' own spread there, which is what an error must be read against). Every schedule
in conf/scheduler/ that runs with the same optimizer is predicted too, run or not, and ranked by its
predicted final loss; so is the law-optimal schedule, the monotone schedule that minimises the fitted
multi-power law's final loss, written as a config to run:

    python -m lrexp ... 'hydra.searchpath=[file://OUT/conf]' scheduler=law_optimal

Writes into OUT (default DIR/predict): prediction.json, prediction.md, curves.csv, the figures
prediction.png and ranking.png, conf/scheduler/law_optimal.yaml; then rebuilds DIR's comparison report,
which shows them (lrexp.report). The LR of every step is replayed from each run's own config (the real
scheduler, stepped as in training: lrexp.build.lr_sequence) and checked against the LRs the run logged.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from lrexp.errors import ConfigError
from lrexp.laws import FIT_FROM, LAWS, Curve, Law, OptimalSchedule, accuracy, fit, optimal_schedule
from lrexp.prediction import OPTIMAL, PREDICT_DIR, SUMMARY, Measured, Prediction, section
from lrexp.record import Status, is_neutral
from lrexp.runs import RunRecord, find_runs, varying_keys
from lrexp.sections import to_markdown

FIT_DEFAULT = ("constant", "cosine_full", "two_stage")


# --- runs -> curves ----------------------------------------------------------------------------------


def run_config(run: RunRecord) -> DictConfig:
    path = run.dir / ".hydra" / "config.yaml"
    if not path.is_file():
        raise ConfigError("DIR", str(run.dir), "holds a run without .hydra/config.yaml: its LR sequence cannot be replayed")
    import lrexp.config  # noqa: F401 - the ${steps:F} and ${lr:F} resolvers

    cfg = OmegaConf.load(path)
    assert isinstance(cfg, DictConfig)
    return cfg


def lr_sequence_of(cfg: DictConfig) -> list[float] | None:
    from lrexp.build import lr_sequence
    from lrexp.schedule_spec import ScheduleSpec

    return lr_sequence(ScheduleSpec.of(cfg.scheduler), cfg.optimizer, int(cfg.run.steps))


def curves_of(runs: Sequence[RunRecord]) -> dict[str, Curve]:
    """Each schedule's validation-loss curve, averaged over its completed seeds, with its LR sequence
    replayed from its config and checked against the LRs it logged."""
    by_schedule: dict[str, list[RunRecord]] = defaultdict(list)
    for r in runs:
        if r.status is Status.COMPLETED:
            by_schedule[r.value("scheduler")].append(r)
    loss = runs[0].summary.loss
    column = loss.column("val") if loss else "val_loss"
    curves = {}
    for schedule, members in by_schedule.items():
        lrs = lr_sequence_of(run_config(members[0]))
        if lrs is None:
            continue  # metric-driven: its LRs depend on what it saw, and no law takes that in
        for r in members:
            logged = {row["step"]: row["lr"] for row in r.rows if row.get("lr") is not None}
            wrong = next(
                (s for s, lr in logged.items() if s < len(lrs) and not math.isclose(lr, lrs[s], rel_tol=1e-9, abs_tol=1e-15)), None
            )
            if wrong is not None:
                raise ConfigError(
                    "DIR", str(r.dir), f"its logged LR at step {wrong} ({logged[wrong]:g}) is not its config's ({lrs[wrong]:g})"
                )
        points = [[(row["step"], row[column]) for row in r.rows if row.get(column) is not None] for r in members]
        steps = sorted(set.intersection(*(set(s for s, _ in p) for p in points)))
        values = np.array([[dict(p)[s] for s in steps] for p in points])
        curves[schedule] = Curve(
            schedule,
            np.array(lrs),
            np.array(steps),
            values.mean(axis=0),
            values.std(axis=0, ddof=1) if len(members) > 1 else np.zeros(len(steps)),
            len(members),
        )
    return curves


# --- configured schedules ----------------------------------------------------------------------------


def configured_schedules() -> list[str]:
    from importlib.resources import files

    return sorted(p.name[:-5] for p in files("lrexp.conf").joinpath("scheduler").iterdir() if p.name.endswith(".yaml"))


def common_overrides(run: RunRecord) -> list[str]:
    """The run's command-line overrides as Hydra saved them (``+sweep=...`` keeps its ``+``), without its
    schedule, its seed and what changes no number."""
    import yaml

    keep = []
    for item in map(str, yaml.safe_load((run.dir / ".hydra" / "overrides.yaml").read_text()) or []):
        key = item.partition("=")[0].lstrip("+~")
        if key not in ("scheduler", "seed") and not key.startswith("scheduler.") and not is_neutral(key):
            keep.append(item)
    return keep


def schedule_lrs(names: Sequence[str], base: RunRecord) -> tuple[dict[str, list[float]], dict[str, str]]:
    """The LR sequence every named schedule would apply in a run like ``base`` (same task, optimizer,
    length), composed as ``python -m lrexp`` would compose it; and why the others cannot be predicted."""
    from hydra import compose, initialize_config_module

    import lrexp.config  # noqa: F401

    optimizer = run_config(base).optimizer._target_
    out, skipped = {}, {}
    with initialize_config_module("lrexp.conf", version_base="1.3"):
        for name in names:
            cfg = compose("config", overrides=[*common_overrides(base), f"scheduler={name}"])
            if cfg.optimizer._target_ != optimizer:
                skipped[name] = f"it brings its own optimizer ({cfg.optimizer._target_}): the laws describe one optimizer's curves"
                continue
            lrs = lr_sequence_of(cfg)
            if lrs is None:
                skipped[name] = "metric-driven: its LRs depend on the losses it is shown"
                continue
            out[name] = lrs
    return out, skipped


# --- the prediction ----------------------------------------------------------------------------------


def predict(sweep: Path, fit_names: Sequence[str], law_names: Sequence[str]) -> tuple[Prediction, dict[str, Curve], dict[str, Law], dict]:
    runs = find_runs([sweep])
    other = [k for k in varying_keys(runs) if k not in ("scheduler", "seed")]
    if other:
        raise ConfigError(
            "DIR", str(sweep), f"its runs differ in {', '.join(other)} besides the schedule and the seed: give the runs of one setting"
        )
    curves = curves_of(runs)
    missing = [n for n in fit_names if n not in curves]
    if missing:
        raise ConfigError(
            "--fit", ",".join(fit_names), f"{', '.join(missing)} not among the sweep's completed schedules ({', '.join(curves)})"
        )
    laws = {name: fit(name, [curves[n] for n in fit_names]) for name in law_names}
    measured = []
    for schedule, curve in curves.items():
        measured.append(
            Measured(
                schedule,
                schedule in fit_names,
                curve.seeds,
                {name: accuracy(law, curve) for name, law in laws.items()},
                float(curve.loss[-1]),
                {name: float(law.predict(curve.lrs, curve.steps[-1:])[0]) for name, law in laws.items()},
            )
        )
    base = next(r for r in runs if r.status is Status.COMPLETED)
    lrs, skipped = schedule_lrs(configured_schedules(), base)
    steps = len(next(iter(curves.values())).lrs)
    predicted = {
        name: {law: float(laws[law].predict(np.array(seq), np.array([steps - 1]))[0]) for law in laws} for name, seq in lrs.items()
    }
    peak = float(max(max(c.lrs) for c in curves.values()))
    optimum = optimal_schedule(laws["mpl"], peak, steps) if "mpl" in laws else None
    prediction = Prediction(
        str(sweep),
        list(fit_names),
        {
            name: {"label": LAWS[name].label, "parameters": law.as_dict(), "scale": law.scale, "fit_r2": law.fit_r2}
            for name, law in laws.items()
        },
        measured,
        predicted,
        skipped,
        {"knots": optimum.knots, "factors": optimum.factors, "predicted_final": optimum.predicted_final} if optimum else {},
        steps,
        peak,
    )
    return prediction, curves, laws, {"optimum": optimum, "lrs": lrs, "base": base}


def optimal_yaml(optimum: OptimalSchedule, steps: int, sweep: Path) -> str:
    """The law-optimal schedule as a scheduler config: torch's LambdaLR of a piecewise-linear factor,
    its knots as fractions of the run (so it follows run.steps)."""
    knots = ", ".join(f"'${{steps:{k}/{steps}}}'" if k else "0" for k in optimum.knots)  # round(k / steps x steps) = k
    factors = ", ".join(repr(f) for f in optimum.factors)  # exactly the factors prediction.json holds
    return (
        f"# The monotone schedule that minimises the final loss of the multi-power law fitted to {sweep}\n"
        f"# (python -m lrexp.predict): the peak LR times a factor linear between the knots. Predicted final\n"
        f"# validation loss {optimum.predicted_final:.5g} at {steps} steps; run it to see how far to trust that:\n"
        f"#   python -m lrexp ... 'hydra.searchpath=[file://{sweep.resolve() / PREDICT_DIR / 'conf'}]' scheduler={OPTIMAL}\n"
        "_target_: torch.optim.lr_scheduler.LambdaLR\n"
        "_partial_: true\n"
        "lr_lambda:\n"
        "  _target_: lrexp.schedule.PiecewiseLinear\n"
        f"  steps: [{knots}]\n"
        f"  factors: [{factors}]\n"
    )


# --- outputs -----------------------------------------------------------------------------------------


def write(prediction: Prediction, curves: dict[str, Curve], laws: dict[str, Law], extra: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / SUMMARY).write_text(json.dumps(prediction.to_json(), indent=2, allow_nan=True) + "\n")
    with open(out / "curves.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["schedule", "step", "measured_mean", "measured_sd", *(f"predicted_{n}" for n in laws)])
        for name, c in curves.items():
            predicted = {n: law.predict(c.lrs, c.steps) for n, law in laws.items()}
            for i, step in enumerate(c.steps):
                w.writerow([name, int(step), c.loss[i], c.spread[i], *(predicted[n][i] for n in laws)])
    optimum = extra["optimum"]
    if optimum is not None:
        conf = out / "conf" / "scheduler"
        conf.mkdir(parents=True, exist_ok=True)
        (conf / f"{OPTIMAL}.yaml").write_text(optimal_yaml(optimum, prediction.steps, Path(prediction.sweep)))
    draw(prediction, curves, laws, extra, out)
    (out / "prediction.md").write_text(to_markdown(section(prediction, out), level=1, base=out))


def draw(prediction: Prediction, curves: dict[str, Curve], laws: dict[str, Law], extra: dict, out: Path) -> None:
    from matplotlib.figure import Figure

    names = list(curves)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig = Figure(figsize=(3.6 * cols, 2.9 * rows))
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    styles = {"mpl": ("tab:red", "-"), "momentum": ("tab:blue", "--")}
    for ax, name in zip(axes, names):
        c = curves[name]
        ax.fill_between(c.steps, c.loss - c.spread, c.loss + c.spread, color="grey", alpha=0.25, linewidth=0)
        ax.plot(c.steps, c.loss, "o", color="black", markersize=2.5, label="measured (mean, ±sd)")
        t = np.arange(int(FIT_FROM * len(c.lrs)), len(c.lrs))
        for law_name, law in laws.items():
            color, style = styles.get(law_name, ("tab:green", ":"))
            ax.plot(t, law.predict(c.lrs, t), style, color=color, linewidth=1.3, label=law_name)
        ax.set_title(f"{name}{' (fitted)' if name in prediction.fit else ''}", fontsize="medium")
        ax.set_xlabel("step")
        ax.grid(True, alpha=0.4)
        low = float(np.min(c.loss[c.scored()]))
        ax.set_ylim(low * 0.97, float(np.max(c.loss[c.scored()])) * 1.03)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    axes[0].legend(fontsize="x-small")
    fig.suptitle(f"validation loss: measured vs predicted by laws fitted to {', '.join(prediction.fit)}")
    fig.tight_layout()
    fig.savefig(out / "prediction.png", dpi=100)

    which = "mpl" if "mpl" in laws else next(iter(laws))
    ranked = sorted(prediction.predicted, key=lambda n: prediction.predicted[n][which])
    measured = {m.schedule: m.measured_final for m in prediction.measured}
    fig = Figure(figsize=(9, 0.32 * (len(ranked) + 2) + 1.4))
    left, right = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 2]})
    y = np.arange(len(ranked) + 1)
    values = [prediction.predicted[n][which] for n in ranked]
    optimal = prediction.optimal.get("predicted_final")
    labels = [*ranked, OPTIMAL]
    left.barh(y[:-1], values, color="tab:red", alpha=0.6, label=f"predicted ({which})")
    if optimal is not None:
        left.barh(y[-1], optimal, color="tab:purple", alpha=0.7, label="law-optimal (predicted)")
    left.plot([measured.get(n, np.nan) for n in ranked], y[:-1], "D", color="black", markersize=4, label="measured")
    left.set_yticks(y, labels, fontsize="small")
    left.invert_yaxis()
    finite = [v for v in [*values, *(measured.values()), optimal] if v is not None and math.isfinite(v)]
    left.set_xlim(min(finite) * 0.99, max(finite) * 1.01)
    left.set_xlabel("final validation loss")
    left.legend(fontsize="x-small")
    left.grid(True, axis="x", alpha=0.4)
    if extra["optimum"] is not None:
        o = extra["optimum"]
        right.plot(o.knots, o.factors, "o-", color="tab:purple")
        right.set_xlabel("step")
        right.set_ylabel("LR / peak")
        right.set_title("law-optimal schedule", fontsize="medium")
        right.grid(True, alpha=0.4)
    fig.tight_layout()
    fig.savefig(out / "ranking.png", dpi=100)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m lrexp.predict", description=__doc__.splitlines()[0])
    p.add_argument("dir", type=Path, help="a sweep directory: runs that differ in schedule and seed only")
    p.add_argument("--fit", default=",".join(FIT_DEFAULT), help=f"the schedules the laws are fitted to (default: {','.join(FIT_DEFAULT)})")
    p.add_argument("--laws", default=",".join(LAWS), help=f"which laws (default: {','.join(LAWS)})")
    p.add_argument("--out", type=Path, help=f"where to write (default: DIR/{PREDICT_DIR})")
    p.add_argument("--no-report", action="store_true", help="do not rebuild DIR's comparison report")
    a = p.parse_args(argv)
    fit_names = [n for n in a.fit.split(",") if n]
    law_names = [n for n in a.laws.split(",") if n]
    out = a.out or a.dir / PREDICT_DIR
    try:
        if not a.dir.is_dir():
            raise ConfigError("DIR", str(a.dir), "no such directory")
        unknown = [n for n in law_names if n not in LAWS]
        if unknown or not law_names:
            raise ConfigError("--laws", a.laws, f"allowed: {', '.join(LAWS)}")
        if len(fit_names) < 2:
            raise ConfigError("--fit", a.fit, "at least two schedules: a law fitted to one curve cannot tell the schedule's part apart")
        prediction, curves, laws, extra = predict(a.dir, fit_names, law_names)
        write(prediction, curves, laws, extra, out)
    except (ConfigError, FileNotFoundError, ValueError) as e:
        print(f"lrexp.predict: error: {e}", file=sys.stderr)
        return 2
    print(to_markdown(section(prediction, out), level=1, base=out))
    if not a.no_report and a.out is None:
        from lrexp.report import write_report

        print(write_report([a.dir], a.dir))
    return 0


if __name__ == "__main__":
    sys.exit(main())
