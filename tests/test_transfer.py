"""DenResNet's transfer models (seed 000): structure, exact counts, ImageNet preprocessing,
weights (None / "imagenet" / a file), freezing the backbone, saving. Nothing touches the network:
keras.utils.get_file is replaced wherever "imagenet" is asked for."""
import inspect
import os
import subprocess
import sys

import h5py
import keras
import numpy as np
import pytest

from tinynet.errors import TinynetError
from tinynet.layers import ImageNetPreprocessing
from tinynet.models import get_model, list_models, model_info
from tinynet.models import transfer
from tinynet.models.transfer import BACKBONES, PREPROCESS_MODES, SPECS
from tinynet.training.session import apply_freeze

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERAS_BACKBONES = [s for s, spec in SPECS.items() if spec.source == "keras"]
# the smallest size keras.applications accepts: the fastest models for behaviour tests
SMALL = dict(num_classes=5, image_size=32)
# keras ResNet v1 backbones minus torchvision's (conv biases, stride in the first 1x1 conv)
V1_EXTRA = {"resnet50": 26_560, "resnet101": 52_672, "resnet152": 75_712}
DEFAULT_COUNTS = {("transfer_resnet18", 64), ("transfer_resnet50", 64),
                  ("transfer_densenet121", 64)}


def counts(model):
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    return model.count_params(), trainable


def images(n=4, size=64, seed=0):
    return np.random.default_rng(seed).random((n, size, size, 3), np.float32)


def test_every_backbone_is_registered():
    assert set(list_models("transfer_*")) == set(BACKBONES.values())
    assert set(BACKBONES) == {"resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                              "resnet50v2", "resnet101v2", "resnet152v2", "densenet121"}
    assert PREPROCESS_MODES == {"resnet18": "torch", "resnet34": "torch", "resnet50": "caffe",
                                "resnet101": "caffe", "resnet152": "caffe",
                                "resnet50v2": "tf", "resnet101v2": "tf", "resnet152v2": "tf",
                                "densenet121": "torch"}


@pytest.mark.parametrize("name,size", [
    pytest.param(n, size, marks=() if (n, size) in DEFAULT_COUNTS else pytest.mark.slow)
    for n in sorted(BACKBONES.values()) for size in (64, 224)])
def test_exact_parameter_counts_at_200_classes(name, size):
    info = model_info(name)
    model = get_model(name, num_classes=200, image_size=size)
    assert counts(model) == (info.total_params, info.trainable_params)
    assert model.get_layer("resize").output.shape[1:3] == (size, size)
    short = name.removeprefix("transfer_")
    _, backbone_trainable = counts(model.get_layer("backbone"))
    torchvision = SPECS[short].torchvision_trainable
    if short in V1_EXTRA:
        assert backbone_trainable - torchvision == V1_EXTRA[short]
    elif torchvision is not None:  # resnet18/34 (tinynet's own) and densenet121
        assert backbone_trainable == torchvision
    # the head: GAP -> Dense(200) with bias
    features = model.get_layer("predictions").kernel.shape[0]
    assert info.trainable_params - backbone_trainable == (features + 1) * 200


def test_registered_backbone_counts_equal_torchvision():
    assert {s: SPECS[s].torchvision_trainable for s in ("resnet18", "resnet34", "densenet121")} \
        == {"resnet18": 11_176_512, "resnet34": 21_284_672, "densenet121": 6_953_856}
    assert {s: SPECS[s].torchvision_trainable for s in V1_EXTRA} == {
        "resnet50": 23_508_032, "resnet101": 42_500_160, "resnet152": 58_143_808}


def test_structure_and_layer_names():
    model = get_model("transfer_resnet18", dropout=0.2, **SMALL)
    assert [layer.name for layer in model.layers] == [
        "image", "resize", "preprocess", "backbone", "avg_pool", "dropout", "predictions"]
    assert model.input_shape == (None, None, None, 3)
    assert isinstance(model.get_layer("backbone"), keras.Model)
    assert model.get_layer("preprocess").mode == "torch"
    assert "dropout" not in [layer.name for layer in get_model("transfer_resnet18",
                                                                **SMALL).layers]
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    out = model.predict(images(), verbose=0)
    assert out.shape == (4, 5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("family,short", [
    ("resnet", "resnet50"), ("resnet_v2", "resnet50v2"), ("densenet", "densenet121")])
def test_preprocessing_equals_keras_applications(family, short):
    x = images(3, 16, seed=4)
    expected = getattr(keras.applications, family).preprocess_input(x * 255.0)
    layer = ImageNetPreprocessing(PREPROCESS_MODES[short])
    np.testing.assert_allclose(np.asarray(layer(x)), expected, rtol=0, atol=1e-5)
    # channels first: the same numbers, transposed
    first = ImageNetPreprocessing(PREPROCESS_MODES[short], data_format="channels_first")
    np.testing.assert_allclose(np.transpose(np.asarray(first(np.transpose(x, (0, 3, 1, 2)))),
                                            (0, 2, 3, 1)), expected, rtol=0, atol=1e-5)


def test_preprocessing_layer_config_and_checks():
    layer = ImageNetPreprocessing("caffe", data_format="channels_last")
    clone = keras.layers.deserialize(keras.layers.serialize(layer))
    assert isinstance(clone, ImageNetPreprocessing)
    assert (clone.mode, clone.data_format) == ("caffe", "channels_last")
    with pytest.raises(ValueError, match="Received: mode='imagenet'"):
        ImageNetPreprocessing("imagenet")


def test_keras_weights_file_names_and_hashes_are_keras_own():
    from keras.src.applications import densenet, resnet

    source = {"resnet": inspect.getsource(resnet), "densenet": inspect.getsource(densenet)}
    for short in KERAS_BACKBONES:
        spec = SPECS[short]
        folder, name = spec.weights_file.split("/")
        assert name == f"{short}_weights_tf_dim_ordering_tf_kernels_notop.h5"
        assert spec.weights_hash in source[folder]
        if folder == "resnet":  # the notop hash is the second of WEIGHTS_HASHES[name]
            assert resnet.WEIGHTS_HASHES[short][1] == spec.weights_hash
            assert transfer.KERAS_WEIGHTS_URL + "resnet/" == resnet.BASE_WEIGHTS_PATH
        else:
            assert densenet.DENSENET121_WEIGHT_PATH_NO_TOP == (
                transfer.KERAS_WEIGHTS_URL + spec.weights_file)


@pytest.fixture
def offline(monkeypatch):
    """keras.utils.get_file failing the way it does without a network."""
    calls = []

    def get_file(fname, origin, **kwargs):
        calls.append((fname, origin, kwargs))
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -3] Temporary failure "
                        f"in name resolution")

    monkeypatch.setattr(keras.utils, "get_file", get_file)
    return calls


@pytest.mark.parametrize("short", KERAS_BACKBONES)
def test_imagenet_offline_names_the_file(offline, short):
    name = os.path.basename(SPECS[short].weights_file)
    with pytest.raises(TinynetError) as info:
        get_model(BACKBONES[short], weights="imagenet", **SMALL)
    message = str(info.value)
    assert "\n" not in message
    assert name in message and "re-run" in message and "--weights <path" in message
    assert "KERAS_HOME" in message and "~/.keras/models/" in message
    assert offline == [(name, transfer.KERAS_WEIGHTS_URL + SPECS[short].weights_file,
                        {"cache_subdir": "models", "file_hash": SPECS[short].weights_hash})]
    assert transfer.imagenet_weights_path(short).endswith(os.path.join("models", name))


@pytest.mark.parametrize("short", ["resnet18", "resnet34"])
def test_imagenet_for_tinynet_resnets_is_an_error(offline, short):
    with pytest.raises(TinynetError, match="no Keras ImageNet weights for .*--backbone-source torchvision"):
        get_model(BACKBONES[short], weights="imagenet", **SMALL)
    assert offline == []  # nothing was downloaded


@pytest.fixture(scope="module")
def resnet50_notop(tmp_path_factory):
    """A ResNet50 transfer model and its backbone in keras.applications' ``_notop.h5`` format
    (the legacy HDF5 layout, layer by layer, that Keras' ImageNet files have)."""
    from keras.src.legacy.saving import legacy_h5_format

    model = get_model("transfer_resnet50", **SMALL)
    path = tmp_path_factory.mktemp("notop") / SPECS["resnet50"].weights_file.split("/")[1]
    with h5py.File(path, "w") as f:
        legacy_h5_format.save_weights_to_hdf5_group(f, model.get_layer("backbone"))
    return model, str(path)


def assert_same_backbone(a, b):
    for x, y in zip(a.get_layer("backbone").weights, b.get_layer("backbone").weights,
                    strict=True):
        np.testing.assert_array_equal(x.numpy(), y.numpy())


def test_imagenet_loads_the_file_keras_returns(monkeypatch, resnet50_notop):
    source, path = resnet50_notop
    monkeypatch.setattr(keras.utils, "get_file", lambda fname, origin, **kwargs: path)
    model = get_model("transfer_resnet50", weights="imagenet", **SMALL)
    assert_same_backbone(model, source)


def test_keras_notop_file_loads_into_the_backbone(resnet50_notop):
    source, path = resnet50_notop
    model = get_model("transfer_resnet50", weights=path, **SMALL)
    assert_same_backbone(model, source)
    head = [w.numpy() for w in model.get_layer("predictions").weights]
    assert not np.array_equal(head[0], source.get_layer("predictions").kernel.numpy())
    with pytest.raises(TinynetError, match="does not fit transfer_resnet50v2"):
        get_model("transfer_resnet50v2", weights=path, **SMALL)


def test_whole_model_weights_file_round_trip(tmp_path):
    model = get_model("transfer_resnet18", **SMALL)
    model.get_layer("predictions").bias.assign(np.arange(5, dtype=np.float32))
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    fresh = get_model("transfer_resnet18", weights=str(path), **SMALL)
    x = images()
    np.testing.assert_array_equal(fresh.predict(x, verbose=0), model.predict(x, verbose=0))
    assert transfer.load_transfer_weights(fresh, path) == "model"


def test_backbone_weights_file_loads_into_the_backbone(tmp_path):
    model = get_model("transfer_resnet18", **SMALL)
    path = tmp_path / "backbone.weights.h5"
    model.get_layer("backbone").save_weights(path)
    fresh = get_model("transfer_resnet18", **SMALL)
    initial_head = [w.numpy() for w in fresh.get_layer("predictions").weights]
    assert transfer.load_transfer_weights(fresh, path) == "backbone"
    assert_same_backbone(fresh, model)
    for w, before in zip(fresh.get_layer("predictions").weights, initial_head):
        np.testing.assert_array_equal(w.numpy(), before)  # the head was left alone


def test_weights_files_that_do_not_fit(tmp_path):
    with pytest.raises(TinynetError, match=r"weights file .*nothing\.weights\.h5 does not exist"):
        get_model("transfer_resnet18", weights=str(tmp_path / "nothing.weights.h5"), **SMALL)
    model = get_model("transfer_resnet18", **SMALL)
    model.save_weights(tmp_path / "five.weights.h5")
    seven = get_model("transfer_resnet18", num_classes=7, image_size=32)
    before = [w.numpy() for w in seven.weights]
    with pytest.raises(TinynetError, match="does not fit transfer_resnet18") as info:
        transfer.load_transfer_weights(seven, tmp_path / "five.weights.h5")
    assert "\n" not in str(info.value)
    # Keras assigned the backbone before finding the head's mismatch: restored
    for w, b in zip(seven.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b)
    (tmp_path / "junk.h5").write_text("not hdf5")
    with pytest.raises(TinynetError, match="junk.h5 does not fit"):
        get_model("transfer_resnet18", weights=str(tmp_path / "junk.h5"), **SMALL)


def test_frozen_backbone_trains_only_the_head():
    """apply_freeze(("backbone",)) freezes the nested model; Keras 3 then runs its batch norms
    in inference mode, so fit changes neither its weights nor its moving statistics."""
    model = get_model("transfer_resnet18", **SMALL)
    assert apply_freeze(model, ("backbone",)) == ["backbone"]
    backbone = model.get_layer("backbone")
    assert not any(layer.trainable for layer in backbone.layers)
    assert [w.path for w in model.trainable_weights] == ["predictions/kernel",
                                                         "predictions/bias"]
    before = [w.numpy() for w in backbone.weights]
    assert any("moving_mean" in w.path for w in backbone.weights)
    head = [w.numpy() for w in model.get_layer("predictions").weights]
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(images(8), np.arange(8) % 5, batch_size=4, epochs=2, verbose=0)
    for w, b in zip(backbone.weights, before, strict=True):
        np.testing.assert_array_equal(w.numpy(), b, err_msg=w.path)
    for w, b in zip(model.get_layer("predictions").weights, head):
        assert not np.array_equal(w.numpy(), b)
    # unfrozen, the batch norms train: moving statistics move
    apply_freeze(model, ())
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss="sparse_categorical_crossentropy")
    model.fit(images(8), np.arange(8) % 5, batch_size=4, epochs=1, verbose=0)
    means = [(w, b) for w, b in zip(backbone.weights, before) if "moving_mean" in w.path]
    assert any(not np.array_equal(w.numpy(), b) for w, b in means)


def saved_frozen_model(tmp_path):
    model = get_model("transfer_resnet18", dropout=0.3, **SMALL)
    apply_freeze(model, ("backbone",))
    model.save(tmp_path / "transfer.keras")
    return model, tmp_path / "transfer.keras"


def test_saves_and_loads_with_equal_outputs(tmp_path):
    model, path = saved_frozen_model(tmp_path)
    loaded = keras.models.load_model(path)
    assert [layer.name for layer in loaded.layers if not layer.trainable] == ["backbone"]
    assert loaded.get_layer("preprocess").mode == "torch"
    x = images(2)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


@pytest.mark.slow
def test_saves_and_loads_in_a_fresh_process(tmp_path):
    model, path = saved_frozen_model(tmp_path)
    x = images(2)
    np.save(tmp_path / "x.npy", x)
    code = ("import sys, numpy as np, keras, tinynet; "
            "m = keras.models.load_model(sys.argv[1]); "
            "assert [l.name for l in m.layers if not l.trainable] == ['backbone']; "
            "np.save(sys.argv[3], m.predict(np.load(sys.argv[2]), verbose=0))")
    proc = subprocess.run([sys.executable, "-c", code, str(path), str(tmp_path / "x.npy"),
                           str(tmp_path / "y.npy")], cwd=REPO, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), model.predict(x, verbose=0))


@pytest.mark.slow
@pytest.mark.parametrize("short", KERAS_BACKBONES + ["resnet34"])
def test_every_backbone_saves_and_loads(short, tmp_path):
    model = get_model(BACKBONES[short], **SMALL)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    x = images(2)
    np.testing.assert_array_equal(loaded.predict(x, verbose=0), model.predict(x, verbose=0))


def test_arguments_are_checked():
    with pytest.raises(TinynetError, match="takes no argument.*width"):
        get_model("transfer_resnet18", width=0.5)
    with pytest.raises(TinynetError, match="Received: image_size=16"):
        get_model("transfer_resnet18", image_size=16)
    with pytest.raises(TinynetError, match="Received: dropout=1.0"):
        get_model("transfer_resnet18", dropout=1.0)
    with pytest.raises(TinynetError, match="Received: weights=3"):
        get_model("transfer_resnet18", weights=3)
    with pytest.raises(TinynetError, match="unknown transfer backbone 'vgg16'"):
        transfer.build_transfer("vgg16")
    assert model_info("transfer_resnet50").arguments == (
        "input_shape", "num_classes", "image_size", "weights", "dropout", "interpolation",
        "classifier_activation", "source", "batch_norm")
