"""Per-stage training set-up: a stage that freezes part of the model (BN in inference mode),
a stage that names a new optimizer with coupled weight decay, and a resume inside the second
stage that ends bit-identical to the uninterrupted run."""
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest


from conftest import REPO, run_test_function

HERE = os.path.dirname(os.path.abspath(__file__))
FROZEN = "block"  # every DenseNet Model 2 block; the head stays trainable


def protocol():
    from tinynet.training.lr import Constant, StepDecay
    from tinynet.training.protocol import Protocol, Stage
    return Protocol(
        name="two_phase", optimizer={"name": "adam", "learning_rate": 1e-3}, val_resolution=64,
        eval_batch_size=20,
        stages=(Stage("head", 64, 10, 1, steps_per_epoch=2, freeze=(FROZEN,), lr=Constant()),
                Stage("all", 64, 10, 2, steps_per_epoch=2, augment="flip", restart_from_best=True,
                      lr=StepDecay(0.05, (1,), 0.1),
                      optimizer={"name": "sgd", "learning_rate": 0.05, "momentum": 0.9,
                                 "weight_decay": 1e-4, "weight_decay_mode": "coupled"})))


def train(data_root, run_dir):
    """Runs the protocol (in a fresh process: see the tests)."""
    from tinynet.data.datasets import get_dataset
    from tinynet.training.runner import run_protocol
    data = get_dataset("tiny-imagenet", data_dir=data_root, download=False)
    run_protocol(protocol(), model_name="densenet_model2", data=data, run_dir=run_dir,
                 model_kwargs={"width": 0.0625}, seed=1, deterministic=True)


def run_in_process(data_root, run_dir):
    return run_test_function("test_stage_setup", "train", str(data_root), str(run_dir))


def arrays(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


@pytest.fixture(scope="module")
def reference(small_root, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("stages") / "run"
    # a checkpoint of the initial weights, to see what the first stage moved
    initial = tmp_path_factory.mktemp("init") / "w.npz"
    code = (f"import numpy as np, keras; from tinynet.models import get_model; "
            f"keras.utils.set_random_seed(1); m = get_model('densenet_model2', num_classes=5, "
            f"width=0.0625); np.savez({str(initial)!r}, *[v.numpy() for v in m.variables], "
            f"names=np.array([v.path for v in m.variables]))")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, capture_output=True)
    stdout = run_in_process(small_root, run_dir)
    return run_dir, arrays(initial), stdout


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_frozen_stage_moves_only_the_head(reference):
    run_dir, initial, _ = reference
    names = list(initial["names"])
    after = arrays(run_dir / "checkpoints" / "stage-1-best.npz")  # the weights after stage 1
    assert json.loads(str(after["paths"])) == names
    moved = {n for i, n in enumerate(names)
             if not np.array_equal(initial[f"arr_{i}"], after[f"model_{i:05d}"])}
    assert moved and all(n.startswith("head") for n in moved)  # BN statistics of frozen blocks too


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_second_stage_trains_everything_with_its_own_optimizer(reference):
    run_dir, initial, _ = reference
    names = list(initial["names"])
    last = arrays(run_dir / "checkpoints" / "ckpt-00003.npz")
    meta = json.loads(str(last["meta"]))
    kernels = [i for i, n in enumerate(names) if n.endswith("kernel")]
    assert all(not np.array_equal(initial[f"arr_{i}"], last[f"model_{i:05d}"]) for i in kernels)
    # SGD with momentum has one slot per trainable variable, Adam had two
    assert sum("momentum" in p for p in meta["optimizer_variables"]) == sum(
        not n.endswith(("moving_mean", "moving_variance")) for n in names)
    assert not any("velocity" in p for p in meta["optimizer_variables"])
    with open(run_dir / "lr.csv") as f:
        lrs = [float(line.split(",")[2]) for line in f.read().split("\n")[1:] if line]
    assert lrs[2:] == pytest.approx([0.05, 0.05, 0.005, 0.005])


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_resume_inside_the_new_optimizers_stage_is_bit_identical(reference, small_root, tmp_path):
    ref_dir, _, _ = reference
    run_dir = tmp_path / "run"
    shutil.copytree(ref_dir, run_dir)
    os.remove(run_dir / "checkpoints" / "ckpt-00003.npz")  # as if killed during epoch 3
    stdout = run_in_process(small_root, run_dir)
    assert "from ckpt-00002.npz: 2/3 epochs done" in stdout
    a, b = arrays(ref_dir / "checkpoints" / "ckpt-00003.npz"), arrays(
        run_dir / "checkpoints" / "ckpt-00003.npz")
    for key in a:
        if key != "meta":
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
