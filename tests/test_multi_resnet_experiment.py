"""seed 003's Multi-ResNet experiment end to end at tiny scale on generated CIFAR: the code's
protocol as data (normalise, then flip and crop with mean-colour borders), the test errors the
original reported, the same run split over two logical devices and under MirroredStrategy, and
a mirrored run killed with SIGKILL that resumes bit-identically."""
import csv
import json
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, cli_error, multi_resnet_run
from test_protocol import load_script

SCRIPT = "multi_resnet_cifar.py"
EPOCHS = 3  # --quick: 164 epochs x 3/164


@pytest.fixture(scope="module")
def script():
    return load_script("multi_resnet_cifar")


def test_protocol_is_the_codes(script):
    from tinynet.training.lr import StepDecay
    p = script.protocol()
    (stage,) = p.stages
    assert (stage.epochs, stage.batch_size, stage.resolution, stage.augment) == (
        164, 128, 32, "cifar_crop_flip_mean_border")
    assert stage.lr == StepDecay(0.1, (80, 121), 0.1)
    assert [stage.lr.value(e, 0, 390) for e in (0, 79, 80, 120, 121, 163)] == pytest.approx(
        [0.1, 0.1, 0.01, 0.01, 0.001, 0.001])
    assert p.optimizer == {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9,
                           "nesterov": True, "weight_decay": 1e-4,
                           "weight_decay_mode": "coupled", "convention": "torch"}
    assert p.normalize["mean"] == pytest.approx([125.3 / 255, 123.0 / 255, 113.9 / 255])
    assert p.normalize["std"] == pytest.approx([63.0 / 255, 62.1 / 255, 66.7 / 255])
    assert script.protocol("cifar100").normalize["std"] == pytest.approx(
        [68.2 / 255, 65.4 / 255, 70.4 / 255])
    assert p.steps_of(stage, 50_000) == 390
    # --epochs 200 (the paper) keeps the code's fixed steps
    assert script.protocol(epochs=200).stages[0].lr.milestones == (80, 121)


def test_mean_border_recipe_pads_with_the_mean_colour():
    """On normalised images the recipe's padding is 0, i.e. exactly the mean colour."""
    import tensorflow as tf

    from tinynet.augment import get_augmenter
    from tinynet.data.pipeline import normalize
    mean, std = np.array([0.4, 0.5, 0.6], np.float32), np.array([0.2, 0.25, 0.3], np.float32)
    augment = get_augmenter("cifar_crop_flip_mean_border")
    assert augment.on_normalized and not get_augmenter("cifar_crop_flip").on_normalized
    images = tf.fill([16, 32, 32, 3], tf.constant(200, tf.uint8))
    x, _ = augment(normalize(images, mean, std), tf.zeros([16], tf.int32),
                   tf.constant([0, 0, 0], tf.int64))
    x = x.numpy()
    inside = (200 / 255 - mean) / std
    border = np.all(x == 0, axis=-1)
    assert border.any() and np.allclose(x[~border], np.broadcast_to(inside, x.shape)[~border])
    assert x.dtype == np.float32 and x.shape == (16, 32, 32, 3)


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


RUNS = {"single": [], "split": ["--model-parallel", "CPU:0,CPU:1"]}


@pytest.fixture(scope="module")
def runs(shared):
    """``runs[name]``: the quick run on one device, or split over two logical CPUs (made when a
    test first reads it: 4 steps an epoch, these tests check the run, not what it learns)."""
    class Runs(dict):
        def __missing__(self, name):
            self[name] = multi_resnet_run(shared, *RUNS[name])
            return self[name]

    return Runs()


def test_quick_run_end_to_end(runs):
    run_dir, stdout = runs["single"]
    rows = history(run_dir)
    assert [float(r["lr"]) for r in rows] == pytest.approx([0.1, 0.01, 0.001])
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "multi_resnet"
    assert config["model_kwargs"] == {"block": "basic", "depth": 8, "k": 4, "width": 0.25,
                                      "batch_norm": "torch"}
    assert config["dataset"]["name"] == "synthetic-cifar10"
    assert config["input_std"] == pytest.approx([63.0 / 255, 62.1 / 255, 66.7 / 255])
    errors = json.loads((run_dir / "test_errors.json").read_text())
    accuracy = [float(r["val_accuracy"]) for r in rows]
    assert errors["test_is_validation"] and errors["published"] == 0.0928
    assert errors["differs_from_paper"] == config["paper"]["differences"] == [
        "generated data (synthetic-cifar10)", "--quick", "epochs x0.0182927",
        "4 steps per epoch", "width 0.25"]
    assert errors["best_over_epochs_test_error"] == pytest.approx(1 - max(accuracy))
    assert errors["final_epoch_test_error"] == pytest.approx(1 - accuracy[-1])
    assert errors["best_epoch"] == int(np.argmax(accuracy)) + 1
    assert "best over epochs test error" in stdout
    assert ("published 9.28% (not comparable: generated data (synthetic-cifar10), --quick, "
            "epochs x0.0182927, 4 steps per epoch, width 0.25)") in stdout


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_model_parallel_run_trains_as_the_single_device_run(runs):
    """Same weights and data; only the order of each block's additions differs."""
    split_dir, _ = runs["split"]
    config = json.loads((split_dir / "config.json").read_text())
    # where it ran is not part of the run's identity (a run may resume on other devices)
    assert "devices" not in config["model_kwargs"]
    assert config["distribution"]["model_parallel"] == ["/device:CPU:0", "/device:CPU:1"]
    for column in ("loss", "val_loss"):
        np.testing.assert_allclose([float(r[column]) for r in history(split_dir)],
                                   [float(r[column]) for r in history(runs["single"][0])],
                                   rtol=1e-3, err_msg=column)
    # the saved split model loads in a fresh process, which has one CPU device: it keeps its
    # devices and computes on one device with a warning
    code = ("import numpy as np, keras, tinynet; m = keras.models.load_model("
            f"{str(split_dir / 'final_model.keras')!r}); "
            "print(m.get_layer('stage1_block1').devices, "
            "m(np.zeros((1, 32, 32, 3), 'float32')).shape)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "['/device:CPU:0', '/device:CPU:1'] (1, 10)" in proc.stdout
    assert "not present; computing on one device" in proc.stderr


# the mirrored run (its replicas, its validation, the one mirrored resume): tests/test_distribute.py;
# kills at every kind of moment: tests/test_fault_battery.py


def test_impossible_depth_is_one_line_before_any_data(tmp_path, capsys):
    from tinynet.papers import get_paper

    assert cli_error(get_paper("multi_resnet_cifar").main, [
        "--block", "basic", "--depth", "30", "--data-dir", tmp_path / "none",
        "--run-dir", tmp_path / "run"], capsys) == (
        "error: depth 30 is not 6n+2 (basic blocks); nearest valid depths: 26 and 32")
    assert not (tmp_path / "none").exists() and not (tmp_path / "run").exists()
