"""A long run that tells the user where it is (issue 12): progress inside an epoch, TensorBoard
logs in the run directory, and TensorFlow's start-up chatter kept off the terminal."""
import io
import os
import subprocess
import sys
import types

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.util import event_pb2

from tinynet.errors import TinynetError
from tinynet.training import progress
from tinynet.training.progress import ENV, EpochProgress, progress_seconds
from tinynet.training.protocol import Protocol, Stage
from tinynet.training.tensorboard_log import TensorBoardLog

from conftest import REPO

# every epoch costs 81,920 units (steps x batch x pixels), so the protocol ETA is easy to check
PROTOCOL = Protocol("p", (Stage("a", 32, 8, 2, steps_per_epoch=10),
                          Stage("b", 64, 4, 1, steps_per_epoch=5)), {"name": "sgd"})
NUM_TRAIN = 80


class Clock:
    def __init__(self):
        self.now = 0.0

    def monotonic(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock()
    monkeypatch.setattr(progress, "time", c)
    return c


def run_epoch(cb, clock, epoch, steps, first=5.0, each=4.0, logs=None):
    """One epoch whose first step (tracing) ends at ``first`` s, the others ``each`` s apart."""
    clock.now = 0.0
    cb.on_epoch_begin(epoch)
    for i in range(steps):
        clock.now = first + each * i
        cb.on_train_batch_end(i, logs or {"loss": 1.5, "accuracy": 0.25})
    cb.on_test_begin()
    cb.on_epoch_end(epoch)


def test_log_lines_every_n_seconds_with_etas(clock):
    lines = []
    cb = EpochProgress(PROTOCOL, NUM_TRAIN, every=30, log=lines.append, tty=False)
    cb.on_train_begin()
    run_epoch(cb, clock, 0, 10)
    # step 8 ends at 33 s: 4 s per step after the first, 2 steps left; 2 later epochs of the
    # same cost at 40 s each (the step rate scaled by cost units)
    assert lines == ["stage 1/2 epoch 1/2 (global 1/3) step 8/10 2 img/s loss 1.5000 "
                     "acc 0.2500 epoch ETA 0:00:08 ETA 0:01:28"]
    lines.clear()
    run_epoch(cb, clock, 1, 2, first=40.0)  # a slow first step (tracing) tells no rate
    assert lines == ["stage 1/2 epoch 2/2 (global 2/3) step 1/10 loss 1.5000 acc 0.2500 "
                     "epoch ETA ? ETA ?"]


def test_resumed_epoch_counts_its_earlier_steps_and_uses_measured_rate(clock):
    lines = []
    cb = EpochProgress(PROTOCOL, NUM_TRAIN, steps_done=4, every=10, log=lines.append,
                       tty=False, measured=lambda: (100.0, 81920))
    cb.on_train_begin()
    run_epoch(cb, clock, 1, 6)  # steps 5..10 of global epoch 2
    assert lines[0] == ("stage 1/2 epoch 2/2 (global 2/3) step 7/10 2 img/s loss 1.5000 "
                        "acc 0.2500 epoch ETA 0:00:12 ETA 0:01:52")
    assert [line.split(" step ")[1].split()[0] for line in lines] == ["7/10", "10/10"]
    lines.clear()
    run_epoch(cb, clock, 2, 5, each=10.0)  # the next epoch of the same fit starts at step 1
    assert [line.split(" step ")[1].split()[0] for line in lines] == ["2/5", "3/5", "4/5", "5/5"]
    assert lines[0].startswith("stage 2/2 epoch 1/1 (global 3/3) step 2/5 0.4 img/s")
    assert lines[-1].endswith("epoch ETA 0:00:00 ETA 0:00:00")


def test_epochs_shorter_than_the_interval_print_nothing(clock, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    lines, out = [], io.StringIO()
    cb = EpochProgress(PROTOCOL, NUM_TRAIN, log=lines.append, tty=False, stream=out)
    assert cb.every == 30
    cb.on_train_begin()
    run_epoch(cb, clock, 0, 10, first=1.0, each=2.0)  # 19 s
    assert lines == [] and out.getvalue() == ""


def test_terminal_bar_redraws_in_place_and_ends_its_line(clock, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    lines, out = [], io.StringIO()
    cb = EpochProgress(PROTOCOL, NUM_TRAIN, every=30, log=lines.append, tty=True, stream=out)
    cb.on_train_begin()
    run_epoch(cb, clock, 0, 10, first=0.05, each=0.05)  # throttled to 10 draws a second
    text = out.getvalue()
    assert lines == []
    assert text.startswith("\r[") and text.endswith("\n") and text.count("\n") == 1
    draws = text.split("\r")[1:]
    assert 3 <= len(draws) <= 6  # 0.5 s of steps, the last step always drawn
    assert draws[-1].startswith("[====================] 10/10 160 img/s epoch ETA 0:00:00 ETA ")
    assert draws[-1].endswith(" | stage 1/2 epoch 1/2 (global 1/3)\x1b[K\n")
    monkeypatch.setenv("COLUMNS", "40")  # a narrow terminal: cut, never wrapped
    out.seek(0)
    out.truncate(0)
    run_epoch(cb, clock, 0, 10, first=0.05, each=0.05)
    assert all(len(draw) <= 39 + len("\x1b[K\n") for draw in out.getvalue().split("\r")[1:])


def test_zero_turns_progress_off(clock):
    lines, out = [], io.StringIO()
    for tty in (False, True):
        cb = EpochProgress(PROTOCOL, NUM_TRAIN, every=0, log=lines.append, tty=tty, stream=out)
        cb.on_train_begin()
        run_epoch(cb, clock, 0, 10, each=100.0)
    assert lines == [] and out.getvalue() == ""


def test_interval_from_the_environment_and_bad_values(monkeypatch):
    monkeypatch.setenv(ENV, "5")
    assert progress_seconds() == 5.0
    assert progress_seconds(2) == 2.0  # the flag wins
    monkeypatch.setenv(ENV, "soon")
    with pytest.raises(TinynetError, match=r"TINYNET_PROGRESS_SECONDS='soon'.*number >= 0"):
        progress_seconds()
    with pytest.raises(TinynetError, match=r"-1.*finite number >= 0"):
        progress_seconds(-1)


def test_in_a_real_fit_and_in_the_stage_callbacks():
    import keras

    from tinynet.training.callbacks import InEpochCheckpoint, ordered_callbacks
    from tinynet.training.session import StageSession
    from tinynet.training.state import TrainingState

    protocol = Protocol("p", (Stage("a", 8, 4, 1, steps_per_epoch=3),), {"name": "sgd"})
    lines = []
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    x, y = np.zeros((12, 2), "float32"), np.zeros((12,), "int32")
    model.fit(x, y, batch_size=4, epochs=1, verbose=0, callbacks=[
        EpochProgress(protocol, 12, every=1e-9, log=lines.append, tty=False)])
    assert [line.split(" step ")[1].split()[0] for line in lines] == ["1/3", "2/3", "3/3"]
    assert all(" loss " in line and " acc " in line for line in lines)

    run = types.SimpleNamespace(protocol=protocol, data=types.SimpleNamespace(train=[0] * 12),
                                state=TrainingState(), progress_every=7.0, log=lines.append)
    session = StageSession(run, 0)
    progress, epoch_end = session.progress(), session.epoch_end(0, lambda *a: None)
    guard = InEpochCheckpoint(None, 3)
    # given in any order, the slots come out in the one order (the bar's line ends first)
    callbacks = ordered_callbacks(checkpoint=guard, epoch_end=epoch_end, progress=progress,
                                  lr=session.lr_callback())
    assert callbacks == [progress, epoch_end, guard]
    assert progress.every == 7.0
    with pytest.raises(TypeError, match="epoch_end must be one of"):
        ordered_callbacks(epoch_end=progress, checkpoint=guard)


# -- TensorBoard ---------------------------------------------------------------------------

def read_events(folder):
    """{tag: [(step, value)]} over every events file in ``folder``, and the number of files."""
    files = sorted(tf.io.gfile.glob(folder + "/events.out.tfevents.*"))
    found = {}
    for path in files:
        for record in tf.data.TFRecordDataset(path):
            event = event_pb2.Event.FromString(record.numpy())
            for v in event.summary.value:
                value = tf.make_ndarray(v.tensor)
                found.setdefault(v.tag, []).append(
                    (event.step, value.item() if value.dtype != object else value.item().decode()))
    return found, len(files)


def row(stage, epoch, global_epoch, loss):
    return {"stage": stage, "resolution": 32 * stage, "epoch": epoch,
            "global_epoch": global_epoch, "lr": 0.1 / global_epoch, "loss": loss,
            "accuracy": 0.5, "top5": 0.9, "val_loss": loss + 1, "val_accuracy": 0.4,
            "val_top5": 0.8, "seconds": 2.0}


def test_tensorboard_timeline_continues_after_a_resume(tmp_path):
    log = TensorBoardLog(tmp_path, PROTOCOL)
    log.write_epoch(row(1, 1, 1, 3.0), [(0, 0.1), (1, 0.1)])
    log.write_epoch(row(1, 2, 2, 2.0), [(2, 0.05), (3, 0.05)])
    log.close()
    resumed = TensorBoardLog(tmp_path, PROTOCOL)  # the process after a resume
    resumed.write_epoch(row(2, 1, 3, 1.0), [(4, 0.01)])
    resumed.close()

    train, files = read_events(str(tmp_path / "tensorboard" / "train"))
    assert files == 2  # a new events file, the same folder
    assert train["epoch_loss"] == [(1, 3.0), (2, 2.0), (3, 1.0)]
    assert [s for s, _ in train["epoch_learning_rate"]] == [1, 2, 3]
    assert train["epoch_stage"] == [(1, 1.0), (2, 1.0), (3, 2.0)]
    assert [s for s, _ in train["batch_learning_rate"]] == [0, 1, 2, 3, 4]
    assert [round(v, 6) for _, v in train["batch_learning_rate"]] == [0.1, 0.1, 0.05, 0.05, 0.01]
    assert [s for s, _ in train["stage"]] == [1, 3]
    assert "stage 2/2 'b' starts at global epoch 3: 64px, batch 4" in train["stage"][1][1]
    assert {"epoch_accuracy", "epoch_top5", "epoch_resolution", "epoch_seconds"} <= set(train)
    validation, _ = read_events(str(tmp_path / "tensorboard" / "validation"))
    assert validation["epoch_loss"] == [(1, 4.0), (2, 3.0), (3, 2.0)]
    assert sorted(validation) == ["epoch_accuracy", "epoch_loss", "epoch_top5"]


def test_tensorboard_on_ram_filesystem_and_not_on_a_worker(tmp_path):
    log = TensorBoardLog("ram://tinynet-tb-test")
    log.write_epoch(row(1, 1, 1, 3.0))
    log.close()
    assert read_events("ram://tinynet-tb-test/tensorboard/train")[0]["epoch_loss"] == [(1, 3.0)]
    worker = TensorBoardLog(tmp_path, writable=False)
    worker.write_epoch(row(1, 1, 1, 3.0), [(0, 0.1)])
    worker.close()
    assert os.listdir(tmp_path) == []


# -- TensorFlow's start-up lines -------------------------------------------------------------

NOISE_LINES = (
    b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    b"I0000 00:00:1795588548.166229   26140 port.cc:153] oneDNN custom operations are on.\n"
    b"I0000 00:00:1795588548.264297   26140 cpu_feature_guard.cc:227] This TensorFlow binary is "
    b"optimized to use available CPU instructions in performance-critical operations.\n"
    b"To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow "
    b"with the appropriate compiler flags.\n"
    b"E0000 00:00:1795588551.687513   26140 cuda_platform.cc:52] failed call to cuInit: INTERNAL:"
    b" CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)\n"
    b"E0000 00:00:1721 123 cuda_dnn.cc:8310] Unable to register cuDNN factory: Attempting to "
    b"register factory for plugin cuDNN when one has already been registered\n")
REAL_LINES = (
    b"W0000 00:00:1 1 x.cc:1] a real C++ warning\n"
    b"E0000 00:00:1 1 cuda_driver.cc:1] failed call to cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH\n"
    b"To enable the following instructions is not at the start of this line\n")

SCRIPT = """
import os, sys, time
sys.path.insert(0, {repo!r})
from tinynet.quiet import quiet_tensorflow
print(quiet_tensorflow({verbose}), quiet_tensorflow({verbose}), flush=True)  # once only
os.write(2, {noise!r} + {real!r})
os.write(2, b"partial line ")
time.sleep(0.4)  # the filter lets a partial line out after 0.2 s ...
os.write(2, b"I0000 00:00:1 1 x.cc:1] ... and does not match its rest\\n")
{end}
"""


def run_script(verbose=False, end="raise SystemExit('bye')"):
    code = SCRIPT.format(repo=REPO, verbose=verbose, noise=NOISE_LINES, real=REAL_LINES, end=end)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "TINYNET_STDERR"))}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60, env=env)


def test_stderr_filter_drops_known_noise_only():
    out = run_script()
    assert out.stdout == b"True True\n" and out.returncode == 1
    assert out.stderr == (REAL_LINES + b"partial line I0000 00:00:1 1 x.cc:1] ... and does not "
                          b"match its rest\nbye\n")


def test_stderr_filter_passes_a_crash_message():
    out = run_script(end="os.write(2, b'F0000 00:00:1 1 x.cc:1] Check failed: x\\n'); os.abort()")
    assert out.returncode == -6
    assert out.stderr.endswith(b"Check failed: x\n") and b"oneDNN" not in out.stderr


def test_verbose_leaves_stderr_alone():
    out = run_script(verbose=True)
    assert out.stdout == b"False False\n"
    assert out.stderr.startswith(NOISE_LINES + REAL_LINES)


@pytest.mark.slow  # (imports TensorFlow in a new process: ~5-10 s)
def test_tensorflow_start_up_is_quiet_and_warnings_still_show():
    code = (f"import sys, warnings; sys.path.insert(0, {REPO!r})\n"
            "from tinynet.quiet import quiet_tensorflow; quiet_tensorflow()\n"
            "import tensorflow as tf; tf.zeros(1)\n"
            "warnings.warn('a real warning')\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_CPP", "TINYNET_STDERR"))}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, env=env)
    err = out.stderr.decode()
    assert out.returncode == 0, err
    for noise in ("absl::InitializeLog", "oneDNN custom operations", "cpu_feature_guard",
                  "To enable the following instructions", "UNKNOWN ERROR (303)",
                  "Could not find cuda drivers"):
        assert noise not in err
    assert "UserWarning: a real warning" in err
