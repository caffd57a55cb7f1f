"""A prediction of lrexp.predict as data: what prediction.json holds, read back, and its report section.

Torch-free and apart from the runner, so that the comparison report (lrexp.report) reads a prediction
without importing what made it: lrexp.predict fits, writes and rebuilds the report; this module only
describes and shows.
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from lrexp.laws import FIT_FROM, Accuracy
from lrexp.sections import Section

PREDICT_DIR = "predict"  # where lrexp.predict writes, inside the sweep directory
SUMMARY = "prediction.json"
OPTIMAL = "law_optimal"  # the law-optimal schedule's option name, in PREDICT_DIR/conf/scheduler/


@dataclass
class Measured:
    """One schedule of the sweep: its curve and what each law predicted for it."""

    schedule: str
    fitted: bool
    seeds: int
    accuracy: dict[str, Accuracy]  # law -> how close
    measured_final: float
    predicted_final: dict[str, float]


@dataclass
class Prediction:
    """What ``python -m lrexp.predict`` found: written as prediction.json, read by the report."""

    sweep: str
    fit: list[str]
    laws: dict[str, dict[str, Any]]  # name -> label, parameters, scale, fit R^2 (log loss)
    measured: list[Measured]
    predicted: dict[str, dict[str, float]]  # every configured schedule -> law -> predicted final loss
    skipped: dict[str, str]  # configured schedules not predicted, and why
    optimal: dict[str, Any]  # the law-optimal schedule: knots, factors, predicted final, its config
    steps: int
    peak_lr: float
    fit_from: float = FIT_FROM

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> Prediction:
        measured = [Measured(**(m | {"accuracy": {k: Accuracy(**a) for k, a in m["accuracy"].items()}})) for m in d["measured"]]
        return cls(**(d | {"measured": measured}))


def section(prediction: Prediction, folder: Path) -> Section:
    """The prediction in words, a table and figures: prediction.md, and a section of the report."""
    laws = list(prediction.laws)
    fitted = "; ".join(
        f"{law['label']}: R² {law['fit_r2']:.4f} on log loss; " + ", ".join(f"{k} {v:.4g}" for k, v in law["parameters"].items())
        for law in prediction.laws.values()
    )
    which = "mpl" if "mpl" in laws else laws[0]
    ranked = sorted(prediction.predicted, key=lambda s: prediction.predicted[s][which])
    paragraphs = [
        f"Laws fitted to the mean validation loss of {', '.join(prediction.fit)} (points from {prediction.fit_from:.0%} of the run "
        f"on; Huber loss on log loss), every other schedule predicted from its LR sequence alone. Errors are relative to the "
        f"measured mean over the points from {prediction.fit_from:.0%} of the run on (mean / worst / at the last point); read "
        f"them against the seeds' own spread at the last point. Fitted: {fitted}.",
    ]
    rows = []
    for m in sorted(prediction.measured, key=lambda m: (not m.fitted, m.schedule)):
        errors = [
            f"{m.accuracy[n].mean_relative:.2%} / {m.accuracy[n].worst_relative:.2%} / {m.accuracy[n].final_relative:.2%}" for n in laws
        ]
        spread = m.accuracy[laws[0]].final_seed_spread
        rows.append([m.schedule + (" (fitted)" if m.fitted else ""), str(m.seeds), *errors, "-" if math.isnan(spread) else f"{spread:.2%}"])
    bullets = []
    held = [m for m in prediction.measured if not m.fitted]
    for n in laws if held else []:
        mean = statistics.fmean(m.accuracy[n].mean_relative for m in held)
        worst = max(m.accuracy[n].worst_relative for m in held)
        bullets.append(
            f"{prediction.laws[n]['label']}: on the {len(held)} schedules it did not see, mean relative error {mean:.2%}, worst {worst:.2%}."
        )
    bullets.append(
        f"Every configured schedule by its predicted final validation loss ({which}): "
        + ", ".join(f"{s} {prediction.predicted[s][which]:.4g}" for s in ranked)
        + "."
    )
    if prediction.skipped:
        bullets.append("Not predicted: " + "; ".join(f"{s} ({why})" for s, why in prediction.skipped.items()) + ".")
    if prediction.optimal:
        conf = Path(prediction.sweep).resolve() / PREDICT_DIR / "conf"
        bullets.append(
            f"The law-optimal schedule (monotone, minimising the fitted multi-power law's final loss) is predicted to reach "
            f"{prediction.optimal['predicted_final']:.4g}: run it with 'hydra.searchpath=[file://{conf}]' scheduler={OPTIMAL}."
        )
    return Section(
        f"Predicted from {len(prediction.fit)} runs",
        paragraphs,
        ["schedule", "seeds", *(f"{n}: mean / worst / final error" for n in laws), "seeds' spread at the end"],
        rows,
        bullets,
        [f for f in (folder / "prediction.png", folder / "ranking.png") if f.is_file()],
    )


def read_prediction(sweep: Path) -> Prediction | None:
    """A sweep's prediction, if lrexp.predict has written one into it."""
    path = sweep / PREDICT_DIR / SUMMARY
    return Prediction.from_json(json.loads(path.read_text())) if path.is_file() else None
