"""tf.distribute for every experiment (``tinynet.training.distribute``): device names and flags,
synchronised BatchNorm, a mirrored run over two logical CPU devices that learns and resumes
bit-identically, and a two-process multi-worker run on 127.0.0.1 that trains exactly as the
mirrored run with the same replicas."""
import csv
import json
import os
import socket
import subprocess
import sys
import types

import numpy as np
import pytest

from tinynet.errors import TinynetError
from tinynet.devices import normalize_device
from tinynet.training.distribute import parse_devices

from conftest import REPO, copy_run, multi_resnet_run, run_script

HERE = os.path.dirname(os.path.abspath(__file__))


def test_device_names_and_lists():
    for name in ("cpu:1", "/CPU:1", "/device:CPU:1", "device:cpu:1", " CPU:1 "):
        assert normalize_device(name) == "/device:CPU:1"
    assert parse_devices("GPU:0,gpu:1") == ["/device:GPU:0", "/device:GPU:1"]
    assert parse_devices("3") == 3
    for bad in ("GPU", "GPU:x", "CPU:0,cpu:0", "0", ",", "XPU:0"):
        with pytest.raises(TinynetError):
            parse_devices(bad)


def flags(**kw):
    return types.SimpleNamespace(**dict(dict(strategy="default", devices=None,
                                             model_parallel=None), **kw))


@pytest.mark.parametrize("kw,model,message", [
    (dict(model_parallel="CPU:0,CPU:1"), "cifar_resnet", "no parallel branches"),
    (dict(model_parallel="CPU:0,CPU:1", strategy="mirrored"), "multi_resnet",
     "cannot be combined"),
    (dict(model_parallel="CPU:1"), "multi_resnet", "at least two devices"),
    (dict(devices="GPU:3"), "cifar_resnet", "GPU(s)"),
    (dict(devices="CPU:0,CPU:1"), "cifar_resnet", "--strategy mirrored"),
    (dict(strategy="multiworker"), "cifar_resnet", "TF_CONFIG"),
    (dict(strategy="multiworker", devices="2"), "cifar_resnet", "does not apply"),
])
def test_impossible_device_flags_are_refused(kw, model, message, monkeypatch):
    from tinynet.experiment import placement
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(TinynetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        placement(flags(**kw), model)


def test_malformed_tf_config_is_refused(monkeypatch):
    from tinynet.training.distribute import make_strategy
    monkeypatch.setenv("TF_CONFIG", '{"cluster": {"worker": ["127.0.0.1:1"]}}')
    with pytest.raises(TinynetError, match="TF_CONFIG must be JSON like"):
        make_strategy("multiworker")


def test_mirrored_strategy_over_logical_cpus(capsys):
    from tinynet.experiment import placement
    strategy, split = placement(flags(strategy="mirrored", devices="2"), "cifar_resnet")
    assert split is None and strategy.num_replicas_in_sync == 2
    assert [d.split("/")[-1] for d in strategy.extended.worker_devices] == [
        "device:CPU:0", "device:CPU:1"]
    assert "strategy mirrored: 2 replica(s)" in capsys.readouterr().out


@pytest.mark.parametrize("synchronized", [False, True])
def test_sync_bn_normalises_with_the_global_batch(synchronized):
    """Two replicas whose halves of the batch have means 0 and 10: with --sync-bn the moving
    variance (momentum 0: the last batch's) is the global batch's; without it each replica
    normalises with its own half, and Keras keeps the first replica's statistics."""
    import keras
    import tensorflow as tf

    from tinynet.training.distribute import (make_strategy, prepare_model,
                                             synchronize_batch_norm)

    strategy = make_strategy("mirrored", ["CPU:0", "CPU:1"])
    with strategy.scope():
        inputs = keras.Input((3,))
        outputs = keras.layers.BatchNormalization(momentum=0.0, epsilon=0.0)(inputs)
        model = keras.Model(inputs, outputs)
        if synchronized:
            assert synchronize_batch_norm(model) == 1
        model.compile(optimizer=keras.optimizers.SGD(0.0), loss="mse")
    prepare_model(model, strategy)
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (4, 3)), rng.normal(10, 1, (4, 3))]).astype("float32")
    with strategy.scope():
        model.fit(tf.data.Dataset.from_tensors((x, x)), epochs=1, verbose=0)
    moving_variance = model.layers[1].moving_variance.numpy()
    expected = x.var(axis=0) if synchronized else x[:4].var(axis=0)
    np.testing.assert_allclose(moving_variance, expected, rtol=1e-4)


def history(run_dir):
    with open(os.path.join(run_dir, "history.csv")) as f:
        return list(csv.DictReader(f))


def arrays(path):
    with np.load(path) as data:
        return {k: data[k] for k in data.files if k != "meta"}


MIRRORED = ("--strategy", "mirrored", "--devices", "2")


@pytest.fixture(scope="module")
def mirrored_run(shared):
    """Multi-ResNet's --quick run mirrored over two logical CPUs (shared with its experiment's
    tests)."""
    return multi_resnet_run(shared, *MIRRORED)


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_mirrored_run_learns_and_records_its_replicas(mirrored_run):
    run_dir, stdout = mirrored_run
    assert "strategy mirrored: 2 replica(s)" in stdout
    losses = [float(r["loss"]) for r in history(run_dir)]
    assert len(losses) == 3 and losses[-1] < losses[0]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribution"]["strategy"] == "MirroredStrategy"
    assert config["distribution"]["replicas"] == 2
    assert config["protocol"]["stages"][0]["batch_size"] == 128  # the global batch
    assert (run_dir / "test_errors.json").exists()


@pytest.mark.slow  # (trains a paper's protocol end to end: CI's slow step)
def test_mirrored_validation_is_what_the_saved_model_gives(mirrored_run):
    """The replicas' BN moving statistics are averaged before validation, so the history's
    val_loss is the saved model's (without it, each replica validated its share with its own
    statistics: 0.1% off here, and a resumed run validated differently)."""
    from tinynet.evaluation import load_run
    run_dir, _ = mirrored_run
    last = history(run_dir)[-1]
    result = load_run(run_dir, "final").evaluate("val")
    assert result["loss"] == pytest.approx(float(last["val_loss"]), rel=1e-5)
    assert result["top1_accuracy"] == pytest.approx(float(last["val_accuracy"]))


@pytest.mark.slow  # the one mirrored resume (the fault battery kills a single-device run)
def test_mirrored_resume_is_bit_identical(mirrored_run, shared, tmp_path):
    ref_dir, _ = mirrored_run
    run_dir = copy_run(ref_dir, tmp_path / "run")
    for name in ("checkpoints/ckpt-00003.npz", "final_model.keras"):  # as if killed in epoch 3
        os.remove(run_dir / name)
    stdout = run_script("multi_resnet_cifar.py", "--quick", "--steps-per-epoch", "4",
                        "--deterministic", *MIRRORED, "--data-dir",
                        shared.data("multi_resnet_cifar"), "--run-dir", run_dir).stdout
    assert "from ckpt-00002.npz: 2/3 epochs done" in stdout
    a, b = (arrays(d / "checkpoints" / "ckpt-00003.npz") for d in (ref_dir, run_dir))
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    columns = ["loss", "accuracy", "val_loss", "val_accuracy", "lr"]
    assert [[r[c] for c in columns] for r in history(ref_dir)] == [
        [r[c] for c in columns] for r in history(run_dir)]


def free_ports(n):
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.mark.slow
def test_two_worker_experiment_on_localhost_trains_as_mirrored(shared, tmp_path):
    """The Multi-ResNet script as two workers (TF_CONFIG on 127.0.0.1, one CPU replica each),
    generating their data at the same time: the chief writes the run directory and the test
    errors, the worker ends with status 0 and writes nothing, and the history is the mirrored
    run's (two replicas in one process) to float tolerance."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    data_dir, run_dir = tmp_path / "data", tmp_path / "run"
    cmd = [sys.executable, os.path.join(REPO, "experiments", "multi_resnet_cifar.py"), "--quick",
           "--steps-per-epoch", "4", "--deterministic", "--data-dir", str(data_dir),
           "--run-dir", str(run_dir),
           "--strategy", "multiworker"]
    procs = []
    for index in (1, 0):
        env = dict(os.environ, TF_CONFIG=json.dumps(
            {"cluster": cluster, "task": {"type": "worker", "index": index}}))
        procs.append(subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.STDOUT, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=300)[0])
    finally:
        for proc in procs:
            proc.kill()
    worker, chief = outputs
    assert procs[1].returncode == 0, chief[-3000:]
    assert procs[0].returncode == 0, worker[-3000:]
    assert "this worker is done; the chief writes the run directory" in worker
    assert "done: 3 epochs" in chief and "test: best over epochs test error" in chief
    assert sorted(os.listdir(tmp_path)) == ["data", "run"]
    assert [n for n in os.listdir(data_dir) if n.startswith(".")] == []
    assert (run_dir / "test_errors.json").exists()
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["ckpt-00002.npz", "ckpt-00003.npz"]
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribution"]["strategy"] == "CollectiveAllReduceStrategy"  # (MWMS)
    assert config["distribution"]["replicas"] == 2
    mirrored, _ = multi_resnet_run(shared, *MIRRORED)
    ours, theirs = history(run_dir), history(mirrored)
    # training: the same; validation: Keras averages each worker's metric, and the last
    # partial validation batch (200 = 128 + 72) need not reach the workers in equal shares:
    # a mean of unequal shares' means (README)
    for column, rtol in (("loss", 1e-4), ("val_loss", 1e-3), ("val_accuracy", 1e-4)):
        np.testing.assert_allclose([float(r[column]) for r in ours],
                                   [float(r[column]) for r in theirs], rtol=rtol, atol=1e-5,
                                   err_msg=column)
