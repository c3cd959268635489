"""tinynet.papers.denresnet: the paper's per-backbone schedule as data, the two-phase option,
``--quick`` end to end on generated Tiny ImageNet without a download, one-line refusals, and
the plateau rule's state and the best model across a resume inside an epoch."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tinynet.papers import denresnet

from conftest import REPO, cli_error, run_script, run_script_and_kill_at
from shared_runs import keras_home

SCRIPT = "denresnet.py"


def test_schedule_is_the_papers():
    # section 3.3: batch 128 for ResNet18, 64 for ResNet34/50, 24 for ResNet101/152 and
    # DenseNet121; 50 epochs for ResNet18, 10 for the rest
    expected = {"resnet18": (128, 50), "resnet34": (64, 10), "resnet50": (64, 10),
                "resnet101": (24, 10), "resnet152": (24, 10), "densenet121": (24, 10)}
    for backbone, (batch, epochs) in expected.items():
        p = denresnet.protocol(backbone)
        assert [(s.batch_size, s.epochs) for s in p.stages] == [(batch, epochs)]
        stage = p.stages[0]
        assert stage.augment == "flip" and stage.freeze == () and p.normalize is None
        assert (stage.lr.factor, stage.lr.patience, stage.lr.monitor) == (0.1, 2, "val_accuracy")
        assert p.optimizer == {"name": "sgd", "learning_rate": 0.01, "momentum": 0.9,
                               "weight_decay": 1e-4, "weight_decay_mode": "coupled",
                               "convention": "torch"}


def test_two_phase_freezes_the_backbone_then_fine_tunes_everything_at_a_lower_lr():
    p = denresnet.protocol("resnet101", plateau_patience=3, two_phase=True, head_fraction=0.3)
    head, whole = p.stages
    assert (head.epochs, whole.epochs) == (3, 7)
    assert head.freeze == ("backbone",) and whole.freeze == ()
    assert head.optimizer is None and whole.optimizer["learning_rate"] == 0.001
    assert whole.lr.patience == 3
    # each phase keeps at least one epoch
    assert [s.epochs for s in denresnet.protocol("resnet50", two_phase=True,
                                                 head_fraction=0.01).stages] == [1, 9]
    assert [s.epochs for s in denresnet.protocol("resnet50", two_phase=True,
                                                 head_fraction=0.99).stages] == [9, 1]


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_quick_runs_end_to_end_without_a_download(shared):
    # the quick run: 2 epochs of 3 steps, and the 10-crop evaluation
    run_dir, stdout = shared.quick("denresnet")
    config = json.loads((run_dir / "config.json").read_text())
    assert config["model"] == "transfer_resnet18"
    assert config["model_kwargs"] == {"image_size": 32, "weights": None,
                                      "source": "torchvision", "batch_norm": "torch"}
    assert config["paper"]["figures"][0]["value"] == 0.200
    assert "generated data" in " ".join(config["paper"]["differences"])
    evaluation = json.loads((run_dir / "evaluation.json").read_text())
    assert set(evaluation) >= {"val", "val_ten_crop"} and evaluation["crop_size"] == 56
    assert abs(evaluation["val"]["top1_accuracy"]
               - json.loads((run_dir / "state.json").read_text())["best_val_accuracy"]) < 1e-6
    assert "val ten crop: top-1" in stdout
    assert not os.path.exists(os.path.join(keras_home(run_dir.parent.parent), "models"))


@pytest.mark.parametrize("args,message", [
    (["--weights", "nowhere.weights.h5"], "no such file"),
    (["--head-fraction", "1.5"], "--head-fraction must be in (0, 1)"),
    (["--crop-size", "65"], "--crop-size"),
    (["--weights", "imagenet"], "needs torch: pip install torch"),  # torchvision's, no torch
    (["--weights", "imagenet", "--backbone-source", "keras"], "keras.applications has no"),
    (["--weights", "."], "a folder, not a file"),
])
def test_bad_input_is_one_line_exit_2(args, message, quick_data_dir, tmp_path, capsys,
                                      monkeypatch):
    monkeypatch.chdir(tmp_path)  # (a relative --weights path is looked up here)
    monkeypatch.setitem(sys.modules, "torch", None)  # as in CI: torch not installed
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))  # no converted weights
    line = cli_error(denresnet.main, ["--quick", "--data-dir", quick_data_dir,
                                      "--run-dir", tmp_path / "run", *args], capsys)
    assert message in line and "error: " in line
    assert not (tmp_path / "run").exists()


# Two phases (frozen backbone, then a new optimizer) killed inside phase two and resumed:
# tests/test_stage_setup.py (the same protocol shape through the runner, bit-identical), the
# backbone's freezing: test_stage_setup.py and test_transfer.py; kills at every kind of moment:
# tests/test_fault_battery.py.


# -- the plateau rule and the best model across an epoch resumed inside (slow: two runs) -------
PLATEAU = ["--quick", "--epochs-scale", "0.1", "--steps-per-epoch", "3", "--plateau-patience",
           "0", "--deterministic"]  # 5 epochs of one stage under ReduceLROnPlateau


def saved_weights(path):
    import keras
    import tinynet  # noqa: F401
    return [np.asarray(w) for w in keras.models.load_model(path).weights]


@pytest.mark.slow
def test_plateau_state_and_best_model_survive_a_resume_inside_an_epoch(quick_data_dir, tmp_path):
    ref_dir, run_dir = tmp_path / "ref", tmp_path / "run"
    run_script(SCRIPT, *PLATEAU, "--checkpoint-every", "off", "--data-dir", quick_data_dir,
               "--run-dir", ref_dir)
    status = run_script_and_kill_at(
        SCRIPT, *PLATEAU, "--checkpoint-every", "1steps", "--data-dir", quick_data_dir,
        "--run-dir", run_dir,
        path=run_dir / "checkpoints" / "ckpt-00001-s000002.npz")  # inside epoch 2 of 5
    assert status == -signal.SIGKILL
    run_script(SCRIPT, *PLATEAU, "--checkpoint-every", "1steps", "--data-dir", quick_data_dir,
               "--run-dir", run_dir)
    # epochs 3 to 5 ran in a second fit after the resumed epoch: its ReduceLROnPlateau must
    # continue from epoch 2's end, not from the checkpoint inside it
    with np.load(ref_dir / "checkpoints" / "ckpt-00005.npz") as a, \
            np.load(run_dir / "checkpoints" / "ckpt-00005.npz") as b:
        for k in a.files:
            if k != "meta":
                np.testing.assert_array_equal(b[k], a[k], err_msg=k)
        assert json.loads(str(b["meta"]))["callbacks"] == json.loads(str(a["meta"]))["callbacks"]
    assert (run_dir / "lr.csv").read_text() == (ref_dir / "lr.csv").read_text()
    # (on the generated data validation accuracy peaks in epoch 3 and falls in epoch 4, so the
    # lr drops for epoch 5: the rule's best, carried through the resume, decided that drop)
    assert len(set(l.split(",")[2] for l in (ref_dir / "lr.csv").read_text().splitlines()[1:])) > 1
    for got, want in zip(saved_weights(run_dir / "best_model.keras"),
                         saved_weights(ref_dir / "best_model.keras")):
        np.testing.assert_array_equal(got, want)


@pytest.mark.slow  # (a fresh interpreter signalled mid-run)
def test_sigterm_during_the_evaluation_after_training_exits_at_once_and_is_redone(
        shared, tmp_path):
    """Once training has ended SIGTERM keeps its default, so a signal anywhere in the
    post-training (10-crop) evaluation ends the process at once; evaluation.json is written
    atomically, so it is absent, not partial, and the same command evaluates again (training
    is complete) and writes what the uninterrupted run wrote."""
    from shared_runs import QUICK_TEST_FLAGS, copy_run
    from tinynet.io import PAUSE_ENV

    reference, _ = shared.quick("denresnet")
    run_dir = copy_run(reference, tmp_path / "run")
    os.remove(run_dir / "evaluation.json")
    args = ["--quick", *QUICK_TEST_FLAGS["denresnet"], "--data-dir", shared.data("denresnet"),
            "--run-dir", run_dir]
    env = dict(os.environ, **{PAUSE_ENV: "120:evaluation.json"})
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "experiments", SCRIPT),
                             *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env=env)
    for line in proc.stderr:
        if line.startswith("tinynet-test: paused before rename"):
            break
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGTERM and time.monotonic() - signalled < 10
    assert not (run_dir / "evaluation.json").exists()

    again = run_script(SCRIPT, *args)
    assert "val ten crop: top-1" in again.stdout
    assert json.loads((run_dir / "evaluation.json").read_text()) == \
        json.loads((reference / "evaluation.json").read_text())
    assert not [n for n in os.listdir(run_dir) if n.startswith(".tmp-")]


def test_torchvision_backbones_are_the_transfer_modules():
    """The paper module keeps its own copy (it is importable without Keras)."""
    from tinynet.models import transfer

    assert denresnet.TORCHVISION_BACKBONES == transfer.TORCHVISION_BACKBONES
