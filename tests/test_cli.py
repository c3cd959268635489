"""The experiment script's command line: help, and one-line errors with exit status 2."""
import pytest

from conftest import run_script


def test_help_lists_the_flags():
    proc = run_script("densenet_model1.py", "--help")
    for flag in ("--stages", "--data-dir", "--dataset", "--run-dir", "--epochs-scale",
                 "--steps-per-epoch", "--width", "--seed", "--deterministic", "--restart", "--quick",
                 "--strategy", "--devices", "--sync-bn", "--model-parallel"):
        assert flag in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--stages", "128"], "argument --stages: invalid choice: '128'"),
    (["--width", "-1"], "argument --width: expected a positive number, got '-1'"),
    (["--epochs-scale", "0"], "argument --epochs-scale: expected a positive number, got '0'"),
    (["--steps-per-epoch", "2.5"], "argument --steps-per-epoch: expected a positive integer"),
    (["--determ"], "unrecognized arguments: --determ"),
    (["--strategy", "horovod"], "argument --strategy: invalid choice: 'horovod'"),
    (["--devices", "GPU"], "invalid device name 'GPU'"),
    (["--model-parallel", "CPU:0,CPU:0"], "names a device twice"),
])
def test_bad_arguments_give_one_line(args, message):
    proc = run_script("densenet_model1.py", *args, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and message in proc.stderr and "Traceback" not in proc.stderr


def test_missing_dataset_gives_one_line(tmp_path):
    proc = run_script("densenet_model1.py", "--data-dir", tmp_path, "--no-download",
                      "--run-dir", tmp_path / "run", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no Tiny ImageNet in") and "tiny-imagenet-200.zip" in last
    assert not (tmp_path / "run").exists()


def _run_tool(*args):
    import os
    import subprocess
    import sys

    from conftest import REPO
    return subprocess.run([sys.executable, os.path.join(REPO, "tools", args[0]), *map(str, args[1:])],
                          capture_output=True, text=True, timeout=300)


def test_preview_writes_a_grid_per_recipe(tmp_path):
    import matplotlib.pyplot as plt
    proc = _run_tool("preview_augmentations.py", "--recipe", "all", "--dataset", "synthetic",
                     "--data-dir", tmp_path / "data", "--out", tmp_path / "out",
                     "--images", 2, "--versions", 2)
    assert proc.returncode == 0, proc.stderr
    from tinynet.augment import list_recipes
    for recipe in list_recipes():
        grid = plt.imread(tmp_path / "out" / f"{recipe}.png")
        assert grid.ndim == 3 and grid.shape[0] > 100 and grid.shape[1] > 100


def test_tools_reject_bad_arguments_in_one_line(tmp_path):
    # (these tools import TensorFlow before checking, so its start-up log may precede the line)
    proc = _run_tool("preview_augmentations.py", "--recipe", "mixup", "--out", tmp_path)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "error: unknown recipe 'mixup'" in last
    assert "Traceback" not in proc.stderr
    proc = _run_tool("benchmark.py", "train", "--models", "resnet9000")
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode == 2 and "error: unknown model(s) ['resnet9000']" in last


def test_model2_script_flags():
    proc = run_script("densenet_model2.py", "--help")
    assert "--optimizer" in proc.stdout and "--quick" in proc.stdout
    proc = run_script("densenet_model2.py", "--optimizer", "sgd", check=False)
    assert proc.returncode == 2 and "invalid choice: 'sgd'" in proc.stderr
