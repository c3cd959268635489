"""Checkpoints inside an epoch (``--checkpoint-every``) and SIGTERM (a preemptible VM's notice):
the file names and their order, the interval flag, and end to end: a run killed or terminated
inside an epoch resumes at that step and ends bit-identical to an uninterrupted one -- weights,
optimizer state, history (training metrics included) and lr.csv."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from tinynet.experiment import parse_interval
from tinynet.training import checkpoint

from conftest import REPO, TINY_RUN as TINY, cli_error, run_script

SCRIPT = "densenet_model1.py"  # TINY: 8 epochs of 4 steps, every stage of the protocol


def test_in_epoch_checkpoint_names_sort_after_their_epoch(tmp_path):
    folder = tmp_path / checkpoint.FOLDER
    folder.mkdir()
    names = ["ckpt-00002.npz", "ckpt-00002-s000010.npz", "ckpt-00002-s000003.npz",
             "ckpt-00003.npz", "ckpt-00001-s000999.npz", "stage-1-best.npz", ".tmp-x-ckpt-9.npz"]
    for n in names:
        (folder / n).write_bytes(b"")
    assert [os.path.basename(p) for p in checkpoint.list_checkpoints(str(tmp_path))] == [
        "ckpt-00003.npz", "ckpt-00002-s000010.npz", "ckpt-00002-s000003.npz",
        "ckpt-00002.npz", "ckpt-00001-s000999.npz"]
    assert checkpoint.checkpoint_path("r", 2, 10).endswith("ckpt-00002-s000010.npz")
    assert checkpoint.checkpoint_path("r", 2).endswith("ckpt-00002.npz")


def test_checkpoint_interval_flag():
    assert parse_interval("10m") == ("seconds", 600.0)
    assert parse_interval("90s") == ("seconds", 90.0)
    assert parse_interval("1.5h") == ("seconds", 5400.0)
    assert parse_interval("500steps") == ("steps", 500)
    assert parse_interval("off") is None
    for bad in ("10", "-1m", "1.5steps", "soon"):
        with pytest.raises(ValueError, match="expected a duration"):
            parse_interval(bad)


def test_in_epoch_callback_saves_on_schedule_and_stops_on_sigterm():
    from tinynet.errors import Preempted
    from tinynet.training.callbacks import InEpochCheckpoint, PreemptionFlag

    saved, said = [], []

    def save(epoch, steps, metric_arrays=None):
        saved.append((epoch, steps))
        return f"ckpt-{epoch:05d}-s{steps:06d}.npz"

    def callback(interval=None, flag=None):
        return InEpochCheckpoint(save, 5, interval, flag, log=said.append,
                                 checkpoint_name=lambda n: f"ckpt-{n:05d}.npz")

    every_two = callback(("steps", 2))
    for epoch in (0, 1):
        every_two.on_epoch_begin(epoch)
        for step in range(5):
            every_two.on_train_batch_end(step)
        every_two.on_epoch_end(epoch)
    # steps 2 and 4 of each epoch, never its last step (the epoch's own checkpoint follows)
    assert saved == [(0, 2), (0, 4), (1, 2), (1, 4)]

    saved.clear()
    flag = PreemptionFlag()
    during_step = callback(flag=flag)
    during_step.on_epoch_begin(3)
    during_step.on_train_batch_end(0)
    flag.received = signal.SIGTERM
    with pytest.raises(Preempted):
        during_step.on_train_batch_end(1)
    assert saved == [(3, 2)] and "ckpt-00003-s000002.npz" in said[-1]

    saved.clear()
    flag.received = None
    during_validation = callback(flag=flag)
    during_validation.on_epoch_begin(3)
    for step in range(5):
        during_validation.on_train_batch_end(step)
    flag.received = signal.SIGTERM  # after the validation: the epoch's checkpoint is written
    with pytest.raises(Preempted):
        during_validation.on_epoch_end(3)
    assert saved == [] and "stopped after epoch 4" in said[-1] and "ckpt-00004.npz" in said[-1]

    # inside the validation: stopped after its batch in flight, the epoch's training saved
    flag.received = None
    in_validation = callback(flag=flag)
    in_validation.on_epoch_begin(3)
    for step in range(5):
        in_validation.on_train_batch_end(step)
    in_validation.on_test_begin()
    in_validation.on_test_batch_end(0)
    flag.received = signal.SIGTERM
    with pytest.raises(Preempted):
        in_validation.on_test_batch_end(1)
    assert saved == [(3, 5)] and "during the validation of epoch 4" in said[-1]
    # an evaluate of its own inside an epoch (not fit's validation) does not stop it
    saved.clear()
    other = callback(flag=flag)
    other.on_epoch_begin(3)
    other.on_test_begin()
    other.on_test_batch_end(0)
    assert saved == []


def test_bad_interval_is_one_line_exit_2(tmp_path, capsys):
    from tinynet.papers import get_paper

    line = cli_error(get_paper("densenet_model1").main, [
        "--quick", "--checkpoint-every", "often", "--run-dir", tmp_path / "run"], capsys)
    assert "--checkpoint-every" in line
    assert not (tmp_path / "run").exists()


# -- end to end (slow: three tiny runs of ~40 s each) ------------------------------------------
def start(run_dir, data_dir, *extra):
    cmd = [sys.executable, os.path.join(REPO, "experiments", SCRIPT), *TINY,
           "--data-dir", str(data_dir), "--run-dir", str(run_dir), *map(str, extra)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(predicate, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def assert_same_run(run_dir, ref_dir, epochs=8):
    name = f"ckpt-{epochs:05d}.npz"
    with np.load(ref_dir / "checkpoints" / name) as a, np.load(run_dir / "checkpoints" / name) as b:
        keys = [k for k in a.files if k != "meta"]
        assert len(keys) > 100 and set(keys) == set(b.files) - {"meta"}
        for k in keys:
            np.testing.assert_array_equal(b[k], a[k], err_msg=k)
    history = [pd.read_csv(d / "history.csv").drop(columns="seconds") for d in (run_dir, ref_dir)]
    pd.testing.assert_frame_equal(*history)  # training loss/accuracy of the resumed epoch too
    assert (run_dir / "lr.csv").read_text() == (ref_dir / "lr.csv").read_text()


@pytest.mark.slow
def test_sigterm_at_a_random_step_checkpoints_exits_143_and_resumes(model1_run, quick_data_dir,
                                                                    tmp_path):
    reference, _ = model1_run
    delay = random.Random(os.getpid()).uniform(0.0, 6.0)
    run_dir = tmp_path / "run"
    proc = start(run_dir, quick_data_dir)  # no --checkpoint-every: SIGTERM alone saves
    state = run_dir / "state.json"

    def started():
        try:
            return json.loads(state.read_text())["completed_epochs"] >= 1
        except (OSError, ValueError):
            return False

    assert wait_for(started, proc), proc.communicate()
    time.sleep(delay)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate()
    assert proc.returncode == 143, (delay, out, err)
    assert "Traceback" not in err
    said = [l for l in out.splitlines() if l.startswith("SIGTERM: stopped")]
    assert len(said) == 1, (delay, out)
    recorded = json.loads(state.read_text())
    assert recorded["status"] == "preempted"
    assert recorded["checkpoint"] in os.listdir(run_dir / "checkpoints")
    assert recorded["checkpoint"] in said[0]

    resumed = run_script(SCRIPT, *TINY, "--data-dir", quick_data_dir, "--run-dir", run_dir)
    assert f"from {recorded['checkpoint']}" in resumed.stdout
    assert_same_run(run_dir, reference)
    assert json.loads(state.read_text())["status"] == "complete"


@pytest.mark.slow
def test_sigterm_during_validation_saves_the_epoch_exits_at_once_and_resumes(
        model1_run, quick_data_dir, tmp_path):
    """A validation can outlast a preemption notice by minutes: SIGTERM there saves the
    epoch's training and exits 143 at the next validation batch; the resumed run validates that
    epoch (a second SIGTERM there stops again without rewriting anything) and ends
    bit-identical to the uninterrupted run."""
    from tinynet.training.callbacks import PAUSE_IN_VALIDATION_ENV

    reference, _ = model1_run
    run_dir = tmp_path / "run"

    def terminate_in_validation(epoch):
        env = dict(os.environ, **{PAUSE_IN_VALIDATION_ENV: f"120:{epoch}"})
        cmd = [sys.executable, os.path.join(REPO, "experiments", SCRIPT), *TINY,
               "--data-dir", str(quick_data_dir), "--run-dir", str(run_dir)]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        err = []
        for line in proc.stderr:
            err.append(line)
            if line.startswith("tinynet-test: paused in the validation"):
                break
        signalled = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, rest = proc.communicate(timeout=120)
        assert proc.returncode == 143, (out, "".join(err) + rest)
        assert time.monotonic() - signalled < 30  # a preemptible VM's notice
        assert "Traceback" not in rest
        return out

    out = terminate_in_validation(3)
    said = [l for l in out.splitlines() if l.startswith("SIGTERM: stopped")]
    assert len(said) == 1 and "during the validation of epoch 3" in said[0], out
    recorded = json.loads((run_dir / "state.json").read_text())
    assert recorded["status"] == "preempted" and recorded["completed_epochs"] == 2
    assert recorded["checkpoint"] == "ckpt-00002-s000004.npz" in said[0]
    files = sorted(os.listdir(run_dir / "checkpoints"))

    again = terminate_in_validation(3)  # resumed, and stopped again in that validation
    assert "its validation is left" in again and "its training is in" in again, again
    assert sorted(os.listdir(run_dir / "checkpoints")) == files

    resumed = run_script(SCRIPT, *TINY, "--data-dir", quick_data_dir, "--run-dir", run_dir)
    assert "validating epoch 3" in resumed.stdout
    assert_same_run(run_dir, reference)
    assert json.loads((run_dir / "state.json").read_text())["status"] == "complete"

