"""The training-speed options: mixed precision (float32 classifier, loss scaling, identity),
``jit_compile``, and the input work moved into the training step (``--augment-on device``,
``--data-on-device``), which must compute exactly the host pipeline's batches."""
import importlib.util
import json

import numpy as np
import pytest
import tensorflow as tf

from tinynet.errors import TinynetError

from conftest import cli_error, run_script


def protocol(recipe="flip", epochs=2, mixup=None):
    from tinynet.training.lr import Constant
    from tinynet.training.protocol import Mixup, Protocol, Stage
    return Protocol(
        name="speed", optimizer={"name": "sgd", "learning_rate": 0.05, "momentum": 0.9},
        val_resolution=64, eval_batch_size=20,
        stages=(Stage("s", 64, 10, epochs, steps_per_epoch=2, augment=recipe, lr=Constant(),
                      mixup=None if mixup is None else Mixup(mixup)),))


@pytest.fixture(scope="module")
def data(small_root):
    from tinynet.data.datasets import get_dataset
    return get_dataset("tiny-imagenet", data_dir=small_root, download=False, cache="memory")


def train(data, run_dir, **kwargs):
    from tinynet.training.runner import run_protocol
    kwargs.setdefault("augment_backend", "native")
    return run_protocol(kwargs.pop("protocol", protocol()), model_name="densenet_model2",
                        data=data, run_dir=str(run_dir), model_kwargs={"width": 0.0625},
                        seed=3, log=lambda line: None, **kwargs)


def arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow  # (builds or trains models for seconds: CI's slow step)
@pytest.mark.parametrize("on_device", ["augment", "data"])
def test_device_input_computes_the_host_pipelines_batches(data, on_device):
    from tinynet.augment import get_augmenter
    from tinynet.augment.mixup import Mixup
    from tinynet.data.device_input import DeviceInput
    from tinynet.data.pipeline import train_dataset

    recipe = "resnet_heavy" if on_device == "augment" else "flip"
    options = dict(resolution=48, interpolation="bilinear",
                   augment=get_augmenter(recipe, "native"), mean=[0.4, 0.5, 0.6],
                   std=[0.2, 0.3, 0.25], batch_transform=Mixup(1.0, data.num_classes))
    stream = dict(seed=5, first_epoch=2, num_epochs=1, steps_per_epoch=3, batch_size=8,
                  sample_offset=16)
    host = list(train_dataset(data.train, **stream, **options))
    device_input = DeviceInput(data.train, data_on_device=on_device == "data", **options)
    moved = train_dataset(data.train, **stream, **options, device_input=device_input)
    step = tf.function(device_input)
    for (x, y), element in zip(host, moved):
        args = element if isinstance(element, tuple) else (element,)
        if on_device == "data":
            assert set(args[0]) == {"index", "key"}  # the host sends indices and keys only
        else:
            assert args[0]["images"].dtype == tf.uint8
        x2, y2 = step(*args)
        # The same function; the step's graph is optimised differently from tf.data's, so a
        # float32 rounding may move an interpolated pixel to the next grey level before the
        # uint8 rounding: at most one level (1/255/std after normalising), on few pixels.
        diff = np.abs(x2.numpy() - x.numpy())
        assert diff.max() <= 1 / 255 / 0.2 + 1e-5
        assert np.mean(diff > 1e-5) < 0.01
        np.testing.assert_allclose(y2.numpy(), y.numpy(), atol=1e-6)
    spec = device_input.output_spec(moved.element_spec)
    assert spec[0].shape == (8, 48, 48, 3) and spec[1].shape == (8, 2 * data.num_classes)


@pytest.mark.slow  # (CI's second step: the default run's 10-minute budget)
def test_data_on_device_trains_like_the_host_pipeline(data, tmp_path):
    import csv

    train(data, tmp_path / "host")
    train(data, tmp_path / "device", data_on_device=True, augment_on="device")
    rows = {d: list(csv.DictReader(open(tmp_path / d / "history.csv")))
            for d in ("host", "device")}
    assert len(rows["device"]) == 2
    # the same initial weights and batches (up to a grey level on few pixels): the first
    # epoch's loss agrees closely (later epochs drift: these runs are not --deterministic)
    first = [float(rows[d][0]["loss"]) for d in ("host", "device")]
    assert abs(first[1] - first[0]) < 0.01 * first[0], first
    assert (tmp_path / "device" / "checkpoints" / "ckpt-00002.npz").exists()
    config = json.loads((tmp_path / "device" / "config.json").read_text())
    assert config["distribution"]["data_on_device"] is True
    assert config["distribution"]["augment_on"] == "device"


def test_device_input_refuses_what_cannot_run(data, tmp_path):
    from tinynet.data.device_input import DeviceInput, check_device_input
    with pytest.raises(TinynetError, match="--augment-backend native"):
        check_device_input("device", False, "imgaug")
    with pytest.raises(TinynetError, match="one replica"):
        check_device_input("device", True, "native", replicas=2)
    with pytest.raises(TinynetError, match="--augment-on must be"):
        check_device_input("gpu", False, "native")
    from tinynet.data.pipeline import ImageSet
    on_disk = ImageSet(labels=np.zeros(2, np.int32), image_size=64, paths=["a", "b"])
    with pytest.raises(TinynetError, match="--cache memory"):
        DeviceInput(on_disk, resolution=64, data_on_device=True)


@pytest.mark.slow  # (CI's second step: the default run's 10-minute budget)
def test_mixed_bfloat16_run_keeps_the_classifier_in_float32_and_loads(data, tmp_path):
    import keras

    model = train(data, tmp_path / "bf16", precision="mixed_bfloat16", jit_compile=True)
    assert keras.mixed_precision.global_policy().name == "float32"  # not leaked
    last = model.outputs[0]._keras_history.operation
    assert last.dtype_policy.name == "float32"
    assert {layer.dtype_policy.name for layer in model.layers} == {"mixed_bfloat16", "float32"}
    assert all(v.dtype == "float32" for v in model.weights)  # float32 variables
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["precision"] == "mixed_bfloat16" and config["jit_compile"] is True
    history = (tmp_path / "bf16" / "history.csv").read_text().splitlines()
    assert len(history) == 3 and "nan" not in history[-1]
    import tinynet  # noqa: F401
    loaded = keras.models.load_model(tmp_path / "bf16" / "final_model.keras")
    x = np.random.default_rng(0).random((4, 64, 64, 3), np.float32)
    y = loaded.predict(x, verbose=0)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y.sum(axis=1), 1.0, atol=1e-5)  # a float32 softmax
    np.testing.assert_allclose(y, model.predict(x, verbose=0), atol=1e-6)


@pytest.mark.slow  # (CI's second step: the default run's 10-minute budget)
def test_mixed_float16_checkpoints_the_loss_scale_and_resumes(data, tmp_path):
    import keras

    run_dir = tmp_path / "fp16"
    model = train(data, run_dir, precision="mixed_float16")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    second = arrays(run_dir / "checkpoints" / "ckpt-00002.npz")
    meta = json.loads(str(second["meta"]))
    assert any("dynamic_scale" in p for p in meta["optimizer_variables"])
    # a kill after epoch 1: the run resumes from the first checkpoint and finishes
    (run_dir / "checkpoints" / "ckpt-00002.npz").unlink()
    (run_dir / "final_model.keras").unlink()
    applied = int(model.optimizer.iterations.numpy())  # 4 steps, less any the loss scale skipped
    resumed = train(data, run_dir, precision="mixed_float16")
    assert 1 <= applied <= 4 and resumed.optimizer.iterations.numpy() == applied
    assert json.loads((run_dir / "state.json").read_text())["status"] == "complete"


@pytest.mark.slow  # (builds or trains models for seconds: CI's slow step)
def test_precision_and_jit_compile_belong_to_the_identity(data, tmp_path):
    run_dir = tmp_path / "run"
    train(data, run_dir, protocol=protocol(epochs=1))
    with pytest.raises(TinynetError, match="different precision"):
        train(data, run_dir, protocol=protocol(epochs=1), precision="mixed_bfloat16")
    with pytest.raises(TinynetError, match="different jit_compile"):
        train(data, run_dir, protocol=protocol(epochs=1), jit_compile=False)
    # a run made before these options existed resumes with their defaults
    config = json.loads((run_dir / "config.json").read_text())
    del config["precision"], config["jit_compile"]
    (run_dir / "config.json").write_text(json.dumps(config))
    train(data, run_dir, protocol=protocol(epochs=1))


def test_cli_refuses_device_augmentation_with_imgaug(quick_data_dir, tmp_path, capsys):
    from tinynet.papers import get_paper

    line = cli_error(get_paper("resnet_tiny_imagenet").main, [
        "--quick", "--data-dir", quick_data_dir, "--run-dir", tmp_path / "run",
        "--augment-on", "device"], capsys)
    assert line.startswith("error: --augment-on device") and "--augment-backend native" in line
    assert not (tmp_path / "run").exists()


@pytest.mark.slow  # (CI's second step: the default run's 10-minute budget)
def test_data_format_auto_measures_then_keeps_the_runs_choice(data, tmp_path, monkeypatch):
    import argparse

    from tinynet import experiment
    from tinynet.training import layout

    lines = []
    best = layout.measure_data_format("cifar_resnet", {"width": 0.25}, 5, 4, 32, steps=1,
                                      log=lines.append)
    assert best in layout.FORMATS
    assert lines[-1].startswith(f"--data-format auto: {best} (") and " ms" in lines[-1]
    # a run directory that chose already is not measured again
    run_dir = tmp_path / "run"
    train(data, run_dir, protocol=protocol(epochs=1))
    config = json.loads((run_dir / "config.json").read_text())
    config["model_kwargs"]["data_format"] = "channels_first"
    (run_dir / "config.json").write_text(json.dumps(config))
    monkeypatch.setattr(layout, "measure_data_format", lambda *a, **k: pytest.fail("measured"))
    args = argparse.Namespace(run_dir=str(run_dir), restart=False, precision="float32")
    assert experiment.measured_data_format(args, protocol(), "densenet_model2", {}, data) == (
        "channels_first")
    with pytest.raises(TinynetError, match="does not apply to transfer_resnet18"):
        experiment.measured_data_format(args, protocol(), "transfer_resnet18", {}, data)


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax is not installed")
def test_an_experiment_trains_and_resumes_under_jax(tmp_path):
    # XLA's CPU optimisation level 0: the same arithmetic, compiled in seconds, not minutes
    env = {"XLA_FLAGS": "--xla_backend_optimization_level=0", "TF_CPP_MIN_LOG_LEVEL": "3"}
    run_dir = tmp_path / "run"
    args = ["--quick", "--steps-per-epoch", "4", "--backend", "jax", "--run-dir", run_dir,
            "--data-dir", tmp_path / "data"]
    first = run_script("multi_resnet_cifar.py", *args, env=env)
    assert "done: 3 epochs" in first.stdout
    config = json.loads((run_dir / "config.json").read_text())
    assert config["distribution"]["keras_backend"] == "jax"
    # lose the last epoch: the run resumes from the checkpoint before it, under JAX
    (run_dir / "checkpoints" / "ckpt-00003.npz").unlink()
    (run_dir / "final_model.keras").unlink()
    second = run_script("multi_resnet_cifar.py", *args, env=env)
    assert "resuming" in second.stdout and "2/3 epochs done" in second.stdout
    assert "done: 3 epochs" in second.stdout
