"""10-crop testing, ensembles, the Tiny ImageNet submission and tools/ensemble.py, on run
directories made by hand (a tiny saved Keras model and a config.json as the runner writes it)."""
import json
import os
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, cli_error, load_file
from tinynet.data.datasets import TrainData
from tinynet.data.pipeline import ImageSet, resize_batch
from tinynet.data.synthetic import write_synthetic_tiny_imagenet
from tinynet.errors import TinynetError
from tinynet.evaluation import load_run, metrics
from tinynet.evaluation.crops import (VIEWS, crop_offsets, default_crop_size, predict_ten_crop,
                                      ten_crop_views)
from tinynet.evaluation.ensembles import Ensemble, normalise_weights, results_table
from tinynet.evaluation.submissions import check_submittable, make_submission, submission_lines

TOOL = os.path.join(REPO, "tools", "ensemble.py")
SYNTH = dict(train_per_class=2, val_per_class=3, test_images=7, seed=5)


def make_dataset(root, num_classes):
    write_synthetic_tiny_imagenet(root, num_classes=num_classes, **SYNTH)
    return {"name": "synthetic-tiny-imagenet", "dataset": "synthetic", "root": root,
            "args": dict(data_dir=root, num_classes=num_classes, **SYNTH)}


def make_run(run_dir, dataset, seed, interpolation="nearest", mean=None, std=None, size=64):
    """A run directory as the runner leaves it, as far as evaluation reads it: a position-
    sensitive model of fixed input size (pooling, flatten, dense) saved as best_model.keras,
    and config.json."""
    keras.utils.set_random_seed(seed)
    num_classes = dataset["args"]["num_classes"]
    model = keras.Sequential([keras.Input((size, size, 3)), keras.layers.AveragePooling2D(8),
                              keras.layers.Flatten(),
                              keras.layers.Dense(num_classes, activation="softmax")])
    os.makedirs(run_dir)
    model.save(os.path.join(run_dir, "best_model.keras"))
    config = {"model": f"dense{seed}", "dataset": dataset, "interpolation": interpolation,
              "protocol": {"name": "test", "val_resolution": size, "eval_batch_size": 50},
              "input_mean": mean, "input_std": std}
    with open(os.path.join(run_dir, "config.json"), "w") as f:
        json.dump(config, f)
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs on one 4-class dataset (differently prepared inputs) and one on a 3-class set."""
    base = tmp_path_factory.mktemp("evaluation")
    four = make_dataset(str(base / "data4"), 4)
    three = make_dataset(str(base / "data3"), 3)
    dirs = {"a": make_run(str(base / "run_a"), four, 1, "bilinear", [0.5, 0.4, 0.3],
                          [0.2, 0.25, 0.3]),
            "b": make_run(str(base / "run_b"), four, 2),
            "c": make_run(str(base / "run_c"), three, 3)}
    a = load_run(dirs["a"])
    b = load_run(dirs["b"], data=a.data)
    return dict(dirs=dirs, a=a, b=b, root=four["root"])


def hand_ten_crop(run, images, crop):
    """The ten views cut by hand, each resized and normalised as the run validates, softmax
    averaged."""
    size = images.shape[1]
    far, mid = size - crop, (size - crop) // 2
    views = [images[:, y:y + crop, x:x + crop] for y, x in
             ((0, 0), (0, far), (far, 0), (far, far), (mid, mid))]
    views += [v[:, :, ::-1] for v in views]
    interpolation = run.config["interpolation"]
    probabilities = []
    for v in views:
        x = resize_batch(tf.constant(np.ascontiguousarray(v)), 64, interpolation).numpy()
        x = x.astype(np.float32) / np.float32(255)
        if run.mean is not None:
            x = (x - run.mean) / run.std
        probabilities.append(run.model.predict(x, verbose=0))
    return np.mean(probabilities, axis=0)


# -- 10-crop -----------------------------------------------------------------------------------
def test_view_order_and_shapes():
    images = np.arange(2 * 64 * 64 * 3, dtype=np.int64).reshape(2, 64, 64, 3)
    assert default_crop_size(64) == 56 and default_crop_size(32) == 28
    views = ten_crop_views(images)
    assert views.shape == (10, 2, 56, 56, 3) and len(VIEWS) == 10
    assert VIEWS[:5] == ("top-left", "top-right", "bottom-left", "bottom-right", "centre")
    expected = [images[:, :56, :56], images[:, :56, 8:], images[:, 8:, :56], images[:, 8:, 8:],
                images[:, 4:60, 4:60]]
    expected += [e[:, :, ::-1] for e in expected]
    for v in range(10):
        np.testing.assert_array_equal(views[v], expected[v], err_msg=VIEWS[v])
    as_tensor = ten_crop_views(tf.constant(images), 56)
    np.testing.assert_array_equal(as_tensor.numpy(), views)
    assert crop_offsets(64, 64, 63)[4] == (0, 0)  # odd margins: the centre rounds down
    for bad in (0, 65, 5.5):
        with pytest.raises(TinynetError, match="crop size"):
            ten_crop_views(images, bad)


def test_ten_crop_of_a_known_image_is_the_average_of_the_views(runs):
    run = runs["a"]
    image = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    got = predict_ten_crop(run.model, ImageSet(labels=np.zeros(1, np.int32), image_size=64,
                                               images=image), 50, *run._eval_inputs())
    np.testing.assert_allclose(got, hand_ten_crop(run, image, 56), atol=1e-6)


@pytest.mark.parametrize("which, crop", [("a", None), ("b", 48)])
def test_run_ten_crop_prediction(runs, which, crop):
    run = runs[which]
    probabilities, labels = run.predict("val", ten_crop=True, crop_size=crop)
    images = run.data.val.images
    np.testing.assert_allclose(probabilities, hand_ten_crop(run, images, crop or 56), atol=1e-6)
    np.testing.assert_array_equal(labels, run.data.val.labels)
    assert probabilities.shape == (12, 4) and probabilities.dtype == np.float32
    # without ten_crop: the plain evaluation, unchanged
    plain, _ = run.predict("val")
    np.testing.assert_array_equal(plain, run.model.predict(run.dataset("val"), verbose=0))
    assert run.evaluate("val") == metrics(plain, labels)
    with pytest.raises(TinynetError, match="10-crop"):
        run.predict("val", crop_size=48)


# -- ensembles ---------------------------------------------------------------------------------
def test_ensemble_of_one_run_is_that_run(runs):
    run = runs["a"]
    ensemble = Ensemble.of([run])
    for ten_crop in (False, True):
        np.testing.assert_array_equal(ensemble.predict("val", ten_crop)[0],
                                      run.predict("val", ten_crop)[0])
    rows = ensemble.evaluate_members("val", ten_crop=True)
    assert [(r["member"], r["views"]) for r in rows] == [
        ("run_a", "full image"), ("ensemble", "full image"),
        ("run_a", "10-crop (56 px)"), ("ensemble", "10-crop (56 px)")]
    figures = ("images", "top1_accuracy", "top5_accuracy", "top1_error", "top5_error", "loss")
    for member, whole in (rows[:2], rows[2:]):
        assert {k: member[k] for k in figures} == {k: whole[k] for k in figures}
    assert rows[0]["top1_accuracy"] == run.evaluate("val")["top1_accuracy"]
    lines = results_table(rows).splitlines()
    assert len(lines) == 6 and lines[2].split("|")[3:] == lines[3].split("|")[3:]


def test_weights(runs):
    a, b = runs["a"], runs["b"]
    np.testing.assert_array_equal(Ensemble.of([a, b], [1, 0]).predict("val")[0],
                                  a.predict("val")[0])
    np.testing.assert_array_equal(normalise_weights([2, 6], 2), [0.25, 0.75])
    np.testing.assert_array_equal(normalise_weights(None, 4), [0.25] * 4)
    mixed = Ensemble.of([a, b], [2, 6])
    np.testing.assert_allclose(mixed.weights, [0.25, 0.75])
    np.testing.assert_allclose(mixed.predict("val")[0],
                               0.25 * a.predict("val")[0] + 0.75 * b.predict("val")[0], atol=1e-6)
    for bad, message in (([1], "1 weight"), ([1, -1], ">= 0"), ([0, 0], "sum to 0"),
                         ([1, float("nan")], ">= 0")):
        with pytest.raises(TinynetError, match=message):
            Ensemble.of([a, b], bad)


def test_members_on_other_data_are_refused(runs):
    dirs = runs["dirs"]
    with pytest.raises(TinynetError, match="same dataset and class list") as e:
        Ensemble.load([dirs["a"], dirs["c"]])
    assert "\n" not in str(e.value)
    with pytest.raises(TinynetError, match="trained on"):
        load_run(dirs["c"], data=runs["a"].data)


# -- submission --------------------------------------------------------------------------------
def check_submission(path, root):
    lines = open(path).read().splitlines()
    with open(os.path.join(root, "wnids.txt")) as f:
        wnids = {w.strip() for w in f if w.strip()}
    assert len(lines) == len(os.listdir(os.path.join(root, "test", "images"))) == 7
    assert lines == sorted(lines)
    files = []
    for line in lines:
        assert re.fullmatch(r"test_\d+\.JPEG n\d{8}", line), line
        name, wnid = line.split(" ")
        assert wnid in wnids
        files.append(name)
    assert sorted(files) == sorted(os.listdir(os.path.join(root, "test", "images")))
    return lines


def test_submission(runs, tmp_path):
    a, b = runs["a"], runs["b"]
    assert len(a.data.test_files) == 7 and a.data.test is None
    assert make_submission(Ensemble.of([a, b]), str(tmp_path / "sub.txt")) == 7
    check_submission(tmp_path / "sub.txt", runs["root"])
    # one run: its own argmax, from the 10-crop predictions when asked
    names, test_set = a.data.unlabelled_test()
    make_submission(a, str(tmp_path / "one.txt"), ten_crop=True)
    expected = submission_lines(names, a.predict_images(test_set, ten_crop=True), a.data.class_ids)
    assert check_submission(tmp_path / "one.txt", runs["root"]) == expected


def test_no_submission_without_a_test_split():
    cifar = TrainData(train=None, val=None, class_names=["a", "b"], description={},
                      spec={"name": "cifar10"})
    with pytest.raises(TinynetError, match="no challenge submission format"):
        check_submittable(cifar)
    empty = TrainData(train=None, val=None, class_names=["a", "b"], description={"root": "/d"},
                      spec={"name": "tiny-imagenet"}, test_files=[])
    for check in (check_submittable, lambda d: d.unlabelled_test()):
        with pytest.raises(TinynetError, match="/d/test/images is missing or empty"):
            check(empty)


# -- tools/ensemble.py -------------------------------------------------------------------------
def run_tool(*args, cwd=None):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


@pytest.mark.slow  # (a fresh interpreter: CI's slow step)
def test_tool_end_to_end(runs, tmp_path):
    dirs = runs["dirs"]
    proc = run_tool(dirs["a"], dirs["b"], "--weights", "1,3", "--ten-crop", "--output",
                    tmp_path / "out" / "table.md", "--submission", tmp_path / "sub.txt")
    assert proc.returncode == 0, proc.stderr
    table = (tmp_path / "out" / "table.md").read_text()
    assert table in proc.stdout
    rows = [line for line in table.splitlines() if line.startswith("| run_") or
            line.startswith("| ensemble")]
    assert len(rows) == 6 and sum("10-crop (56 px)" in r for r in rows) == 3
    assert "| run_a | dense1 | 0.25 |" in table and "| run_b | dense2 | 0.75 |" in table
    ensemble = Ensemble.of([runs["a"], runs["b"]], [1, 3])
    top1 = ensemble.evaluate("val", ten_crop=True)["top1_accuracy"]
    assert f"| ensemble | dense1+dense2 | 1 | 10-crop (56 px) | 12 | {top1:.4f} |" in table
    names, test_set = runs["a"].data.unlabelled_test()
    expected = submission_lines(names, ensemble.predict_images(test_set, ten_crop=True),
                                runs["a"].data.class_ids)
    assert check_submission(tmp_path / "sub.txt", runs["root"]) == expected


@pytest.mark.parametrize("args, message", [
    (["{a}", "{b}", "--weights", "1"], "--weights has 1 value(s) for 2 run(s)"),
    (["{a}", "--weights", "-1"], "weights must be finite numbers >= 0"),
    (["{a}", "{b}", "--weights", "0,0"], "at least one weight must be positive"),
    (["{a}", "--crop-size", "40"], "add --ten-crop"),
    (["{missing}"], "does not exist"),
    (["{a}", "--output", "{a}/config.json/table.md"], "is a file, not a folder"),
    (["{a}", "--submission", "{a}"], "is a folder"),
])
def test_tool_errors_are_one_line(runs, tmp_path, args, message, capsys, monkeypatch):
    names = dict(runs["dirs"], missing=tmp_path / "nothing")
    monkeypatch.chdir(tmp_path)
    line = cli_error(load_tool().main, [a.format(**names) for a in args], capsys)
    assert message in line
    assert not (tmp_path / "ensemble.md").exists()


def load_tool():
    return load_file("tools", "ensemble", "evaluation")


def test_tool_refuses_mismatched_runs_and_cifar_submissions(runs, tmp_path, capsys, monkeypatch):
    from tinynet.experiment import run_cli

    tool = load_tool()
    monkeypatch.chdir(tmp_path)
    dirs = runs["dirs"]
    with pytest.raises(SystemExit) as e:
        run_cli(tool.main, [dirs["a"], dirs["c"]])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and "same dataset and class list" in err[0]
    assert not (tmp_path / "ensemble.md").exists()
    # CIFAR: a labelled test split, no submission format; refused before evaluating anything
    cifar = make_run(str(tmp_path / "cifar_run"), {
        "name": "synthetic-cifar10", "args": dict(data_dir=str(tmp_path / "cifar"),
                                                  num_classes=2, train_per_class=3,
                                                  test_per_class=3)}, 4, size=32)
    with pytest.raises(SystemExit) as e:
        run_cli(tool.main, [cifar, "--submission", "sub.txt"])
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1
    assert "'synthetic-cifar10' has no challenge submission format" in err[0]
    assert not (tmp_path / "sub.txt").exists() and not (tmp_path / "ensemble.md").exists()
    # its labelled test split is evaluated instead
    run_cli(tool.main, [cifar, "--split", "test"])
    assert "| cifar_run | dense4 | 1 | full image | 6 |" in (tmp_path / "ensemble.md").read_text()


@pytest.mark.slow
def test_tool_on_a_trained_run(resnet_run, quick_data_dir, tmp_path):
    """On a run directory the runner wrote: the plain figure is the run's best validation
    accuracy, and the submission covers the --quick dataset's test images."""
    import csv

    run_dir = resnet_run
    proc = run_tool(run_dir, run_dir, "--ten-crop", "--output", tmp_path / "t.md",
                    "--submission", tmp_path / "s.txt")
    assert proc.returncode == 0, proc.stderr
    with open(run_dir / "history.csv") as f:
        best = max(float(r["val_accuracy"]) for r in csv.DictReader(f))
    assert f"| ensemble | resnet34+resnet34 | 1 | full image | 200 | {best:.4f} |" in proc.stdout
    lines = (tmp_path / "s.txt").read_text().splitlines()
    assert len(lines) == len(os.listdir(os.path.join(quick_data_dir, "test", "images")))
    assert lines == sorted(lines)
