"""tools/scale_rehearsal.py, scaled down: the same measurements on a small generated CIFAR-10
and a small Multi-ResNet, so that the tool keeps working (the full-size run is a benchmark:
docs/benchmarks.md)."""
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = {"cifar": dict(num_classes=10, train_per_class=60, test_per_class=20)}
# (wide enough that a step takes a good fraction of a second: the rehearsal watches for each
# step checkpoint, and the runner deletes all but the last two)
FLAGS = ["--block", "basic", "--depth", "14", "--k", "4", "--width", "0.5"]


@pytest.fixture(scope="module")
def rehearsal():
    sys.path.insert(0, os.path.join(REPO, "tools"))
    try:
        import scale_rehearsal
    finally:
        sys.path.pop(0)
    return scale_rehearsal


@pytest.mark.slow
def test_the_rehearsal_measures_every_figure_of_a_scaled_down_run(rehearsal, tmp_path):
    root, scratch = tmp_path / "data", tmp_path / "scratch"
    scratch.mkdir()
    rehearsal.generate(str(root), SMALL, only=("cifar",))
    assert "data_batch_5" in os.listdir(root / "cifar" / "cifar-10-batches-py")
    r = rehearsal.rehearse("multi_resnet_cifar", str(root), str(scratch), timeout=300,
                           val_images=40, flags=FLAGS)
    for key in ("first_step", "again", "resume", "step_seconds", "checkpoint_write",
                "model_save", "val_per_image"):
        assert 0 < r[key] < 300, (key, r[key])
    assert r["model"] == "multi_resnet" and r["val_images"] == 200
    assert r["eval_batch"] == 128 and r["val_px"] == 32
    # the step checkpoint holds every weight and optimizer slot: bigger than the model's
    # float32 weights, and the .keras file holds them too
    assert r["checkpoint_bytes"] > 4 * r["params"] and r["model_bytes"] > 4 * r["params"]
    assert 100 * 2 ** 20 < r["host_peak"] < 8 * 2 ** 30
    assert 100 * 2 ** 20 < r["peak_paper_batch"] < 8 * 2 ** 30
    cells = rehearsal.row("multi_resnet_cifar", r)
    assert len(cells) == 10 and "(ok <= 60 s)" in cells[2]
    assert "no projection" in cells[7]  # a scaled-down model is no paper's: no T4 epoch
