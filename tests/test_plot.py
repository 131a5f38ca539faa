"""The `plot` stage's figures: each a real PNG, and showing what its title claims."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
from helpers.project import TINY, compose_config

from knd.data.processed import load_processed
from knd.reporting import plot

LABELS = ["neutral", "calm", "happy"]


@pytest.fixture
def figures(monkeypatch) -> list:
    """The matplotlib figures the functions draw, kept for inspection (still saved as PNGs)."""
    drawn, save = [], plot._save
    monkeypatch.setattr(plot, "_save", lambda fig, out: (drawn.append(fig), save(fig, out)))
    return drawn


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) of a PNG that is not a blank canvas."""
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    pixels = matplotlib.image.imread(path)
    assert pixels[..., :3].std() > 0.05, f"{path.name} is blank"
    return pixels.shape[1], pixels.shape[0]


def test_training_curves_mark_the_saved_epoch_and_chance(figures, tmp_path):
    history = [
        {"epoch": e, "train_loss": 2 / e, "val_uar": u, "val_accuracy": u, "val_f1_macro": u}
        for e, u in enumerate([0.2, 0.35, 0.5, 0.45, 0.4], start=1)
    ]
    plot.training_curves(history, 3, 8, tmp_path / "curves.png")
    width, height = png_size(tmp_path / "curves.png")
    assert 800 < width < 1600 and 300 < height < width / 2
    (fig,) = figures
    lines = {line.get_label(): line for line in fig.axes[1].get_lines()}
    assert list(lines["saved (epoch 3)"].get_xdata()) == [3, 3]
    assert list(lines["chance"].get_ydata()) == [1 / 8, 1 / 8]
    assert list(lines["uar"].get_ydata()) == [0.2, 0.35, 0.5, 0.45, 0.4]


def test_training_curves_without_validation_actors_show_the_schedule(figures, tmp_path):
    history = [{"epoch": e, "train_loss": 2 / e, "lr": 0.01 / e} for e in range(1, 6)]
    plot.training_curves(history, 5, 8, tmp_path / "curves.png")
    png_size(tmp_path / "curves.png")
    (fig,) = figures
    lines = {line.get_label(): line for line in fig.axes[1].get_lines()}
    assert set(lines) == {"learning rate", "saved (epoch 5)"}
    assert list(lines["learning rate"].get_ydata()) == [0.01 / e for e in range(1, 6)]


def test_confusion_matrix_is_row_normalised_with_counts(figures, tmp_path):
    counts = [[8, 2, 0], [1, 1, 0], [0, 0, 0]]  # the last class has no test clips
    plot.confusion_matrix(counts, LABELS, tmp_path / "cm.png")
    width, height = png_size(tmp_path / "cm.png")
    assert 400 < width < 1200 and 400 < height < 1200
    ax = figures[0].axes[0]
    np.testing.assert_allclose(
        ax.get_images()[0].get_array(), [[0.8, 0.2, 0], [0.5, 0.5, 0], [0] * 3]
    )
    assert [t.get_text() for t in ax.texts][:3] == ["0.80\n(8)", "0.20\n(2)", "0.00\n(0)"]
    assert [t.get_text() for t in ax.get_yticklabels()] == LABELS


def test_per_class_scores_are_bars_of_each_score(figures, tmp_path):
    scores = {"precision": 0.9, "recall": 0.6, "f1": 0.72}
    per_class = {
        label: {k: v / (i + 1) for k, v in scores.items()} for i, label in enumerate(LABELS)
    }
    plot.per_class_f1(per_class, tmp_path / "per_class.png")
    png_size(tmp_path / "per_class.png")
    heights = [bar.get_height() for bar in figures[0].axes[0].patches]
    want = [per_class[label][k] for k in scores for label in LABELS]
    assert heights == pytest.approx(want)


def test_emotion_examples_show_one_clip_per_emotion(processed, figures, tmp_path):
    data = load_processed(processed)
    plot.emotion_examples(data, compose_config(*TINY).features, tmp_path / "examples.png")
    width, height = png_size(tmp_path / "examples.png")
    emotions = data.meta["emotion"].unique()
    assert len(emotions) == 8 and height > width > 1000  # 8 rows of 3 panels
    assert [ax.get_ylabel() for ax in figures[0].axes[::3]] == list(emotions)


def test_the_reliability_diagram_shows_the_ece_beside_its_floor(figures, tmp_path):
    bins = [
        {"low": k / 15, "high": (k + 1) / 15, "count": c, "confidence": f, "accuracy": a}
        for k, (c, f, a) in enumerate([(0, None, None)] * 5 + [(10, 0.4, 0.3), (30, 0.9, 0.95)])
    ]
    plot.reliability_diagram(bins, 0.0747, 0.0752, tmp_path / "reliability.png")
    png_size(tmp_path / "reliability.png")
    ax, count_ax = figures[-1].axes
    assert "ECE 0.075" in ax.get_title() and "0.075)" in ax.get_title()
    assert [round(p.get_height(), 2) for p in ax.patches] == [0.3, 0.95]
    assert [p.get_height() for p in count_ax.patches] == [10, 30]
