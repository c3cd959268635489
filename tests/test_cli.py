"""A paper's and a tool's command line: help, and one-line errors with exit status 2, run in
this process through ``run_cli`` as the command does (``tests/test_bad_input.py`` keeps one
refusal in a process of its own)."""
import pytest

from tinynet.papers import get_paper

from conftest import cli_error, cli_output, load_file


def test_help_lists_the_flags(capsys):
    out = cli_output(get_paper("densenet_model1").main, ["--help"], capsys)
    for flag in ("--stages", "--data-dir", "--dataset", "--run-dir", "--epochs-scale",
                 "--steps-per-epoch", "--width", "--seed", "--deterministic", "--restart", "--quick",
                 "--strategy", "--devices", "--sync-bn", "--model-parallel"):
        assert flag in out


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
def test_bad_arguments_give_one_line(args, message, capsys):
    assert message in cli_error(get_paper("densenet_model1").main, args, capsys)


def test_missing_dataset_gives_one_line(tmp_path, capsys):
    line = cli_error(get_paper("densenet_model1").main, [
        "--data-dir", tmp_path, "--no-download", "--run-dir", tmp_path / "run"], capsys)
    assert line.startswith("error: no Tiny ImageNet in") and "tiny-imagenet-200.zip" in line
    assert not (tmp_path / "run").exists()


def test_preview_writes_a_grid_per_recipe(tmp_path, capsys):
    import matplotlib.pyplot as plt
    cli_output(load_file("tools", "preview_augmentations").main, [
        "--recipe", "all", "--dataset", "synthetic", "--data-dir", tmp_path / "data",
        "--out", tmp_path / "out", "--images", 2, "--versions", 2], capsys)
    from tinynet.augment import list_recipes
    for recipe in list_recipes():
        grid = plt.imread(tmp_path / "out" / f"{recipe}.png")
        assert grid.ndim == 3 and grid.shape[0] > 100 and grid.shape[1] > 100


def test_tools_reject_bad_arguments_in_one_line(tmp_path, capsys):
    line = cli_error(load_file("tools", "preview_augmentations").main,
                     ["--recipe", "mixup", "--out", tmp_path], capsys)
    assert "error: unknown recipe 'mixup'" in line
    line = cli_error(load_file("tools", "benchmark").main, ["train", "--models", "resnet9000"],
                     capsys)
    assert "error: unknown model(s) ['resnet9000']" in line


def test_model2_script_flags(capsys):
    main = get_paper("densenet_model2").main
    out = cli_output(main, ["--help"], capsys)
    assert "--optimizer" in out and "--quick" in out
    assert "invalid choice: 'sgd'" in cli_error(main, ["--optimizer", "sgd"], capsys)
