"""The experiment script's command line: help, and one-line errors with exit status 2."""
import pytest

from conftest import run_script


def test_help_lists_the_flags():
    proc = run_script("densenet_model1.py", "--help")
    for flag in ("--stages", "--data-dir", "--dataset", "--run-dir", "--epochs-scale",
                 "--steps-per-epoch", "--width", "--seed", "--deterministic", "--restart", "--quick"):
        assert flag in proc.stdout


@pytest.mark.parametrize("args,message", [
    (["--stages", "128"], "argument --stages: invalid choice: '128'"),
    (["--width", "-1"], "argument --width: expected a positive number, got '-1'"),
    (["--epochs-scale", "0"], "argument --epochs-scale: expected a positive number, got '0'"),
    (["--steps-per-epoch", "2.5"], "argument --steps-per-epoch: expected a positive integer"),
    (["--determ"], "unrecognized arguments: --determ"),
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
