"""The second battery of bad input and faults (issue 22), each case on data or at the flags,
without training: one line, exit status 2, nothing written, and no advice that destroys a run."""
import json
import os

import pytest

from tinynet.papers import get_paper

from conftest import cli_error


def tree(folder):
    return sorted(os.path.relpath(os.path.join(r, f), folder)
                  for r, _, files in os.walk(folder) for f in files)


def test_continuing_into_the_parent_itself_is_refused_saying_so(tmp_path, capsys):
    parent = tmp_path / "parent"
    parent.mkdir()
    (parent / "config.json").write_text("{}")
    (parent / "state.json").write_text(json.dumps({"status": "complete"}))
    before = tree(tmp_path)
    for same in (parent, tmp_path / "." / "parent", str(parent) + "/"):
        line = cli_error(get_paper("cifar_resnet_design").main,
                         ["--quick", "--continue-epochs", "1", "--run-dir", parent,
                          "--continue-run-dir", same], capsys)
        assert "is the --run-dir itself" in line and "another --continue-run-dir" in line
        assert "--restart" not in line and "{" not in line  # (no protocol dicts)
    assert tree(tmp_path) == before


def test_a_protocol_difference_is_named_in_a_few_words():
    from tinynet.training.identity import describe_difference

    recorded = {"name": "p", "stages": [{"epochs": 3, "lr": 0.1, "recipe": "x" * 200}]}
    now = {"name": "p", "stages": [{"epochs": 4, "lr": 0.1, "recipe": "x" * 200}]}
    said = describe_difference(recorded, now, "config.json")
    assert said == "stages[0].epochs: 3 in config.json, 4 now"
    assert describe_difference(1, 2, "config.json") == "1 in config.json, 2 now"


@pytest.mark.parametrize("argv,flag", [
    (["--checkpoint-every", "-5m"], "--checkpoint-every=<value>"),
    (["--seed", "-x"], "--seed=<value>"),
])
def test_a_value_starting_with_a_dash_is_told_how_to_pass(argv, flag, tmp_path, capsys):
    line = cli_error(get_paper("densenet_model1").main,
                     ["--quick", *argv, "--run-dir", tmp_path / "run"], capsys)
    assert flag in line and "expected one argument" in line
    assert not (tmp_path / "run").exists()


# -- refused before anything is written -----------------------------------------------------------
def refused(tmp_path, capsys, paper, *argv):
    """``paper``'s command with ``argv`` on a fresh --data-dir and --run-dir: one line, exit 2,
    and neither folder made (the generated data included)."""
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    line = cli_error(get_paper(paper).main,
                     ["--quick", *argv, "--data-dir", data_dir, "--run-dir", run_dir], capsys)
    assert not data_dir.exists() and not run_dir.exists(), line
    return line


def test_a_backend_that_is_not_installed_is_one_line(tmp_path, capsys, monkeypatch):
    import importlib.util

    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "torch" else find_spec(name, *a))
    line = refused(tmp_path, capsys, "multi_resnet_cifar", "--backend", "torch")
    assert "--backend torch: PyTorch is not installed here; pip install torch" in line


def test_tf_distribute_under_another_backend_is_refused_up_front(tmp_path, capsys):
    pytest.importorskip("jax")
    line = refused(tmp_path, capsys, "multi_resnet_cifar", "--backend", "jax",
                   "--strategy", "mirrored", "--devices", "2")
    assert "--strategy mirrored is tf.distribute's" in line and "--backend tensorflow" in line


def test_more_devices_than_can_be_made_is_refused_at_once(tmp_path, capsys):
    import time

    start = time.monotonic()
    line = refused(tmp_path, capsys, "multi_resnet_cifar", "--strategy", "mirrored",
                   "--devices", "100000")
    assert "100000 CPU devices" in line and "at most 64" in line
    assert time.monotonic() - start < 30  # (it hung for minutes)


@pytest.mark.parametrize("argv,said", [
    (["--image-size", "16"], "--image-size: expected an image size in pixels, got '16'"),
    (["--image-size", "100000"], "32 (keras.applications' smallest input) to 1024"),
])
def test_denresnet_image_size_is_checked_as_a_flag(argv, said, tmp_path, capsys):
    assert said in refused(tmp_path, capsys, "denresnet", *argv)


def test_a_weights_folder_is_named_as_a_folder(tmp_path, capsys):
    (tmp_path / "weights").mkdir()
    line = refused(tmp_path, capsys, "denresnet", "--weights", tmp_path / "weights")
    assert "a folder, not a file" in line


def test_multi_resnet_bottleneck_with_shortcut_a_names_the_flags(tmp_path, capsys):
    line = refused(tmp_path, capsys, "multi_resnet_cifar", "--block", "bottleneck",
                   "--shortcut", "A")
    assert "--shortcut A does not go with --block bottleneck" in line
    assert "shortcut=None" not in line


def test_unknown_model_is_refused_before_data_is_generated(tmp_path, capsys):
    line = refused(tmp_path, capsys, "cifar_resnet_design", "--model", "nyu_resnet999")
    assert "--model nyu_resnet999: no such model" in line and "nyu_resnet24" in line


@pytest.mark.parametrize("argv,said", [
    (["--data-on-device"], "add --augment-backend native"),
    (["--data-on-device", "--augment-backend", "native", "--cache", "none"],
     "drop --cache none"),
])
def test_device_input_combinations_are_refused_before_data_is_generated(argv, said, tmp_path,
                                                                        capsys):
    assert said in refused(tmp_path, capsys, "densenet_model2", *argv)


# -- damaged files read by the tools ----------------------------------------------------------------
@pytest.mark.parametrize("damage", ["random bytes", "truncated zip"])
def test_a_damaged_saved_model_is_named_as_damaged(damage, tmp_path):
    import zipfile

    from tinynet.evaluation import load_model_file
    from conftest import one_line_error

    path = tmp_path / "best_model.keras"
    if damage == "random bytes":
        path.write_bytes(os.urandom(4096))
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("config.json", "{" * 5000)
        path.write_bytes(path.read_bytes()[:-40])
    message = one_line_error(load_model_file, str(path))
    assert f"{path} is damaged" in message and "File not found" not in message


def test_garbage_checkpoint_does_not_repeat_numpys_pickle_advice(tmp_path):
    from tinynet.training import checkpoint

    path = tmp_path / "ckpt-00002.npz"
    path.write_bytes(b"not a checkpoint" * 64)
    with pytest.raises(ValueError) as info:
        checkpoint.read_checkpoint(str(path))
    assert "allow_pickle" not in str(info.value) and "damaged" in str(info.value)


def test_report_on_a_binary_history_is_one_line(tmp_path, capsys):
    from conftest import load_file
    from test_report import a_paper, write_run

    run_dir = write_run(tmp_path / "run", a_paper())
    (run_dir / "history.csv").write_bytes(os.urandom(2048) + b"\xff\xfe")
    line = cli_error(load_file("tools", "report").main, [run_dir], capsys)
    assert "history.csv" in line and "unreadable" in line


# -- tools/tune.py --storage ------------------------------------------------------------------------
@pytest.fixture
def tune():
    pytest.importorskip("optuna")
    from conftest import load_file
    return load_file("tools", "tune")


def test_bad_study_storages_are_one_line_and_make_no_study_folder(tune, tmp_path, capsys,
                                                                 monkeypatch):
    import sqlite3

    corrupt = tmp_path / "corrupt.db"
    corrupt.write_bytes(b"this is not SQLite" * 100)
    locked = tmp_path / "locked.db"
    holder = sqlite3.connect(locked)
    holder.execute("create table t (x)")
    holder.execute("begin exclusive")
    monkeypatch.setattr(tune, "SQLITE_TIMEOUT", 1)
    cases = {"not-a-url": "not a database URL",
             f"sqlite:///{tmp_path}/missing/folder/study.db": "its folder is missing",
             f"sqlite:///{corrupt}": "not a SQLite database",
             f"sqlite:///{locked}": "another process holds it locked"}
    try:
        for storage, said in cases.items():
            study_dir = tmp_path / "study"
            line = cli_error(tune.main, ["multi_resnet_cifar", "--quick", "--study-dir",
                                         study_dir, "--storage", storage], capsys)
            assert said in line, line
            assert not study_dir.exists()
    finally:
        holder.rollback()
        holder.close()
