"""torchvision state dicts -> tinynet (tinynet.models.torchvision_weights) and torchvision's
DenseNet-121 (tinynet.models.torchvision_densenet), checked without torch.

tests/data/torchvision/<architecture>.json (resnet18, resnet50, densenet121) hold torchvision's
state-dict keys, shapes and a numpy rule filling every tensor, a fixed input, and the float64
eval-mode logits torchvision computed with those weights. Regenerate them, with torch and
torchvision installed (nothing is downloaded), by::

    /work/venv-torch/bin/python tools/make_torchvision_fixtures.py

The tests that need a real torch (reading .pth files) skip without it; the venv above runs
them: ``/work/venv-torch/bin/python -m pytest -q tests/test_torchvision_weights.py``.
"""
import functools
import json
import os
import pathlib
import sys
import types

import keras
import numpy as np
import pytest

from tinynet.errors import TinynetError
from tinynet.models import get_model, model_info
from tinynet.models import torchvision_weights as tw
from tinynet.models.torchvision_densenet import TORCHVISION_PARAMS, build_densenet121

DATA = pathlib.Path(__file__).parent / "data" / "torchvision"
TOLERANCE = 1e-9  # max |difference| / max |torchvision logit|, float64


def fill(entry):
    """One fixture tensor (tools/make_torchvision_fixtures.py's rule)."""
    rng = np.random.default_rng(entry["seed"])
    shape = tuple(entry["shape"])
    if entry["scale"] == 0:
        return np.full(shape, entry["center"], dtype=entry["dtype"])
    return (entry["center"] + entry["scale"] * (2.0 * rng.random(shape) - 1.0)).astype(
        entry["dtype"])


@functools.lru_cache(maxsize=None)
def fixture(architecture):
    return json.loads((DATA / f"{architecture}.json").read_text())


def state_dict(architecture):
    """A fresh {key: array} of the fixture (num_batches_tracked included, as torch saves it)."""
    return {e["key"]: fill(e) for e in fixture(architecture)["entries"]}


@functools.lru_cache(maxsize=None)
def tinynet_logits(architecture, padding="torch"):
    """The converted tinynet model's logits on the fixture's input, built in float64
    (``padding="keras"``: a ResNet with Keras' "same" padding at stride 2 instead)."""
    # both: the first layer built pins the global dtype policy to floatx() (Keras 3), so
    # setting floatx alone would leak float64 into later tests or not take effect
    record, floatx, policy = fixture(architecture), keras.config.floatx(), \
        keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    try:
        if padding == "torch":
            model = tw.build_model(architecture, input_shape=(64, 64, 3),
                                   classifier_activation=None)
        else:
            from tinynet.models.resnet import build_resnet
            model = build_resnet(architecture, (64, 64, 3), 1000, classifier_activation=None,
                                 stem="imagenet", batch_norm="torch", padding="keras")
        assert model.weights[0].dtype == "float64"
        tw.load_torchvision_state_dict(model, state_dict(architecture), architecture, True)
        spec = record["input"]
        image = 2.0 * np.random.default_rng(spec["seed"]).random(spec["shape_nchw"]) - 1.0
        return np.asarray(model(image.transpose(0, 2, 3, 1), training=False))
    finally:
        keras.config.set_floatx(floatx)
        keras.config.set_dtype_policy(policy)


def relative_difference(ours, theirs):
    theirs = np.asarray(theirs)
    assert ours.shape == theirs.shape == (2, 1000)
    return float(np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)))


def small(architecture="resnet18", **kwargs):
    """A float32 model at 32 px for the error tests (the weights do not depend on the size)."""
    return tw.build_model(architecture, input_shape=(32, 32, 3), **kwargs)


def one_line_error(call, *match):
    with pytest.raises(TinynetError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for text in match:
        assert text in message, message
    return message


# --- numbers: the converted models compute torchvision's function ----------------------------

def test_densenet121_logits_equal_torchvision():
    assert relative_difference(tinynet_logits("densenet121"),
                               fixture("densenet121")["logits"]) < TOLERANCE


# ResNet-50's full-width float64 builds take ~5 s each: CI's slow step (ResNet-18 stays here)
RESNETS = ["resnet18", pytest.param("resnet50", marks=pytest.mark.slow)]


@pytest.mark.parametrize("architecture", RESNETS)
def test_resnet_logits_equal_torchvision(architecture):
    assert relative_difference(tinynet_logits(architecture),
                               fixture(architecture)["logits"]) < TOLERANCE


@pytest.mark.parametrize("architecture", RESNETS)
def test_keras_padding_is_a_shifted_function(architecture):
    """With Keras' "same" padding at stride 2 (resnet.py's default, padding="keras") the same
    weights compute what torchvision computes with that padding, not torchvision's function:
    why the torchvision backbones pass padding="torch"."""
    shifted = tinynet_logits(architecture, "keras")
    assert relative_difference(shifted,
                               fixture(architecture)["logits_keras_same_padding"]) < TOLERANCE
    assert relative_difference(shifted, fixture(architecture)["logits"]) > 1e-2


@pytest.mark.slow  # (a full-width DenseNet-121 built twice: ~5 s)
def test_densenet121_counts_and_registry():
    model = build_densenet121(input_shape=(32, 32, 3))
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == TORCHVISION_PARAMS == tw.ARCHITECTURES["densenet121"].torchvision_params
    assert model_info("torchvision_densenet121").trainable_params == trainable
    assert sum(int(np.prod(w.shape)) for w in model.weights) == \
        model_info("torchvision_densenet121").total_params
    assert not any(isinstance(layer, keras.layers.Lambda) for layer in model.layers)
    assert all(layer.epsilon == 1e-5 and layer.momentum == 0.9 for layer in model.layers
               if isinstance(layer, keras.layers.BatchNormalization))
    # the fixture's keys are exactly what the converter expects, head included
    keys = {e["key"] for e in fixture("densenet121")["entries"]}
    assert {k for k in keys if not k.endswith("num_batches_tracked")} == \
        set(tw.expected_keys("densenet121"))
    small_copy = get_model("torchvision_densenet121", num_classes=5, width=0.0625,
                           input_shape=(32, 32, 3))
    assert small_copy.output.shape == (None, 5)


@pytest.mark.parametrize("architecture", sorted(tw.ARCHITECTURES))
def test_expected_keys_match_the_fixtures_and_counts(architecture):
    """The key lists of the architectures without a fixture follow from the same rules; the
    fixtures pin resnet18/50 and densenet121 to torchvision's own lists."""
    keys = tw.expected_keys(architecture)
    assert len(keys) == len(set(keys))
    if (DATA / f"{architecture}.json").exists():
        assert set(keys) == {e["key"] for e in fixture(architecture)["entries"]
                             if not e["key"].endswith("num_batches_tracked")}
    headless = tw.expected_keys(architecture, include_top=False)
    assert set(keys) - set(headless) == {k for k in keys if k.startswith(("fc.", "classifier."))}


def test_old_densenet_key_names_and_dataparallel_prefix():
    """torchvision's own densenet121-a639ec97.pth spells 'norm.1'; DataParallel adds
    'module.'."""
    arrays = state_dict("densenet121")
    old = {"module." + k.replace("norm1", "norm.1").replace("conv2", "conv.2"): v
           for k, v in arrays.items()}
    assert "module.features.denseblock1.denselayer1.norm.1.weight" in old
    model = small("densenet121")
    assert tw.load_torchvision_state_dict(model, old, "densenet121") == 606
    layer = model.get_layer("features_denseblock1_denselayer1_conv2")
    assert layer.kernel.dtype == "float32"
    np.testing.assert_array_equal(layer.kernel.numpy(), arrays[
        "features.denseblock1.denselayer1.conv2.weight"].transpose(2, 3, 1, 0).astype("float32"))
    np.testing.assert_array_equal(model.get_layer("classifier").kernel.numpy(),
                                  arrays["classifier.weight"].T.astype("float32"))


def test_headless_backbone_skips_the_head():
    model = small(include_top=False)
    n = tw.load_torchvision_state_dict(model, state_dict("resnet18"), "resnet18",
                                       include_top=False)
    assert n == len(tw.expected_keys("resnet18", include_top=False)) == 100
    arrays = state_dict("resnet18")
    for key in [k for k in arrays if k.startswith("fc.")]:
        del arrays[key]
    assert tw.load_torchvision_state_dict(model, arrays, "resnet18", include_top=False) == 100
    bn = model.get_layer("stage4_block2_bn2")
    np.testing.assert_array_equal(bn.moving_variance.numpy(),
                                  arrays["layer4.1.bn2.running_var"].astype("float32"))


# --- errors: one line, the problem and the fix, and nothing half-loaded ----------------------

@pytest.fixture(scope="module")
def resnet18_10():
    """ResNet-18 with a 10-class head; its weights must survive every failed load."""
    return small(num_classes=10)


@pytest.fixture
def untouched(resnet18_10):
    before = [w.numpy().copy() for w in resnet18_10.weights]
    yield resnet18_10
    after = [w.numpy() for w in resnet18_10.weights]
    assert all(np.array_equal(a, b) for a, b in zip(before, after))


def test_missing_keys(untouched):
    arrays = state_dict("resnet18")
    for key in ("layer2.0.conv1.weight", "layer3.1.bn2.running_var", "bn1.bias"):
        del arrays[key]
    one_line_error(lambda: tw.load_torchvision_state_dict(untouched, arrays, "resnet18"),
                   "not torchvision's resnet18", "3 missing keys",
                   "bn1.bias, layer2.0.conv1.weight, layer3.1.bn2.running_var")


def test_another_architecture_is_named(untouched):
    resnet34 = {k: np.zeros(1, "float32") for k in tw.expected_keys("resnet34")}
    message = one_line_error(
        lambda: tw.load_torchvision_state_dict(untouched, resnet34, "resnet18"),
        "unexpected keys", "looks like torchvision's resnet34", "architecture='resnet34'")
    assert "missing keys" not in message  # resnet18's keys are a subset of resnet34's
    one_line_error(
        lambda: tw.load_torchvision_state_dict(untouched, state_dict("densenet121"), "resnet18"),
        "102 missing keys", "606 unexpected keys", "and 601 more",
        "looks like torchvision's densenet121")


def test_unexpected_key_and_missing_head(untouched):
    arrays = state_dict("resnet18")
    arrays["layer5.0.conv1.weight"] = np.zeros((1, 1, 1, 1), "float32")
    one_line_error(lambda: tw.load_torchvision_state_dict(untouched, arrays, "resnet18"),
                   "1 unexpected keys (layer5.0.conv1.weight)")
    headless = {k: v for k, v in state_dict("resnet18").items() if not k.startswith("fc.")}
    one_line_error(lambda: tw.load_torchvision_state_dict(untouched, headless, "resnet18"),
                   "2 missing keys (fc.bias, fc.weight)", "include_top=False")


def test_wrong_shapes(untouched):
    """The 1000-class head into a 10-class model fails at the last tensor, after every other
    one was checked: nothing is assigned."""
    one_line_error(
        lambda: tw.load_torchvision_state_dict(untouched, state_dict("resnet18"), "resnet18"),
        "fc.weight has shape (1000, 512)", "'predictions' needs (10, 512)", "num_classes")
    arrays = state_dict("resnet18")
    arrays["layer1.0.conv1.weight"] = arrays["layer1.0.conv1.weight"][:, :, :1, :1]
    one_line_error(lambda: tw.load_torchvision_state_dict(untouched, arrays, "resnet18"),
                   "layer1.0.conv1.weight has shape (64, 64, 1, 1)",
                   "'stage1_block1_conv1' needs (64, 64, 3, 3)")


def test_non_float_arrays(untouched):
    arrays = state_dict("resnet18")
    arrays["layer4.1.bn2.running_mean"] = np.zeros(512, "int64")
    one_line_error(lambda: tw.load_torchvision_state_dict(untouched, arrays, "resnet18"),
                   "layer4.1.bn2.running_mean has dtype int64", "model.float()")


def test_wrong_model_or_architecture(untouched):
    arrays = state_dict("resnet18")
    one_line_error(lambda: tw.load_torchvision_state_dict(untouched, arrays, "resnet19"),
                   "unknown torchvision architecture 'resnet19'", "resnet18, resnet34")
    from tinynet.models.resnet import build_resnet

    variant_c = build_resnet("resnet18", (32, 32, 3), 1000, variant="c", stem="imagenet")
    before = [w.numpy().copy() for w in variant_c.weights]
    one_line_error(lambda: tw.load_torchvision_state_dict(variant_c, arrays, "resnet18"),
                   "variant 'a'", "stem='imagenet'")
    assert all(np.array_equal(a, w.numpy()) for a, w in zip(before, variant_c.weights))
    tiny_stem = build_resnet("resnet18", (32, 32, 3), 1000, stem="tiny")
    one_line_error(lambda: tw.load_torchvision_state_dict(tiny_stem, arrays, "resnet18"),
                   "conv1.weight has shape (64, 3, 7, 7)", "needs (64, 3, 3, 3)")
    one_line_error(lambda: tw.load_torchvision_state_dict(untouched, state_dict("resnet50"),
                                                          "resnet50"),
                   "is not tinynet's resnet50", "build_model('resnet50')")


# --- reading .pth files ----------------------------------------------------------------------

class FakeTensor:
    """What state_dict_arrays uses of a torch.Tensor."""
    dtype = "float32"

    def __init__(self, array):
        self.array = np.asarray(array)

    def detach(self):
        return self

    def cpu(self):
        return self

    def numpy(self):
        return self.array


def fake_torch(monkeypatch, load):
    module = types.ModuleType("torch")
    module.Tensor, module.bfloat16, module.load = FakeTensor, object(), load
    monkeypatch.setitem(sys.modules, "torch", module)


@pytest.fixture
def pth(tmp_path):
    path = tmp_path / "resnet18-f37072fd.pth"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    return path


def test_torch_missing(monkeypatch, pth):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    one_line_error(lambda: tw.state_dict_arrays(pth), str(pth), "pip install torch",
                   ".weights.h5")
    one_line_error(lambda: tw.state_dict_arrays(pth.with_name("absent.pth")), "does not exist")


def test_corrupt_file(monkeypatch, pth):
    def load(path, map_location, weights_only):
        assert map_location == "cpu" and weights_only is True
        raise RuntimeError("PytorchStreamReader failed reading zip archive:\nfailed finding "
                           "central directory")

    fake_torch(monkeypatch, load)
    one_line_error(lambda: tw.state_dict_arrays(pth), f"could not read {pth}",
                   "failed finding central directory", "download it again")


def test_nested_state_dict_and_bad_contents(monkeypatch, pth):
    state = {"conv1.weight": FakeTensor(np.ones((2, 3, 7, 7), "float32"))}
    fake_torch(monkeypatch, lambda *a, **k: {"model": state, "epoch": 3})
    np.testing.assert_array_equal(tw.state_dict_arrays(pth)["conv1.weight"], np.ones(
        (2, 3, 7, 7)))
    fake_torch(monkeypatch, lambda *a, **k: {"state_dict": state})
    assert list(tw.state_dict_arrays(pth)) == ["conv1.weight"]
    fake_torch(monkeypatch, lambda *a, **k: {"conv1.weight": 3.0})
    one_line_error(lambda: tw.state_dict_arrays(pth), "'conv1.weight' is a float")
    fake_torch(monkeypatch, lambda *a, **k: [1, 2])
    one_line_error(lambda: tw.state_dict_arrays(pth), "holds a list, not a state dict")


def test_real_torch_files(tmp_path):
    """With torch installed (the venv of the module docstring): a real file, a truncated one."""
    torch = pytest.importorskip("torch")
    path = tmp_path / "state.pth"
    state = {"a.weight": torch.arange(6, dtype=torch.float32).reshape(2, 3),
             "a.num_batches_tracked": torch.tensor(5), "b": torch.ones(2, dtype=torch.bfloat16)}
    torch.save({"state_dict": state}, path)
    arrays = tw.state_dict_arrays(path)
    np.testing.assert_array_equal(arrays["a.weight"], np.arange(6).reshape(2, 3))
    assert arrays["b"].dtype == np.float32 and arrays["a.num_batches_tracked"] == 5
    path.write_bytes(path.read_bytes()[:40])
    one_line_error(lambda: tw.state_dict_arrays(path), f"could not read {path}")


# --- the converted .weights.h5 (what a --weights torchvision run caches) ---------------------

@pytest.mark.parametrize("architecture", [  # (DenseNet-121 built three times: ~11 s)
    "resnet18", pytest.param("densenet121", marks=pytest.mark.slow)])
def test_weights_file_round_trip(monkeypatch, tmp_path, architecture):
    arrays = state_dict(architecture)
    monkeypatch.setattr(tw, "state_dict_arrays", lambda path: arrays)
    out = tmp_path / "cache" / f"{architecture}_torchvision_notop.weights.h5"
    assert tw.convert_torchvision_file("x.pth", architecture, out) == str(out)
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no temporary left
    direct = small(architecture, include_top=False)
    tw.load_torchvision_state_dict(direct, arrays, architecture, include_top=False)
    fresh = tw.build_model(architecture, input_shape=(48, 48, 3), include_top=False)
    fresh.load_weights(out)
    assert [w.path for w in fresh.weights] == [w.path for w in direct.weights]
    assert all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(fresh.weights, direct.weights))
    one_line_error(lambda: tw.convert_torchvision_file("x.pth", architecture, tmp_path / "x.h5"),
                   ".weights.h5")


@pytest.mark.slow  # (two transfer models and two converted files: ~8 s)
def test_weights_file_loads_into_the_transfer_backbone(monkeypatch, tmp_path):
    from tinynet.models.transfer import load_transfer_weights

    """Today's transfer_resnet18 builds its backbone with Keras' BatchNormalization: the file
    must be written with batch_norm="keras" (Keras 3 names .weights.h5 groups by class)."""
    arrays = state_dict("resnet18")
    monkeypatch.setattr(tw, "state_dict_arrays", lambda path: arrays)
    out = tw.convert_torchvision_file("x.pth", "resnet18", tmp_path / "r18.weights.h5",
                                      batch_norm="keras")
    model = get_model("transfer_resnet18", image_size=32, num_classes=3)
    assert load_transfer_weights(model, out) == "backbone"
    direct = small(include_top=False, batch_norm="keras")
    tw.load_torchvision_state_dict(direct, arrays, "resnet18", include_top=False)
    backbone = model.get_layer("backbone")
    assert len(backbone.weights) == len(direct.weights)
    assert all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(backbone.weights, direct.weights))
    torch_bn = tw.convert_torchvision_file("x.pth", "resnet18", tmp_path / "t.weights.h5")
    one_line_error(lambda: load_transfer_weights(model, torch_bn), "does not fit")
    assert all(np.array_equal(a.numpy(), b.numpy())
               for a, b in zip(backbone.weights, direct.weights))


# --- DenResNet's backbones: transfer models with source="torchvision" ---------------------------

def _backbone_features(model, image):
    return np.asarray(model.get_layer("backbone")(image, training=False))


def test_transfer_backbone_is_torchvisions_and_loads_a_converted_state_dict(tmp_path):
    from tinynet.layers import TorchBatchNormalization

    arrays = state_dict("resnet18")
    path = tw.save_state_dict_arrays(arrays, tmp_path / "r18.npz")
    model = get_model("transfer_resnet18", source="torchvision", batch_norm="torch",
                      weights=str(path), image_size=64, num_classes=3)
    backbone = model.get_layer("backbone")
    assert sum(int(np.prod(w.shape)) for w in backbone.trainable_weights) == 11_176_512
    assert {type(layer) for layer in backbone.layers
            if isinstance(layer, keras.layers.BatchNormalization)} == {TorchBatchNormalization}
    assert model.get_layer("preprocess").mode == "torch"
    direct = tw.build_model("resnet18", input_shape=(64, 64, 3), include_top=False)
    tw.load_torchvision_state_dict(direct, arrays, "resnet18", include_top=False)
    image = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    np.testing.assert_array_equal(_backbone_features(model, image),
                                  np.asarray(direct(image, training=False)))


def test_imagenet_weights_come_from_the_cache_without_torch(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras-home"))
    cache = tw.cached_imagenet_path("resnet18")
    assert cache == str(tmp_path / "keras-home" / "models" /
                        "torchvision_resnet18_imagenet1k_v1.npz")
    monkeypatch.setitem(sys.modules, "torch", None)  # as where torch is not installed
    monkeypatch.setitem(sys.modules, "torch.hub", None)
    message = one_line_error(lambda: get_model("transfer_resnet18", source="torchvision",
                                               weights="imagenet", image_size=32),
                             "pip install torch", cache, "resnet18-f37072fd.pth")
    assert not os.path.exists(cache), message
    tw.save_state_dict_arrays(state_dict("resnet18"), cache)
    model = get_model("transfer_resnet18", source="torchvision", weights="torchvision",
                      image_size=32, num_classes=3)
    stem = model.get_layer("backbone").get_layer("stem_conv").kernel.numpy()
    np.testing.assert_array_equal(stem, state_dict("resnet18")["conv1.weight"].transpose(
        2, 3, 1, 0).astype("float32"))


def test_damaged_cache_and_wrong_combinations_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    one_line_error(lambda: get_model("transfer_resnet18", source="torchvision",
                                     weights=str(bad), image_size=32), "damaged", str(bad))
    one_line_error(lambda: get_model("transfer_resnet50", batch_norm="torch", image_size=32),
                   "batch_norm='torch' needs source='torchvision'")
    one_line_error(lambda: get_model("transfer_resnet50", weights=str(bad), image_size=32),
                   "PyTorch state dict", "source='torchvision'")
    one_line_error(lambda: get_model("transfer_resnet18", source="keras", image_size=32),
                   "keras.applications has no resnet18")
    one_line_error(lambda: get_model("transfer_resnet50v2", source="torchvision",
                                     image_size=32), "torchvision has no resnet50v2")
    one_line_error(lambda: get_model("transfer_resnet50", weights="torchvision",
                                     image_size=32), "source='torchvision'")
    # a state dict of another architecture names what does not fit
    path = tw.save_state_dict_arrays(state_dict("resnet18"), tmp_path / "r18.npz")
    one_line_error(lambda: get_model("transfer_resnet50", source="torchvision",
                                     weights=str(path), image_size=32), "resnet50")


def test_converter_command_writes_the_cache_file(tmp_path, monkeypatch, capsys):
    arrays = state_dict("resnet18")
    monkeypatch.setattr(tw, "state_dict_arrays", lambda path: arrays)
    out = tmp_path / "out.npz"
    assert tw.main(["resnet18", "x.pth", str(out)]) == 0
    again = tw.read_state_dict_arrays(out)
    assert set(again) == set(arrays)
    assert all(np.array_equal(again[k], arrays[k]) for k in arrays)
    assert tw.main(["resnet50", "x.pth", str(tmp_path / "no.npz")]) == 2
    assert not (tmp_path / "no.npz").exists()
    assert "error:" in capsys.readouterr().out


@pytest.mark.parametrize("architecture", ["resnet18", "densenet121"])
def test_imagenet_download_path_with_torchvision(tmp_path, monkeypatch, architecture):
    """Where torch and torchvision are installed (the venv of the module docstring): what
    --weights torchvision does on Colab, with torchvision's model initialised locally in place
    of the download (nothing is downloaded here): the state dict is converted, cached, and the
    transfer backbone computes torchvision's features."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    reference = getattr(torchvision.models, architecture)(weights=None).eval()
    with torch.no_grad():  # BN statistics away from 0/1, so that a missed copy shows
        for module in reference.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    asked = []

    def load_state_dict_from_url(url, **kwargs):
        asked.append(url)
        return reference.state_dict()
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", load_state_dict_from_url)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    model = get_model(f"transfer_{architecture}", source="torchvision", weights="torchvision",
                      batch_norm="torch", image_size=64, num_classes=3)
    assert asked == [tw.ARCHITECTURES[architecture].weights_url]
    assert os.path.exists(tw.cached_imagenet_path(architecture))
    image = np.random.default_rng(0).random((2, 64, 64, 3)).astype("float32")
    with torch.no_grad():
        features = reference.features if architecture == "densenet121" else torch.nn.Sequential(
            *list(reference.children())[:-2])
        theirs = features(torch.from_numpy(image.transpose(0, 3, 1, 2))).numpy()
    ours = _backbone_features(model, image).transpose(0, 3, 1, 2)
    assert np.max(np.abs(ours - theirs)) / np.max(np.abs(theirs)) < 1e-5  # float32
    again = get_model(f"transfer_{architecture}", source="torchvision", weights="imagenet",
                      batch_norm="torch", image_size=64, num_classes=3)
    assert len(asked) == 1  # the second model came from the cache
    np.testing.assert_array_equal(_backbone_features(again, image).transpose(0, 3, 1, 2), ours)
