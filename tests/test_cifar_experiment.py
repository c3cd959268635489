"""seed 004's design-space experiment end to end at tiny scale on generated CIFAR-10: the code's
protocol as data, mixup with paired targets, the test evaluation, a resume inside the run that
ends bit-identical, a continued run that records its parent, and the optimizer sweep."""
import csv
import json
import os
import pathlib

import numpy as np
import pytest

from conftest import QUICK_TEST_FLAGS, cli_error, copy_run, run_script
from test_protocol import load_script

SCRIPT = "cifar_resnet_design.py"
# the quick run: 2 epochs of 3 steps, ResNet-24 at a quarter of its channels, 10 generated
# classes, --deterministic
TINY = ["--quick", *QUICK_TEST_FLAGS["cifar_resnet_design"]]
EPOCHS = 2  # 50 x 0.04


@pytest.fixture(scope="module")
def design():
    return load_script("cifar_resnet_design")


def test_a_continuation_trains_in_a_run_directory_of_its_own(design):
    args = design.parse_args(["--run-dir", "runs/x/", "--continue-epochs", "5"])
    assert (args.run_dir, args.continue_run_dir) == ("runs/x/", "runs/x-continue5")
    assert design.parse_args(["--continue-epochs", "5", "--continue-run-dir", "y"]
                             ).continue_run_dir == "y"


def test_protocol_is_the_codes(design):
    from tinynet.training.lr import NYURule
    p = design.protocol()
    (stage,) = p.stages
    assert (stage.epochs, stage.batch_size, stage.resolution, stage.augment) == (
        200, 128, 32, "cifar_crop_flip")
    assert stage.lr == NYURule(0.1, 100, 150) and (stage.mixup.alpha, stage.mixup.per) == (1.0, "batch")
    assert p.optimizer == {"name": "adadelta", "learning_rate": 0.1, "rho": 0.9, "epsilon": 1e-6,
                           "weight_decay": 5e-4, "weight_decay_mode": "coupled",
                           "convention": "torch"}
    assert (p.normalize, p.eval_batch_size, p.val_resolution) == ("mean_std", 256, 32)
    assert p.steps_of(stage, 45_000) == 351
    assert design.MODEL == "nyu_resnet24" and (design.VAL_SPLIT, design.SPLIT_SEED) == (5000, 43)
    assert {design.protocol(o, epochs=60).optimizer["name"] for o in design.OPTIMIZERS} == {
        "adadelta", "sgd", "adagrad", "adam"}
    assert design.protocol(schedule_name="sgdr").stages[0].lr.kind == "sgdr"
    assert design.protocol(schedule_name="step").stages[0].lr.milestones == (100,)


def run_dir_files(run_dir):
    with open(run_dir / "history.csv") as f:
        rows = list(csv.DictReader(f))
    return rows, json.loads((run_dir / "config.json").read_text())


@pytest.fixture(scope="module")
def reference(shared):
    """The shared run (read-only); its generated CIFAR-10 folder."""
    run_dir, stdout = shared.quick("cifar_resnet_design")
    return pathlib.Path(shared.data("cifar_resnet_design")), run_dir, stdout


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_quick_run_end_to_end(reference):
    data_dir, run_dir, stdout = reference
    rows, config = run_dir_files(run_dir)
    assert [int(r["global_epoch"]) for r in rows] == list(range(1, EPOCHS + 1))
    assert config["model"] == "nyu_resnet24" and config["dataset"]["name"] == "synthetic-cifar10"
    assert config["dataset"]["args"]["val_split"] == 60 and config["dataset"]["num_val"] == 60
    assert config["input_std"] == pytest.approx([0.2023, 0.1994, 0.2010])
    # data_batch_1..5 / test_batch in the real pickle format, parsed by the real loader
    assert {p.name for p in data_dir.iterdir()} >= {
        "batches.meta", "data_batch_1", "data_batch_5", "test_batch"}
    test = json.loads((run_dir / "test_metrics.json").read_text())
    assert test["best_checkpoint"]["images"] == 200 and test["published"]["validation_accuracy"] == 0.9484
    assert "test: top-1" in stdout and "mixup alpha 1" in stdout


@pytest.mark.slow
def test_a_resume_after_the_first_epoch_is_bit_identical(reference, tmp_path):
    """Mixup's pairing, Adadelta's accumulators and the NYU rule carry over a resume: the run
    as a kill during epoch 2 leaves it (the fault battery kills everywhere else) ends as the
    uninterrupted run."""
    data_dir, ref_dir, _ = reference
    run_dir = copy_run(ref_dir, tmp_path / "run")
    for name in (f"checkpoints/ckpt-{EPOCHS:05d}.npz", "final_model.keras"):
        os.remove(run_dir / name)
    args = [*TINY, "--data-dir", data_dir, "--run-dir", run_dir]
    assert "from ckpt-00001.npz" in run_script(SCRIPT, *args).stdout
    name = f"ckpt-{EPOCHS:05d}.npz"
    with np.load(ref_dir / "checkpoints" / name) as a, np.load(run_dir / "checkpoints" / name) as b:
        keys = [k for k in a.files if k != "meta"]
        assert len(keys) > 50
        for key in keys:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(run_dir_files(run_dir)[0]) == strip(run_dir_files(ref_dir)[0])
    assert (run_dir / "lr.csv").read_text() == (ref_dir / "lr.csv").read_text()


@pytest.mark.slow  # (18 s: CI's slow step keeps the default run in budget)
def test_continue_epochs_starts_from_the_parent(reference, tmp_path):
    data_dir, ref_dir, _ = reference
    proc = run_script(SCRIPT, *TINY, "--data-dir", data_dir, "--run-dir", ref_dir,
                      "--continue-epochs", "25", "--continue-run-dir", tmp_path / "more")
    assert "initialised from" in proc.stdout
    rows, config = run_dir_files(tmp_path / "more")
    assert config["parent"]["run_dir"] == str(ref_dir) and config["parent"]["completed_epochs"] == EPOCHS
    assert len(rows) == 1 and float(rows[0]["lr"]) == pytest.approx(0.1)  # the rule restarts
    again = run_script(SCRIPT, *TINY, "--data-dir", data_dir, "--run-dir", ref_dir,
                       "--continue-epochs", "25", "--continue-run-dir", tmp_path / "more")
    assert "done: 1 epochs" in again.stdout  # re-running the command finds the finished run


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_a_resume_with_another_split_and_a_continuation_of_an_unfinished_run_are_refused(
        reference, design, tmp_path, capsys):
    data_dir, ref_dir, _ = reference
    before = (ref_dir / "config.json").read_bytes()
    last = cli_error(design.main, [*TINY, "--data-dir", data_dir, "--run-dir", ref_dir,
                                   "--split-seed", "7"], capsys)
    assert "holds a run with a different dataset_spec" in last
    assert (ref_dir / "config.json").read_bytes() == before
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "checkpoints"):
        (unfinished / name).symlink_to(ref_dir / name)
    (unfinished / "state.json").write_text(json.dumps({"status": "running", "completed_epochs": 1,
                                                       "total_epochs": 2}))
    last = cli_error(design.main, [*TINY, "--data-dir", data_dir, "--run-dir", unfinished,
                                   "--continue-epochs", "25"], capsys)
    assert "that run is not finished (1 of 2 epochs)" in last
    last = cli_error(design.main, [*TINY, "--data-dir", data_dir, "--run-dir", ref_dir,
                                   "--continue-epochs", "25", "--optimizer", "sgd",
                                   "--continue-run-dir", tmp_path / "sgd"], capsys)
    assert "continue with the same optimizer" in last and not (tmp_path / "sgd").exists()


@pytest.mark.slow
def test_optimizer_sweep_writes_a_run_per_optimizer_and_a_table(reference, tmp_path):
    data_dir, _, _ = reference
    run_script(SCRIPT, "--quick", "--width", "0.25", "--epochs-scale", "0.01",
               "--steps-per-epoch", "1", "--sweep-optimizers", "--data-dir", data_dir,
               "--run-dir", tmp_path / "sweep")
    table = (tmp_path / "sweep" / "sweep.md").read_text()
    for name in ("adadelta", "adam", "sgd", "sgdn", "adagrad"):
        assert json.loads((tmp_path / "sweep" / name / "state.json").read_text())["status"] == "complete"
        assert f"| {name} |" in table
