"""Training-curve stage marks that say what changed, readable for many stages, and integer
class axes in the error analysis."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg

from tinynet.plots import plot_history, stage_labels

from test_protocol import load_script
from conftest import load_file



@pytest.fixture(scope="module")
def model2():
    return load_script("densenet_model2").protocol()


@pytest.fixture(scope="module")
def model1():
    return load_script("densenet_model1").PROGRESSIVE


def _history(protocol):
    rows, g = [], 0
    for i, s in enumerate(protocol.stages, start=1):
        for e in range(s.epochs):
            g += 1
            rows.append(dict(stage=i, resolution=s.resolution, epoch=e + 1, global_epoch=g,
                             lr=1e-4, loss=3 / g ** 0.5, accuracy=1 - 1 / g ** 0.5,
                             val_loss=3.5 / g ** 0.5, val_accuracy=0.9 - 1 / g ** 0.5))
    return pd.DataFrame(rows)


def _marks(fig):
    """Per panel (the two curve axes), the stage marks' texts and window extents."""
    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    return [[(t.get_text(), t.get_rotation(), t.get_window_extent(renderer)) for t in ax.texts]
            for ax in fig.axes[:2]]


def _key(fig):
    return "\n".join(t.get_text() for ax in fig.axes for t in ax.texts if "\n" in t.get_text())


def _no_overlap(panel):
    boxes = [box for _, _, box in panel]
    return not any(a.overlaps(b) for i, a in enumerate(boxes) for b in boxes[i + 1:])


def test_model2_labels_name_the_lr_phase_not_the_unchanged_resolution(model2):
    labels = stage_labels(model2)
    assert [d["stage"] for d in labels] == [1, 2, 3, 4, 5, 6]
    first = labels[0]["changes"]
    assert first[0] == "64px" and "augment densenet_model2" in first
    assert "cyclic lr 0.0001-0.0006 (triangular2, half-cycle 6 ep)" in first
    assert "rmsprop 0.0001" in first
    # phase 3 keeps phase 2's rates: only the half-cycle changes (6 -> 4 epochs)
    assert labels[2]["changes"] == ["cyclic lr 1e-05-6e-05 (triangular2, half-cycle 4 ep)",
                                    "from the best weights of the stage before"]
    for d in labels[1:]:
        assert d["short"] == "lr, best"
        assert not any("px" in c or "augment" in c or "rmsprop" in c for c in d["changes"])


def test_model1_labels_follow_resolution_batch_augmentation_and_lr(model1):
    labels = stage_labels(model1)
    assert labels[1]["changes"][:2] == ["32px -> 64px", "batch 256 -> 64"]
    assert labels[2]["changes"] == ["64px -> 16px", "batch 64 -> 256", "lr carried over"]
    assert labels[3]["short"] == "64px, batch"
    assert labels[4]["changes"][0] == "augment densenet_model1" and labels[4]["short"] == "aug, lr"
    sgd = dict(model1.optimizer, name="sgd")
    changed = dataclasses.replace(model1, stages=model1.stages[:1] + (dataclasses.replace(
        model1.stages[1], optimizer=sgd),))
    assert "new optimizer sgd 0.001" in stage_labels(changed)[1]["changes"]


@pytest.mark.parametrize("scale", [1, 0.02])  # 108 epochs, and one epoch per phase
def test_model2_plot_marks_are_short_horizontal_and_do_not_overlap(model2, tmp_path, scale):
    protocol = model2.scaled(scale)
    path = str(tmp_path / "curves.png")
    fig = plot_history(_history(protocol), path, title="t", stages=stage_labels(protocol))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
    for panel in _marks(fig):
        assert [text for text, _, _ in panel] == ["1 64px"] + [f"{i} lr, best" for i in range(2, 7)]
        assert all(rotation == 0 for _, rotation, _ in panel)
        assert _no_overlap(panel)
    key = _key(fig)
    assert (f"3  phase3 (from epoch {protocol.stage_start(2) + 1}): cyclic lr 1e-05-6e-05 "
            f"(triangular2, half-cycle {4 * scale if scale == 1 else 4 / 24:.3g} ep)") in key
    assert key.count("from the best weights of the stage before") == 5


def test_model1_key_says_what_changes_at_each_boundary(model1, tmp_path):
    fig = plot_history(_history(model1), str(tmp_path / "c.png"), stages=stage_labels(model1))
    for panel in _marks(fig):
        assert [t for t, _, _ in panel][1:3] == ["2 64px, batch, lr", "3 16px, batch, lr"]
        assert _no_overlap(panel)
    key = _key(fig)
    assert "3  16px (from epoch 46): 64px -> 16px, batch 64 -> 256, lr carried over" in key
    assert "5  64px-augmented (from epoch 71): augment densenet_model1" in key


def test_without_stages_only_resolution_changes_are_marked(model1, tmp_path):
    fig = plot_history(_history(model1), str(tmp_path / "c.png"))
    panel = _marks(fig)[0]
    assert [t for t, _, _ in panel] == ["1 32px", "2 64px", "3 16px", "4 64px", "5"]
    assert "5  stage 5 (from epoch 71): same resolution" in _key(fig)


def test_epoch_axis_has_integer_ticks(model2, tmp_path):
    fig = plot_history(_history(model2.scaled(0.02)), str(tmp_path / "c.png"))
    FigureCanvasAgg(fig).draw()
    for ax in fig.axes[:2]:
        assert all(float(t).is_integer() for t in ax.get_xticks())


def _error_analysis():
    return load_file("tools", "error_analysis")


@pytest.mark.parametrize("k", [3, 7])  # (3 classes: matplotlib's default ticks at 0.5 steps)
def test_confusion_matrix_class_axes_have_integer_ticks(k):
    confusion = np.random.default_rng(k).integers(0, 9, (k, k))
    fig = _error_analysis().confusion_figure(confusion, "confusion")
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    for ticks, (lo, hi) in ((ax.get_xticks(), ax.get_xlim()),
                            (ax.get_yticks(), sorted(ax.get_ylim()))):
        shown = [t for t in ticks if lo <= t <= hi]
        assert len(shown) >= 2 and all(float(t).is_integer() for t in shown), shown
