"""Run directories that cannot be written or are damaged (issue 12): a clear error naming the
path and the fix, nothing lost, and a resume that still ends where an uninterrupted run ends.

A run directory that is a file, read-only or on a full disk; an unreadable config.json; every
checkpoint unreadable (refused instead of starting over on top of the history and best model);
config.json lost (the identity then comes from the checkpoint)."""
import errno
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tinynet.errors import TinynetError

from conftest import REPO


def protocol(epochs=2):
    from tinynet.training.lr import Constant
    from tinynet.training.protocol import Protocol, Stage
    return Protocol(
        name="damage", optimizer={"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
        val_resolution=32, eval_batch_size=20,
        stages=(Stage("s", 32, 10, epochs, steps_per_epoch=2, augment="flip"),))


@pytest.fixture(scope="module")
def data(small_root):
    from tinynet.data.datasets import get_dataset
    return get_dataset("tiny-imagenet", data_dir=small_root, download=False, cache="memory")


def train(data, run_dir, seed=3, **kwargs):
    from tinynet.training.runner import run_protocol
    lines = kwargs.pop("lines", [])
    return run_protocol(protocol(), model_name="cifar_resnet",
                        model_kwargs={"blocks": [1, 1], "channels": [16, 32], "width": 0.5},
                        data=data,
                        run_dir=str(run_dir), seed=seed, deterministic=True,
                        log=lines.append, **kwargs)


def arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if k != "meta"}


def snapshot(run_dir):
    """Every file's bytes under ``run_dir``."""
    out = {}
    for root, _, files in os.walk(run_dir):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, run_dir)] = f.read()
    return out


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    train(data, run_dir)
    return run_dir


def copy_of(reference, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(reference, run_dir)
    return run_dir


def assert_same_final(run_dir, reference):
    final, expected = (arrays(d / "checkpoints" / "ckpt-00002.npz") for d in (run_dir, reference))
    assert final.keys() == expected.keys()
    for k in expected:
        np.testing.assert_array_equal(final[k], expected[k], err_msg=k)


def test_a_run_directory_that_is_a_file_is_refused(data, tmp_path):
    path = tmp_path / "run"
    path.write_text("not a folder")
    with pytest.raises(TinynetError, match=r"run directory .*run is a file, not a folder"):
        train(data, path)
    assert path.read_text() == "not a folder"
    with pytest.raises(TinynetError, match=r"cannot create the run directory .*is a file"):
        train(data, path / "sub")


def test_an_unreadable_config_is_named(reference, data, tmp_path):
    run_dir = copy_of(reference, tmp_path)
    (run_dir / "config.json").write_text('{"model": ')
    before = snapshot(run_dir)
    with pytest.raises(TinynetError, match=r"config\.json \(the run's record\) is unreadable "
                                           r"\(JSONDecodeError.*--restart"):
        train(data, run_dir)
    assert snapshot(run_dir) == before


def test_every_checkpoint_unreadable_is_refused_not_started_over(reference, data, tmp_path):
    run_dir = copy_of(reference, tmp_path)
    for name in os.listdir(run_dir / "checkpoints"):
        (run_dir / "checkpoints" / name).write_bytes(b"PK\x03\x04 damaged")
    before = snapshot(run_dir)
    with pytest.raises(TinynetError) as e:
        train(data, run_dir)
    message = str(e.value)
    assert "no checkpoint can be read" in message and "--restart" in message
    assert "ckpt-00002.npz, ckpt-00001.npz" in message and "history.csv with 2 epochs" in message
    assert "best_model.keras" in message and "\n" not in message
    assert snapshot(run_dir) == before  # the history and best model are still there
    train(data, run_dir, restart=True)
    assert_same_final(run_dir, reference)


def test_a_run_stopped_before_its_first_checkpoint_simply_starts(reference, data, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    shutil.copy(reference / "config.json", run_dir / "config.json")
    train(data, run_dir)
    assert_same_final(run_dir, reference)


def test_a_lost_config_takes_the_identity_from_the_checkpoint(reference, data, tmp_path):
    run_dir = copy_of(reference, tmp_path)
    (run_dir / "config.json").unlink()
    (run_dir / "checkpoints" / "ckpt-00002.npz").unlink()
    before = snapshot(run_dir)
    with pytest.raises(TinynetError, match=r"different seed \(3 in ckpt-00001\.npz, 4 now\)"):
        train(data, run_dir, seed=4)
    with pytest.raises(TinynetError, match=r"different model \('cifar_resnet' in ckpt-00001"):
        from tinynet.training.runner import run_protocol
        run_protocol(protocol(), model_name="densenet_model2", model_kwargs={"width": 0.0625},
                     data=data, run_dir=str(run_dir), seed=3, log=lambda line: None)
    assert snapshot(run_dir) == before
    lines = []
    train(data, run_dir, lines=lines)
    assert any("lost its config.json" in line for line in lines)
    assert (run_dir / "config.json").exists()
    assert_same_final(run_dir, reference)


def test_a_disk_that_fills_mid_run_loses_nothing_and_resumes(reference, data, tmp_path,
                                                             monkeypatch):
    from tinynet import io as tio
    from tinynet.training import checkpoint

    run_dir = tmp_path / "run"
    real_savez, calls = np.savez, []

    def savez_on_a_full_disk(f, **arrays):
        calls.append(1)
        if len(calls) == 2:  # the second epoch's checkpoint: half written, then no space
            f.write(b"PK\x03\x04" + b"\0" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_savez(f, **arrays)

    monkeypatch.setattr(checkpoint.np, "savez", savez_on_a_full_disk)
    with pytest.raises(tio.DiskFull) as e:
        train(data, run_dir)
    message = str(e.value)
    assert "no space left" in message and "ckpt-00002.npz" in message
    assert "this file needs about" in message and "re-run the same command" in message
    assert os.listdir(run_dir / "checkpoints") == ["ckpt-00001.npz"]
    assert not [n for n in os.listdir(run_dir) if n.startswith(".tmp-")]
    checkpoint.read_checkpoint(str(run_dir / "checkpoints" / "ckpt-00001.npz"))
    monkeypatch.setattr(checkpoint.np, "savez", real_savez)
    train(data, run_dir)
    assert_same_final(run_dir, reference)


def test_a_run_killed_before_its_first_checkpoint_leaves_no_temporary_file(reference, data,
                                                                             tmp_path):
    """A kill inside the first writes (config.json, lr.csv) leaves ``.tmp-*`` files and no
    checkpoint; the next start is then a fresh start, and must remove them too (issue 22: a
    SIGKILLed --continue-epochs run ended with a ``.tmp-*`` file beside its results)."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    leftovers = [run_dir / ".tmp-1a2b-config.json", run_dir / ".tmp-3c4d-lr.csv",
                 run_dir / ".tmp-5e6f-final_model.keras"]
    for path in leftovers:
        path.write_bytes(b"half a write")
    (run_dir / "notes.txt").write_text("the user's own file")
    train(data, run_dir)
    assert not [p for p in leftovers if p.exists()]
    assert (run_dir / "notes.txt").read_text() == "the user's own file"
    assert_same_final(run_dir, reference)


def test_a_disk_too_full_at_the_start_says_how_much_a_checkpoint_needs(data, tmp_path,
                                                                       monkeypatch):
    from tinynet import io as tio

    monkeypatch.setattr(tio, "free_bytes", lambda path: 10_000)
    with pytest.raises(TinynetError, match=r"not enough space for .*: 9\.8 KB free, a checkpoint "
                                           r"of this run takes about [\d.]+ KB"):
        train(data, tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_a_read_only_finished_run_is_reported_an_unfinished_one_refused(reference, data,
                                                                        tmp_path, monkeypatch):
    from tinynet.training.rundir import RunDirectory

    finished = copy_of(reference, tmp_path)
    monkeypatch.setattr(RunDirectory, "check_writable", lambda self: False)
    before = snapshot(finished)
    lines = []
    model = train(data, finished, lines=lines)
    assert any("read-only; it holds the finished run" in line for line in lines)
    assert lines[-1].startswith("done: 2 epochs; best val_accuracy")
    assert snapshot(finished) == before
    expected = arrays(reference / "checkpoints" / "ckpt-00002.npz")
    np.testing.assert_array_equal(model.variables[0].numpy(), expected["model_00000"])
    unfinished = tmp_path / "unfinished"
    shutil.copytree(reference, unfinished)
    (unfinished / "checkpoints" / "ckpt-00002.npz").unlink()
    with pytest.raises(TinynetError, match=r"cannot write the run directory .*unfinished "
                                           r"\(read-only or no permission\)"):
        train(data, unfinished)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="POSIX permissions")
def test_the_write_probe_sees_a_read_only_folder():
    """Permission bits do not stop root, so as root the probe runs in a forked child that has
    become user nobody (the probe of a local folder is plain file system calls), in a folder
    of /tmp (pytest's own are private to root)."""
    import pathlib
    import tempfile

    from tinynet.training.rundir import RunDirectory

    tmp_path = pathlib.Path(tempfile.mkdtemp(prefix="tinynet-probe-"))
    os.chmod(tmp_path, 0o777)
    folder = tmp_path / "ro"
    folder.mkdir()
    os.chmod(folder, 0o555)
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if the probe answers as it must
        try:
            if os.getuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            ok = (RunDirectory(str(folder)).check_writable() is False
                  and RunDirectory(str(tmp_path / "new")).check_writable() is True)
        except BaseException as e:
            print(f"probe failed: {e!r}", file=sys.stderr, flush=True)
            ok = False
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    shutil.rmtree(tmp_path, ignore_errors=True)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_run_resumed_on_other_data_of_the_same_size_is_refused(reference, tmp_path):
    from tinynet.data.datasets import get_dataset
    from tinynet.data.synthetic import write_synthetic_tiny_imagenet

    other_root = write_synthetic_tiny_imagenet(str(tmp_path / "other"), num_classes=5,
                                               train_per_class=8, val_per_class=4,
                                               test_images=3, grayscale_every=7, seed=4)
    other = get_dataset("tiny-imagenet", data_dir=other_root, download=False, cache="memory")
    run_dir = copy_of(reference, tmp_path)
    (run_dir / "checkpoints" / "ckpt-00002.npz").unlink()
    before = snapshot(run_dir)
    with pytest.raises(TinynetError, match=r"was trained on other data: .*differ.* \(recorded "
                                           r"in config\.json\)"):
        train(other, run_dir)
    (run_dir / "config.json").unlink()  # the checkpoint records it too
    with pytest.raises(TinynetError, match=r"trained on other data: .*in ckpt-00001\.npz"):
        train(other, run_dir)
    del before["config.json"]
    assert snapshot(run_dir) == before


def test_restart_keeps_a_finished_run_aside_and_discards_an_unfinished_one(reference, data,
                                                                            tmp_path):
    """``--restart`` never deletes a result: a finished run is moved into
    ``previous-run-<date>-<time>/`` inside the run directory, every file as it was; only an
    unfinished run (what the flag is for) is discarded."""
    from tinynet.training.rundir import PREVIOUS_RUN

    run_dir = copy_of(reference, tmp_path)
    before = snapshot(run_dir)
    lines = []
    train(data, run_dir, restart=True, lines=lines)
    kept = [n for n in os.listdir(run_dir) if n.startswith(PREVIOUS_RUN)]
    assert len(kept) == 1 and any(f"is kept in {run_dir / kept[0]}" in l for l in lines)
    assert {k[len(kept[0]) + 1:]: v for k, v in snapshot(run_dir).items()
            if k.startswith(kept[0])} == before
    assert_same_final(run_dir, reference)  # the new run, from the start

    unfinished = tmp_path / "unfinished"
    shutil.copytree(reference, unfinished)
    state = (unfinished / "state.json")
    state.write_text(state.read_text().replace('"complete"', '"running"'))
    os.remove(unfinished / "checkpoints" / "ckpt-00002.npz")
    lines = []
    train(data, unfinished, restart=True, lines=lines)
    assert not [n for n in os.listdir(unfinished) if n.startswith(PREVIOUS_RUN)]
    assert any("removing the unfinished run" in l for l in lines)
    assert_same_final(unfinished, reference)


def test_restart_keeps_a_finished_run_aside_on_an_object_store(reference):
    """On a store where a folder cannot be renamed (``gs://``; ``ram://`` stands in for it)
    the finished run is copied file by file into ``previous-run-*/`` and only then removed,
    every file and subfolder (checkpoints/, plots/) as it was."""
    import tensorflow as tf

    from tinynet.training.rundir import RunDirectory

    gfile = tf.io.gfile
    run_dir = "ram://restart-aside/run"
    before = snapshot(reference)
    for name, content in before.items():
        gfile.makedirs(os.path.dirname(f"{run_dir}/{name}"))
        with gfile.GFile(f"{run_dir}/{name}", "wb") as f:
            f.write(content)
    kept = RunDirectory(run_dir).move_aside()

    moved = {}
    for folder, _, files in gfile.walk(kept):
        for name in files:
            with gfile.GFile(f"{folder}/{name}", "rb") as f:
                moved[f"{folder}/{name}"[len(kept) + 1:]] = f.read()
    assert moved == before
    assert [n.rstrip("/") for n in gfile.listdir(run_dir)] == [os.path.basename(kept)]
