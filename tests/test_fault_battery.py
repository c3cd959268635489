"""Fault battery (issue 12): a ``--deterministic`` run killed at seeded random moments --
start-up, training steps, validation, and between writing a checkpoint or model to its
temporary file and renaming it -- and resumed after each kill. Every resume must succeed, no
checkpoint on disk may ever be unreadable, the history and lr log must lose or repeat no row,
and the final weights (checkpoint, final and best model) must equal an uninterrupted run's.

Twice: on a local run directory through the experiment's command line with SIGKILL, and on a
non-local one through ``tf.io.gfile`` (``ram://`` stands in for ``gs://``), in one process
(``ram://`` lives in it) where a fault is an exception nothing catches.

The moments inside a write come from the hook of ``tinynet.io.atomic_write``
(``TINYNET_PAUSE_BEFORE_RENAME=<seconds>[:<substring>]`` makes the write announce itself on
stderr and wait before its rename). With ``0:`` every write announces itself without waiting,
which gives each start's timeline.
"""
import collections
import csv
import io
import json
import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
import zipfile

import numpy as np
import pytest

from tinynet.training.checkpoint import read_checkpoint, read_checkpoint_arrays
from tinynet.training.determinism import DETERMINISTIC_ENV

from conftest import REPO, run_test_function

SCRIPT = os.path.join(REPO, "experiments", "multi_resnet_cifar.py")
EPOCHS, STEPS = 3, 8  # --quick: 3 epochs (lr steps at 2 and 3); 8 steps, a checkpoint after each
ARGS = ["--quick", "--deterministic", "--steps-per-epoch", str(STEPS), "--checkpoint-every",
        "1steps"]
MARK = "tinynet-test: paused before rename "
KILLS = 20
SEED = 12
PAUSE = 60  # seconds a targeted write waits before its rename: the kill arrives within it
# what every third kill stops inside, in turn ("checkpoint": one of the next three)
WRITE_TARGETS = ["checkpoint", ".keras", "checkpoint", "history.csv", "checkpoint", "lr.csv",
                 "state.json"]


# -- checks shared by both batteries (``read_bytes``/``listdir``: the local disk or gfile) ----
def _history_epochs(text):
    return [int(r["global_epoch"]) for r in csv.DictReader(text.splitlines())]


def _lr_iterations(text):
    return [int(r["iteration"]) for r in csv.DictReader(text.splitlines())]


def _consecutive(numbers):
    return numbers == list(range(numbers[0], numbers[0] + len(numbers))) if numbers else True


def check_readable(run_dir, read_bytes, listdir, when):
    """Every file a run writes can be read in full at this moment: each checkpoint through
    ``read_checkpoint``, the JSON records, the CSV logs (without a gap or a repeated row) and
    the models' zip archives. Returns the checkpoint names, newest last."""
    from tinynet import io as tio

    names = listdir(tio.join(run_dir, "checkpoints"))
    checkpoints = sorted(n for n in names if n.startswith("ckpt-") and n.endswith(".npz"))
    for name in names:
        path = tio.join(run_dir, "checkpoints", name)
        try:
            if name in checkpoints:
                read_checkpoint(path)
            elif name.startswith("stage-"):  # the best weights a later stage restarts from
                read_checkpoint_arrays(path)
        except ValueError as e:
            raise AssertionError(f"{when}: {e}") from None
    present = set(listdir(run_dir))
    for name in ("config.json", "state.json", "test_errors.json"):
        if name in present:
            json.loads(read_bytes(tio.join(run_dir, name)))
    if "history.csv" in present:
        epochs = _history_epochs(read_bytes(tio.join(run_dir, "history.csv")).decode())
        assert epochs == list(range(1, len(epochs) + 1)), f"{when}: history.csv epochs {epochs}"
    if "lr.csv" in present:
        its = _lr_iterations(read_bytes(tio.join(run_dir, "lr.csv")).decode())
        assert _consecutive(its), f"{when}: lr.csv iterations {its}"
    for name in ("best_model.keras", "final_model.keras"):
        if name in present:
            with zipfile.ZipFile(io.BytesIO(read_bytes(tio.join(run_dir, name)))) as z:
                assert z.testzip() is None, f"{when}: {name} is damaged"
    return checkpoints


def _arrays(blob):
    with np.load(io.BytesIO(blob)) as data:
        return {k: data[k] for k in data.files if k != "meta"}


def _model_weights(blob, scratch):
    """The weights of a saved ``.keras`` model (loaded from a local copy)."""
    import keras

    import tinynet.layers  # noqa: F401  (registers the custom layers)
    with open(scratch, "wb") as f:
        f.write(blob)
    return keras.saving.load_model(scratch, compile=False).get_weights()


def assert_same_as_reference(run_dir, ref_dir, read_bytes, listdir, scratch, epochs, when):
    """A finished run equals the uninterrupted one: the final checkpoint's arrays, the final and
    best models' weights, every history column but the time, and the lr log; no temporary file
    of an interrupted write is left anywhere."""
    from tinynet import io as tio

    def text(d, name):
        return read_bytes(tio.join(d, name)).decode()

    state = json.loads(text(run_dir, "state.json"))
    assert state["status"] == "complete", f"{when}: state {state}"
    assert _history_epochs(text(run_dir, "history.csv")) == list(range(1, epochs + 1)), when
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa
    assert drop(csv.DictReader(text(run_dir, "history.csv").splitlines())) == drop(
        csv.DictReader(text(ref_dir, "history.csv").splitlines())), f"{when}: history differs"
    its = _lr_iterations(text(run_dir, "lr.csv"))
    assert its and _consecutive(its), f"{when}: lr.csv iterations {its}"
    assert text(run_dir, "lr.csv") == text(ref_dir, "lr.csv"), f"{when}: lr.csv differs"
    name = tio.join("checkpoints", f"ckpt-{epochs:05d}.npz")
    final, expected = (_arrays(read_bytes(tio.join(d, name))) for d in (run_dir, ref_dir))
    assert len(expected) > 20 and final.keys() == expected.keys(), when
    for key in expected:
        assert np.array_equal(final[key], expected[key]), f"{when}: final checkpoint {key}"
    for model in ("final_model.keras", "best_model.keras"):
        got, want = (_model_weights(read_bytes(tio.join(d, model)), scratch)
                     for d in (run_dir, ref_dir))
        assert len(got) == len(want) > 20, when
        assert all(np.array_equal(a, b) for a, b in zip(got, want)), f"{when}: {model} differs"
    left = [tio.join(folder, n) for folder in (run_dir, tio.join(run_dir, "checkpoints"),
                                               tio.join(run_dir, "plots"))
            for n in listdir(folder) if n.startswith(".tmp-")]
    assert not left, f"{when}: temporary files left: {left}"


def _local_bytes(path):
    with open(path, "rb") as f:
        return f.read()


def _local_listdir(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else []


# -- the local battery: SIGKILL through the command line ---------------------------------------
class Start:
    """One start of the experiment on ``run_dir``; the writes it announces (``pause``: the
    hook's spec) arrive on ``writes`` as ``(seconds since start, path)``, then None at exit."""

    def __init__(self, run_dir, data_dir, log_path, pause="0:"):
        env = dict(os.environ, **DETERMINISTIC_ENV, TINYNET_PAUSE_BEFORE_RENAME=pause)
        self.log_path = log_path
        self._out = open(log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, SCRIPT, *ARGS, "--data-dir", str(data_dir), "--run-dir",
             str(run_dir)], stdout=self._out, stderr=subprocess.PIPE, text=True, env=env,
            cwd=REPO)
        self.started = time.monotonic()
        self.writes = queue.Queue()
        self.stderr = collections.deque(maxlen=30)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            if line.startswith(MARK):
                self.writes.put((time.monotonic() - self.started, line[len(MARK):].rstrip("\n")))
            else:
                self.stderr.append(line)
        self.writes.put(None)

    def next_write(self, match, timeout=300):
        """The next announced write whose path contains ``match``, or None if the process
        ended first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                item = self.writes.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no write of {match!r} in {timeout} s") from None
            if item is None or match in item[1]:
                return item

    def kill_after(self, seconds):
        """SIGKILL ``seconds`` from now unless the process ends first; returns the exit status."""
        try:
            self.proc.wait(timeout=max(seconds, 0))
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
        return self.wait()

    def wait(self, timeout=600):
        rc = self.proc.wait(timeout=timeout)
        self._reader.join(timeout=10)
        self._out.close()
        return rc

    def output(self):
        with open(self.log_path) as f:
            return f.read() + "".join(self.stderr)


def _position(name):
    """(epochs, steps) of a checkpoint name, the order checkpoints are written in."""
    stem = name[len("ckpt-"):-len(".npz")]
    epochs, _, steps = stem.partition("-s")
    return int(epochs), int(steps or 0)


@pytest.fixture(scope="module")
def cifar_dir(tmp_path_factory):
    """The generated CIFAR-10 of ``--quick`` (made by the reference run)."""
    return tmp_path_factory.mktemp("fault-cifar") / "data"


def reference_run(data_dir, run_dir, log_path):
    """The uninterrupted run; returns its writes ``(seconds, path)`` in order."""
    start = Start(run_dir, data_dir, log_path)
    writes = []
    while (item := start.next_write("", timeout=600)) is not None:
        writes.append(item)
    assert start.wait() == 0, start.output()
    return writes


# ~150-190 s on 2 shared CPU cores: the reference, then 21 starts of the command line, each
# ~7 s before its first step (CI's slow step)
@pytest.mark.slow
def test_sigkill_at_20_random_moments_then_resume_is_bit_identical(cifar_dir, tmp_path):
    """One chain of starts on one run directory, each SIGKILLed at a moment drawn from
    ``random.Random(SEED)``: every third inside a write (``WRITE_TARGETS``, paused before its
    rename, and the temporary file is checked to be there), the others a wall-clock delay after
    the start (before its first checkpoint), after its first checkpoint (training steps and
    their writes) or into an epoch's last step and validation. Delays are scaled by the
    reference run's own timeline, so a slower machine shifts them rather than the phases they
    land in. Once every epoch is trained, the kills go inside the last writes (final model,
    plot, test errors). A start that still finishes before its kill (a much slower start than
    any before) is checked like the end of the chain, and the kills go on in a fresh run
    directory: only delivered kills count."""
    began = time.monotonic()
    ref_dir = tmp_path / "reference"
    writes = reference_run(cifar_dir, ref_dir, tmp_path / "reference.log")
    order = [os.path.basename(p) for _, p in writes if "/checkpoints/ckpt-" in p]
    assert len(order) == EPOCHS * STEPS and order == sorted(order, key=_position), order
    first = next(t for t, p in writes if "/checkpoints/ckpt-" in p)  # training has begun
    last = [t for t, p in writes if "/checkpoints/ckpt-" in p][-1]
    per_checkpoint = (last - first) / (len(order) - 1)  # a step, with its share of validation
    at = {os.path.basename(p): t for t, p in writes}
    # from the checkpoint before an epoch's last step to the epoch's own: the step and validation
    validation = [at[f"ckpt-{e + 1:05d}.npz"] - at[f"ckpt-{e:05d}-s{STEPS - 1:06d}.npz"]
                  for e in range(EPOCHS)]

    # how long a start takes to its first checkpoint (the quickest seen: the reference also
    # made the data): start-up kills land before it, so never after a run has finished
    startup = first
    rng = random.Random(SEED)
    chain, dirs, kills, events = 0, [], 0, []
    run_dir = None
    while kills < KILLS:
        if run_dir is None:
            chain += 1
            run_dir = tmp_path / f"run{chain}"
            dirs.append(run_dir)
        on_disk = check_readable(str(run_dir), _local_bytes, _local_listdir, "before a start")
        newest = order.index(max(on_disk, key=_position)) if on_disk else -1
        log = tmp_path / f"start{len(events):02d}.log"
        epoch, steps = _position(order[newest]) if newest >= 0 else (0, 0)
        kind = "write" if kills % 3 == 2 else rng.choices(
            ["start-up", "training", "validation"], [4, 4, 2])[0]
        if kind == "validation" and (epoch >= EPOCHS - 1 or steps == STEPS - 1):
            kind = "training"  # (no later epoch end to aim at; or the next write is after it)
        if newest == len(order) - 1:  # every epoch trained: kills among the last writes
            kind = "write"
        if kind == "write":  # inside a write, between its temporary file and the rename
            target = WRITE_TARGETS[kills // 3 % len(WRITE_TARGETS)]
            if target == "checkpoint":  # one of the next three
                target = rng.choice(order[newest + 1:newest + 4] or [".keras"])
            if newest == len(order) - 1:  # what every start of a trained run writes last
                target = rng.choice(["training_curves.png", "test_errors.json"] + (
                    [] if (run_dir / "final_model.keras").exists() else ["final_model.keras"]))
            start = Start(run_dir, cifar_dir, log, pause=f"{PAUSE}:{target}")
            hit = start.next_write(target)
            what = f"inside the write of {target}"
            if hit is not None:
                start.proc.send_signal(signal.SIGKILL)
            rc = start.wait()
            if hit is not None:
                # the kill came between the temporary file and its rename
                folder, name = os.path.split(hit[1])
                assert any(n.startswith(".tmp-") and n.endswith(name)
                           for n in os.listdir(folder)), (what, os.listdir(folder))
        elif kind == "start-up":  # anywhere before this start's first checkpoint
            delay = rng.uniform(0, startup)
            start = Start(run_dir, cifar_dir, log)
            what = f"{delay:.2f} s after the start"
            rc = start.kill_after(delay)
        else:  # in training steps and their writes, or in the last step and validation
            anchor = ("/checkpoints/ckpt-" if kind == "training" else
                      f"ckpt-{epoch:05d}-s{STEPS - 1:06d}.npz")
            delay = rng.uniform(0, 2.5 * per_checkpoint if kind == "training" else
                                validation[epoch])
            start = Start(run_dir, cifar_dir, log)
            what = (f"{delay:.2f} s after the first checkpoint this start wrote"
                    if kind == "training" else f"{delay:.2f} s into the last step and "
                                               f"validation of epoch {epoch + 1}")
            hit = start.next_write(anchor)
            rc = start.kill_after(delay) if hit is not None else start.wait()
            if kind == "training" and hit is not None:
                startup = min(startup, hit[0])
        events.append(f"{run_dir.name}: {what}: exit {rc} "
                      f"({time.monotonic() - start.started:.1f} s)")
        if rc == 0:  # finished before the kill: verified, and the chain goes on in a new dir
            assert_same_as_reference(run_dir, ref_dir, _local_bytes, _local_listdir,
                                     str(tmp_path / "w.keras"), EPOCHS, events[-1])
            run_dir = None
            continue
        assert rc == -signal.SIGKILL, f"{events[-1]}\n{start.output()}"  # every resume succeeded
        kills += 1
        check_readable(str(run_dir), _local_bytes, _local_listdir, events[-1])

    start = Start(run_dir, cifar_dir, tmp_path / "last.log")
    assert start.wait() == 0, start.output()
    last_start = time.monotonic() - start.started
    for d in dirs:
        assert_same_as_reference(d, ref_dir, _local_bytes, _local_listdir,
                                 str(tmp_path / "w.keras"), EPOCHS, f"{d.name} at the end")
    print(f"reference {writes[-1][0]:.1f} s, training from {first:.1f} s, "
          f"{per_checkpoint:.2f} s a checkpoint; last start {last_start:.1f} s; checks "
          f"{time.monotonic() - start.started - last_start:.1f} s")
    print(f"{kills} kills in {chain} chain(s), {time.monotonic() - began:.0f} s:\n  "
          + "\n  ".join(events))


# -- the ram:// battery: in one process, a fault is an exception nothing catches ------------
RAM_EPOCHS, RAM_STEPS = 4, 5
RAM_FAULTS = 10
# what each fault stops, in turn: a write (of a path containing the text; "": any write), a
# training step or validation
RAM_FAULT_KINDS = ["/checkpoints/ckpt-", "step", "", "validation", ".keras", "step",
                   "/checkpoints/", "", "final_model.keras", "training_curves.png"]


class SimulatedKill(BaseException):
    """A fault: like a kill it passes every ``except Exception`` and stops the run where it is
    (what a killed process left in a write stays: the remote temporary file)."""


def ram_protocol():
    """Two stages, the second restarting from the first's best weights with a new optimizer
    and an lr step: stage switches, stage-best files and optimizer changes meet the faults."""
    from tinynet.training.lr import StepDecay
    from tinynet.training.protocol import Protocol, Stage
    return Protocol(
        name="faults", optimizer={"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
        val_resolution=32, eval_batch_size=20,
        stages=(Stage("a", 32, 10, 2, steps_per_epoch=RAM_STEPS, augment="flip"),
                Stage("b", 32, 10, 2, steps_per_epoch=RAM_STEPS, augment="flip",
                      restart_from_best=True, lr=StepDecay(0.01, (1,), 0.1),
                      optimizer={"name": "adam", "learning_rate": 1e-3})))


def ram_battery(data_root, scratch):
    """Runs in a fresh interpreter with the deterministic environment (see the test): the
    reference on ``ram://``, then one run faulted ``RAM_FAULTS`` times, each fault of the kind
    ``RAM_FAULT_KINDS`` names in turn at a seeded random count (the n-th such write, between
    the remote temporary file and its rename; the n-th training step; validation) and resumed
    after each; asserts as the local battery. Everything here is deterministic (no clock), so
    the same faults land at the same writes every time; a run that finishes before its fault
    is checked and the faults go on in a fresh run directory."""
    from tinynet import io as tio
    from tinynet.data.datasets import get_dataset
    from tinynet.training import callbacks
    from tinynet.training.runner import run_protocol

    data = get_dataset("tiny-imagenet", data_dir=data_root, download=False, cache="memory")
    tag = f"tinynet-faults-{os.getpid()}"

    def run(run_dir):
        run_protocol(ram_protocol(), model_name="cifar_resnet",
                     model_kwargs={"blocks": [1, 1], "channels": [16, 32], "width": 0.5},
                     data=data, run_dir=run_dir, seed=3, deterministic=True,
                     checkpoint_every=("steps", 1), log=lambda line: None)

    def read_bytes(path):
        with tio.gfile.GFile(path, "rb") as f:
            return f.read()

    ref = f"ram://{tag}/reference"
    writes = []
    original_hook = tio._before_rename
    original_step = callbacks.InEpochCheckpoint.on_train_batch_end
    tio._before_rename = lambda tmp, path: writes.append(path)
    try:
        run(ref)
    finally:
        tio._before_rename = original_hook
    assert sum("/checkpoints/ckpt-" in p for p in writes) == RAM_EPOCHS * RAM_STEPS, writes

    rng = random.Random(SEED)
    chain, dirs, events, faults = 0, [], [], 0
    run_dir = None
    while faults < RAM_FAULTS:
        if run_dir is None:
            chain += 1
            run_dir = f"ram://{tag}/run{chain}"
            dirs.append(run_dir)
        count = [0]
        kind = RAM_FAULT_KINDS[faults % len(RAM_FAULT_KINDS)]
        if kind not in ("step", "validation"):  # between a remote temporary file and its rename
            at = rng.randint(1, 8) if kind == "" else (
                rng.randint(1, 2) if "checkpoints" in kind else 1)
            what = f"inside write {at} of the start" + (f" of {kind}" if kind else "")

            def hook(tmp, path, at=at, what=what, kind=kind):
                if kind in path:
                    count[0] += 1
                    if count[0] == at:
                        raise SimulatedKill(f"{what} ({path})")
            tio._before_rename = hook
        else:  # a training step ends (before its checkpoint), or validation is under way
            at = rng.randint(1, 3) if kind == "step" else 1
            what = f"in {'training step' if kind == 'step' else 'validation batch'} {at} " \
                   f"of the start"

            def batch_end(self, batch, logs=None, at=at, what=what, kind=kind):
                count[0] += 1
                if count[0] == at:
                    raise SimulatedKill(what)
                if kind == "step":
                    return original_step(self, batch, logs)
            setattr(callbacks.InEpochCheckpoint,
                    "on_train_batch_end" if kind == "step" else "on_test_batch_end", batch_end)
        try:
            run(run_dir)
            outcome = None
        except SimulatedKill as e:
            outcome = f"{run_dir}: killed {e}"
        finally:
            tio._before_rename = original_hook
            callbacks.InEpochCheckpoint.on_train_batch_end = original_step
            if "on_test_batch_end" in vars(callbacks.InEpochCheckpoint):
                del callbacks.InEpochCheckpoint.on_test_batch_end
        if outcome is None:  # finished before the fault: verified; the faults go on anew
            assert_same_as_reference(run_dir, ref, read_bytes, tio.listdir, scratch, RAM_EPOCHS,
                                     f"{run_dir} finished before a fault {what}")
            events.append(f"{run_dir}: finished before the fault {what}")
            run_dir = None
            continue
        faults += 1
        events.append(outcome)
        check_readable(run_dir, read_bytes, tio.listdir, outcome)
    run(run_dir)
    for d in dirs:
        assert_same_as_reference(d, ref, read_bytes, tio.listdir, scratch, RAM_EPOCHS,
                                 f"{d} at the end")
    print("\n".join(events))


# ~40-55 s on 2 shared CPU cores (CI's slow step)
@pytest.mark.slow
def test_faults_on_a_ram_filesystem_run_dir_then_resume_is_bit_identical(small_root, tmp_path):
    out = run_test_function("test_fault_battery", "ram_battery", str(small_root),
                            str(tmp_path / "w.keras"))
    assert out.count("killed ") == RAM_FAULTS, out
    print(out)
