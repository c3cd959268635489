"""The progressive protocol end to end at tiny scale, and a run killed with SIGKILL mid-stage
that ends bit-identical to an uninterrupted one (``--deterministic``)."""
import csv
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tinynet.training.rundir import HISTORY_COLUMNS

from conftest import REPO, TINY_RUN, TINY_RUN_EPOCHS, run_script

# every test reads or trains Model 1's protocol end to end: CI's slow step
pytestmark = pytest.mark.slow


def tiny_args(data_dir, run_dir, *extra):
    return [*TINY_RUN, "--data-dir", data_dir, "--run-dir", run_dir, *extra]


def history(run_dir):
    with open(run_dir / "history.csv") as f:
        return list(csv.DictReader(f))


def final_checkpoint(run_dir):
    with np.load(run_dir / "checkpoints" / f"ckpt-{TINY_RUN_EPOCHS:05d}.npz") as data:
        return {k: data[k] for k in data.files}


def test_progressive_protocol_end_to_end(model1_run):
    run_dir, stdout = model1_run
    rows = history(run_dir)
    assert list(rows[0]) == list(HISTORY_COLUMNS)
    assert [int(r["global_epoch"]) for r in rows] == list(range(1, TINY_RUN_EPOCHS + 1))
    assert [int(r["stage"]) for r in rows] == [1, 2, 3, 4, 5, 5, 5, 5]
    assert [int(r["resolution"]) for r in rows] == [32, 64, 16, 64, 64, 64, 64, 64]
    assert all(np.isfinite(float(r[c])) for r in rows for c in HISTORY_COLUMNS)
    lines = [l for l in stdout.splitlines() if l.startswith("stage ")]
    assert len(lines) == TINY_RUN_EPOCHS and "stage 3/5 16px epoch 1/1 global 3/8" in lines[2]
    assert "ETA" in lines[0]
    state = json.loads((run_dir / "state.json").read_text())
    assert state["status"] == "complete" and state["completed_epochs"] == TINY_RUN_EPOCHS
    config = json.loads((run_dir / "config.json").read_text())
    assert set(config["versions"]) >= {"tensorflow", "keras", "numpy"}
    assert [s["resolution"] for s in config["protocol"]["stages"]] == [32, 64, 16, 64, 64]
    for name in ("best_model.keras", "final_model.keras", "plots/training_curves.png"):
        assert (run_dir / name).stat().st_size > 1000
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["ckpt-00007.npz", "ckpt-00008.npz"]


def test_saved_model_loads_in_a_fresh_process_and_predicts_identically(model1_run, tmp_path):
    run_dir, _ = model1_run
    x = np.random.default_rng(0).random((4, 64, 64, 3), np.float32)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, keras, tinynet.layers; "
            "m = keras.models.load_model(sys.argv[1]); "
            "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))")
    subprocess.run([sys.executable, "-c", code, str(run_dir / "final_model.keras"),
                    str(tmp_path / "x.npy"), str(tmp_path / "y.npy")], check=True, cwd=REPO)
    from tinynet.models import get_model
    model = get_model("densenet_model1", num_classes=20, width=0.0625)
    arrays = final_checkpoint(run_dir)
    for i, v in enumerate(model.variables):
        v.assign(arrays[f"model_{i:05d}"])
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-7)


# SIGKILL inside a stage (and inside every kind of write) then resume: tests/test_fault_battery.py
# (20 kills, bit-identical); the stage-boundary resume: tests/test_model2.py.


# ~25-35 s: CI's slow step (the default suite keeps the 10-minute budget)
@pytest.mark.slow
def test_another_run_dir_is_refused_until_restart(model1_run, quick_data_dir, tmp_path):
    ref_dir, _ = model1_run
    run_dir = tmp_path / "run"
    shutil.copytree(ref_dir, run_dir)
    before = (run_dir / "config.json").read_bytes()
    proc = run_script("densenet_model1.py", *tiny_args(quick_data_dir, run_dir, "--stages", "64"),
                      check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert "holds a run with a different protocol" in last and "--restart" in last
    assert (run_dir / "config.json").read_bytes() == before

    run_script("densenet_model1.py", *tiny_args(quick_data_dir, run_dir, "--stages", "64",
                                                "--epochs-scale", "0.005", "--restart"))
    rows = history(run_dir)
    assert [int(r["resolution"]) for r in rows] == [64] * 5
    assert json.loads((run_dir / "config.json").read_text())["protocol"]["name"] == \
        "densenet_model1_64px"
