"""The preview draws the article's LR curves without training, with the article's plot conventions."""

from __future__ import annotations

import csv

import matplotlib.image
import pytest
from matplotlib.figure import Figure

from lrexp.plots import MARKER_STYLE, draw_lr
from lrexp.schedule_spec import lr_markers
from tests.helpers import ARTICLE_SCHEDULES, run_cli
from tests.test_schedules import REFERENCES, reference_lrs


@pytest.mark.slow
def test_preview_reproduces_the_article_lr_values_without_training(tmp_path):
    out = run_cli(["experiment=article", "--out", "curves"], cwd=tmp_path, module="lrexp.preview")
    assert out.returncode == 0, out.stderr
    with open(tmp_path / "curves" / "lr.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3000 and list(rows[0]) == ["step", *(f"lr/{s}" for s in ARTICLE_SCHEDULES)]
    for name in ARTICLE_SCHEDULES:
        assert [float(r[f"lr/{name}"]) for r in rows] == reference_lrs(REFERENCES[name]), name
    for name in [*ARTICLE_SCHEDULES, "overlay"]:
        image = matplotlib.image.imread(tmp_path / "curves" / f"{name}.png")
        assert image.shape[0] > 300 and image.std() > 0
    assert not list(tmp_path.glob("outputs")), "a preview trains nothing and writes no run"


@pytest.mark.slow
def test_preview_takes_overrides_and_says_what_it_cannot_draw(tmp_path):
    out = run_cli(["scheduler=wsd,plateau", "run.steps=600", "--out", "p"], cwd=tmp_path, module="lrexp.preview")
    assert out.returncode == 0, out.stderr
    assert "plateau: metric-driven" in out.stderr
    with open(tmp_path / "p" / "lr.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 600 and list(rows[0]) == ["step", "lr/wsd"]
    bad = run_cli(["scheduler=cosine", "scheduler.T_max=0"], cwd=tmp_path, module="lrexp.preview")
    assert bad.returncode == 2 and bad.stderr.strip() == "lrexp.preview: error: scheduler.T_max=0: must be an integer > 0"


def legend_and_lines(kwargs, steps=3000):
    ax = Figure().subplots()
    draw_lr(ax, {"learning rate": (range(3), [1, 2, 3])}, lr_markers(kwargs, steps), title="multistep (MultiStepLR)")
    marker_lines = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--" and ln.get_color() == MARKER_STYLE["color"]]
    return ax, marker_lines, [t.get_text() for t in ax.get_legend().get_texts()]


def test_multistep_marks_every_milestone_and_labels_only_the_first():
    ax, lines, labels = legend_and_lines({"milestones": [1000, 2000], "gamma": 0.1})
    assert [ln.get_xdata()[0] for ln in lines] == [1000, 2000]
    assert labels == ["learning rate", "milestones (1000, 2000)"]  # one legend entry for both lines
    assert ax.get_title() == "multistep (MultiStepLR)" and ax.xaxis.get_gridlines()[0].get_visible()
    assert ax.get_xlabel() == "step" and ax.get_ylabel() == "learning rate"


def test_warmup_end_is_marked_and_labelled():
    _, lines, labels = legend_and_lines({"num_warmup_steps": 100, "num_training_steps": 3000})
    assert [ln.get_xdata()[0] for ln in lines] == [100]
    assert labels == ["learning rate", "warm-up end (step 100)"]


def test_schedules_without_markers_get_none():
    _, lines, labels = legend_and_lines({"T_max": 1000})
    assert lines == [] and labels == ["learning rate"]
