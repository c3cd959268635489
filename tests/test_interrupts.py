"""Ctrl-C at any moment of a run (issue 12): during start-up, an epoch, validation or a
checkpoint write, the command ends with the "re-run the same command to resume" line and
status 130 -- never a traceback (a SIGINT landing while TensorFlow runs Python code from C++
used to surface as an internal ``SystemError``) -- and re-running resumes."""
import csv
import gc
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from tinynet.errors import clear_interrupts, note_interrupt
from tinynet.experiment import RESUME_LINE, run_cli
from tinynet.training.checkpoint import list_checkpoints, read_checkpoint

from conftest import REPO

EPOCHS = 3


def command(data_dir, run_dir):
    return [sys.executable, os.path.join(REPO, "experiments", "multi_resnet_cifar.py"), "--quick",
            "--steps-per-epoch", "4", "--deterministic", "--checkpoint-every", "2steps", "--data-dir", str(data_dir),
            "--run-dir", str(run_dir)]


def interrupt(cmd, delay=None, at_write=None):
    """Starts ``cmd``, sends SIGINT ``delay`` seconds after the start or while it writes a file
    whose path contains ``at_write`` (the write-pause hook of tinynet.io); returns
    ``(returncode, stderr)``."""
    env = dict(os.environ)
    if at_write:
        env["TINYNET_PAUSE_BEFORE_RENAME"] = f"3:{at_write}"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env=env)
    if at_write:
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if line.startswith("tinynet-test: paused before rename"):
                proc.send_signal(signal.SIGINT)
                break
        rest = proc.communicate(timeout=300)[1]
        return proc.returncode, "".join(lines) + rest
    time.sleep(delay)
    proc.send_signal(signal.SIGINT)
    return proc.returncode if proc.poll() is not None else proc.wait(300), proc.stderr.read()


@pytest.mark.slow
def test_ctrl_c_at_any_moment_says_how_to_resume_and_resumes(tmp_path):
    data_dir, runs = tmp_path / "data", 0
    run_dir = tmp_path / "run0"
    cmd = command(data_dir, run_dir)
    rng = random.Random(12)
    # start-up (imports, data generation, model build), then anywhere, then inside writes
    moments = [dict(delay=1.0), dict(delay=2.5), dict(at_write="checkpoints/"),
               *[dict(delay=rng.uniform(3.0, 9.0)) for _ in range(2)],
               dict(at_write=".keras")]
    for moment in moments:
        for _ in range(3):
            code, stderr = interrupt(cmd, **moment)
            if code != 0:
                break
            # the run finished before the signal (a fast machine, a late moment): the chain
            # goes on in a new run directory, so that every moment interrupts a run
            runs += 1
            run_dir = tmp_path / f"run{runs}"
            cmd = command(data_dir, run_dir)
        tail = [line for line in stderr.splitlines() if line.strip()]
        assert code == 128 + signal.SIGINT, (moment, stderr[-3000:])
        assert tail[-1] == RESUME_LINE, (moment, stderr[-3000:])
        assert "Traceback" not in stderr and "SystemError" not in stderr, (moment, stderr)
        for path in list_checkpoints(str(run_dir)):
            read_checkpoint(path)  # raises if a checkpoint on disk is unreadable
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(run_dir / "history.csv") as f:
        assert [int(r["global_epoch"]) for r in csv.DictReader(f)] == list(range(1, EPOCHS + 1))
    with open(run_dir / "lr.csv") as f:
        iterations = [int(r["iteration"]) for r in csv.DictReader(f)]
    assert iterations == list(range(len(iterations)))


def test_a_ctrl_c_inside_a_gc_callback_prints_the_resume_line_and_no_traceback(capsys,
                                                                                 monkeypatch):
    """A Ctrl-C that lands in a garbage-collector callback (JAX's, which Keras imports) cannot
    propagate: Python would print "Exception ignored in ..." with a traceback (seen once in
    the Ctrl-C test above). The run still stops with the one resume line and status 130."""
    def callback(phase, info):
        raise KeyboardInterrupt

    def main(argv):
        note_interrupt(signal.SIGINT)  # what run_cli's SIGINT handler records before raising
        gc.callbacks.append(callback)
        try:
            gc.collect()
        finally:
            gc.callbacks.remove(callback)

    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)  # not pytest's
    sigint = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit) as info:
            run_cli(main, [])
    finally:  # an interrupted run_cli leaves Ctrl-C ignored and recorded: not for later tests
        clear_interrupts()
        signal.signal(signal.SIGINT, sigint)
    assert info.value.code == 128 + signal.SIGINT
    assert sys.unraisablehook is sys.__unraisablehook__  # in-process: restored
    assert capsys.readouterr().err == RESUME_LINE + "\n"

