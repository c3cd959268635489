"""DenseNet Model 2's six CyclicLR phases, each restarting from the best of the one before:
the protocol as data, end to end at tiny scale, and an exact resume across phases."""
import csv
import json
import os
import shutil

import numpy as np
import pytest

from tinynet.errors import TinynetError
from tinynet.training.lr import Cyclic, Plateau
from tinynet.training.protocol import Protocol, Stage
from tinynet.training.schedules import cyclic_lr

from conftest import QUICK_TEST_FLAGS, run_script
from test_protocol import load_script

# every phase one epoch of 3 steps of 32 images, at 1/16 width
TINY = ["--quick", *QUICK_TEST_FLAGS["densenet_model2"]]
EPOCHS = 6  # every phase scales to one epoch


@pytest.fixture(scope="module")
def model2():
    return load_script("densenet_model2")


def test_protocol_is_the_original_codes(model2):
    p = model2.protocol()
    assert p.optimizer == {"name": "rmsprop", "learning_rate": 1e-4, "epsilon": 1e-8}
    assert model2.protocol("adam").optimizer == {"name": "adam", "learning_rate": 1e-4}
    assert [s.epochs for s in p.stages] == [24, 24, 24, 12, 12, 12] and p.total_epochs == 108
    assert {(s.batch_size, s.resolution, s.augment) for s in p.stages} == {(128, 64, "densenet_model2")}
    assert [s.restart_from_best for s in p.stages] == [False] + [True] * 5
    assert [(s.lr.base_lr, s.lr.max_lr, s.lr.mode) for s in p.stages] == [
        (1e-4, 6e-4, "triangular2"), (1e-5, 6e-5, "triangular2"), (1e-5, 6e-5, "triangular2"),
        (1e-6, 6e-6, "triangular2"), (1e-5, 6e-5, "triangular2"), (1e-7, 6e-7, "triangular2")]
    # steps per epoch and step sizes follow from the 100,000 training images
    assert {p.steps_of(s, 100_000) for s in p.stages} == {781}
    assert [s.lr.step_size(p.steps_of(s, 100_000)) for s in p.stages] == [
        4686, 4686, 3124, 1562, 1562, 1562]


def test_a_stage_has_one_lr_policy():
    with pytest.raises(TinynetError, match="one learning-rate policy"):
        Protocol("x", (Stage("a", 64, 8, 1, lr=(Plateau(0.1, 5, 0), Cyclic(1e-4, 1e-3, 2))),),
                 {"name": "adam"})
    with pytest.raises(TinynetError, match="no stage before it"):
        Protocol("x", (Stage("a", 64, 8, 1, restart_from_best=True),), {"name": "adam"})


def lr_rows(run_dir):
    with open(run_dir / "lr.csv") as f:
        return [(int(r["iteration"]), int(r["global_epoch"]), float(r["lr"]))
                for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def reference_run(shared):
    return shared.quick("densenet_model2")


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_six_phases_end_to_end(reference_run, model2):
    run_dir, stdout = reference_run
    for k in range(2, 7):
        assert f"stage {k} starts from the best weights of stage {k - 1}" in stdout
    assert sorted(f for f in os.listdir(run_dir / "checkpoints") if f.startswith("stage-")) == [
        f"stage-{k}-best.npz" for k in range(1, 6)]
    rows = lr_rows(run_dir)
    assert [r[0] for r in rows] == list(range(EPOCHS * 3))
    p = model2.protocol().scaled(0.05)
    for it, epoch, lr in rows:  # every iteration's lr is the phase's triangular2 formula
        stage = p.stages[epoch - 1]
        step = max(1, round(stage.lr.step_size_epochs * 3))
        expected = cyclic_lr(it - 3 * (epoch - 1), stage.lr.base_lr, stage.lr.max_lr,
                             step, "triangular2")
        assert lr == pytest.approx(expected, rel=1e-6)
    with open(run_dir / "history.csv") as f:
        assert [float(r["lr"]) for r in csv.DictReader(f)] == [r[2] for r in rows[::3]]


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_restart_uses_the_previous_phases_best_weights(reference_run):
    run_dir, _ = reference_run
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "complete"
    with np.load(run_dir / "checkpoints" / "stage-5-best.npz") as best, \
            np.load(run_dir / "checkpoints" / "ckpt-00006.npz") as last:
        # phase 6 trained on from stage 5's best: same variables, moved by training
        assert json.loads(str(best["paths"])) == json.loads(str(last["meta"]))["model_variables"]
        assert not np.array_equal(best["model_00000"], last["model_00000"])


@pytest.mark.slow
def test_a_resume_at_a_phase_boundary_restarts_from_the_best_and_ends_identical(
        reference_run, quick_data_dir, tmp_path):
    """The stage-boundary resume (the fault battery kills everywhere else): a run stopped
    during phase 6 resumes from the end of phase 5, and phase 6 starts again from phase 5's
    best weights, its cyclic lr from the phase's start: lr.csv and the final checkpoint are
    the uninterrupted run's."""
    ref_dir, _ = reference_run
    run_dir = tmp_path / "run"
    shutil.copytree(ref_dir, run_dir)
    os.remove(run_dir / "checkpoints" / "ckpt-00006.npz")  # as a kill during phase 6 leaves it
    os.remove(run_dir / "final_model.keras")
    proc = run_script("densenet_model2.py", *TINY, "--data-dir", quick_data_dir,
                      "--run-dir", run_dir)
    assert "from ckpt-00005.npz: 5/6 epochs done" in proc.stdout
    assert "stage 6 starts from the best weights of stage 5" in proc.stdout
    assert lr_rows(run_dir) == lr_rows(ref_dir)
    with np.load(ref_dir / "checkpoints" / "ckpt-00006.npz") as a, \
            np.load(run_dir / "checkpoints" / "ckpt-00006.npz") as b:
        keys = [k for k in a.files if k != "meta"]
        assert any(k.startswith("optimizer_") for k in keys)
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
