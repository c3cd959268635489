"""Seed 004's CIFAR ResNet design space: Table 1's counts (builder and printed), the original's
PyTorch semantics (a NumPy NCHW reference), the configurations the original cannot build, data
formats, .keras round trips and gradients."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf
from numpy.lib.stride_tricks import sliding_window_view

from tinynet.errors import TinynetError
from tinynet.models import get_model, list_models, model_info
from tinynet.models.cifar_resnet import SPECS, build_cifar_resnet

from conftest import needs_channels_first

# name, paper's name, B, C, builder trainable, builder total (+ BN moving stats), printed
TABLE_1 = [
    ("nyu_resnet10_1", "ResNet-10-1", (1, 2, 1), (64, 128, 256), 1_530_698, 1_533_898, 312_490),
    ("nyu_resnet10_2", "ResNet-10-2", (1, 1, 1, 1), (64, 128, 256, 512), 4_903_242, 4_909_002,
     4_903_242),
    ("nyu_resnet12", "ResNet-12", (2, 1, 1, 1), (64, 128, 256, 512), 4_977_226, 4_983_242,
     4_977_226),
    ("nyu_resnet16", "ResNet-16", (2, 1, 2, 2), (64, 128, 256, 256), 4_909_642, 4_916_170,
     4_909_642),
    ("nyu_resnet20", "ResNet-20", (3, 3, 3), (64, 128, 256), 4_335_434, 4_341_706, 4_335_434),
    ("nyu_resnet24", "ResNet-24", (3, 3, 2, 3), (64, 128, 128, 256), 4_935_242, 4_942_794,
     4_935_242),
    ("nyu_resnet32", "ResNet-32", (4, 4, 4, 3), (32, 64, 128, 256), 4_754_218, 4_761_834,
     4_754_218),
    ("nyu_resnet48", "ResNet-48", (8, 5, 5, 5), (64, 128, 128, 128), 4_994_378, 5_005_002,
     4_994_378),
    ("nyu_resnet86", "ResNet-86", (10, 8, 10, 14), (16, 32, 64, 128), 4_987_162, 4_999_034,
     4_994_378),
]


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


@pytest.mark.parametrize("name,paper_name,blocks,channels,trainable,total,printed", TABLE_1)
def test_table_1_counts_and_registry(name, paper_name, blocks, channels, trainable, total,
                                     printed):
    model = get_model(name)
    assert model.name == paper_name
    assert (trainable_count(model), model.count_params()) == (trainable, total)
    info = model_info(name)
    assert (info.trainable_params, info.total_params, info.paper_params) == (
        trainable, total, printed)
    assert (info.input_shape, info.num_classes) == ((32, 32, 3), 10)
    assert SPECS[name][1:3] == (blocks, channels)
    assert info.params_note
    if printed != trainable:
        assert "printed" in info.params_note
    # the same configuration through the generic entry, and the depth in the default name
    generic = get_model("cifar_resnet", blocks=blocks, channels=channels)
    assert trainable_count(generic) == trainable
    assert generic.name == f"ResNet-{2 * sum(blocks) + 2}"


def test_the_two_wrong_printed_figures_are_other_configurations_counts():
    # ResNet-10-1's 312,490: the code's ResNet10_2() (N=3, B=1,1,1, C=32,64,128)
    assert trainable_count(get_model("cifar_resnet", blocks=(1, 1, 1),
                                     channels=(32, 64, 128))) == 312_490
    # ResNet-86's 4,994,378 is ResNet-48's count
    assert model_info("nyu_resnet86").paper_params == model_info("nyu_resnet48").trainable_params
    # torchsummary of a B=2,2,2,2 C=64..512 run in the authors' logs (ReshNet3.log)
    assert trainable_count(get_model("cifar_resnet", blocks=(2, 2, 2, 2),
                                     channels=(64, 128, 256, 512))) == 11_173_962


def test_generic_entry_defaults_to_the_headline_resnet24():
    info = model_info("cifar_resnet")
    assert (info.trainable_params, info.total_params) == (4_935_242, 4_942_794)
    assert trainable_count(get_model("cifar_resnet")) == 4_935_242
    with pytest.raises(TinynetError, match="blocks"):  # the table's entries are fixed
        get_model("nyu_resnet24", blocks=(1, 1, 1, 1))
    # not among the "resnet*" names tests/test_resnet.py runs its fresh-process round trips on
    assert not any(n.startswith("nyu") or n == "cifar_resnet" for n in list_models("resnet*"))


def test_forward_shapes_and_probabilities():
    model = get_model("nyu_resnet10_1")
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    out = model(x, training=False)
    assert out.shape == (2, 10)
    np.testing.assert_allclose(np.sum(out, axis=1), 1.0, rtol=1e-5)
    features = get_model("nyu_resnet10_1", include_top=False)(x)
    assert features.shape == (2, 8, 8, 256)


def test_pytorch_numerics_bn_init_and_biases():
    model = get_model("nyu_resnet20")
    bns = [l for l in model.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert len(bns) == 1 + 2 * 9 + 2
    assert all(l.epsilon == 1e-5 and l.momentum == 0.9 for l in bns)
    convs = [l for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert not any(l.use_bias for l in convs)
    for layer in convs + [model.get_layer("predictions")]:  # kaiming_uniform(a=sqrt(5))
        kernel = layer.kernel.numpy()
        bound = 1 / math.sqrt(int(np.prod(kernel.shape[:-1])))
        assert 0.9 * bound < np.max(np.abs(kernel)) <= bound
    dense = model.get_layer("predictions")
    assert dense.kernel.shape == (256 * 2 * 2, 10)
    bias = dense.bias.numpy()
    assert np.all(np.abs(bias) <= 1 / 32) and np.any(bias != 0)


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(blocks=(3, 3, 2, 3), channels=(64, 128, 128, 256), pool=8),
     r"`pool`: P=8 is larger than the 4x4 map.*N = len\(blocks\) = 4.*0x0"),
    (dict(blocks=(1,) * 7, channels=(4,) * 7, pool=1),
     r"`pool`.*= 0 inputs.*N = len\(blocks\) = 7.*1x1x4 = 4 values"),
    (dict(blocks=(1, 1), channels=(4, 8), input_shape=(64, 64, 3)),
     r"`input_shape`.*= 128 inputs.*32x32x8 map pools to 8x8x8 = 512 values"),
    (dict(blocks=(1, 1, 1), channels=(8, 8)), r"`channels`: expected 3 entries"),
    (dict(blocks=(1, 1, 1), channels=(8, 8, 8), conv_kernels=(3, 3)),
     r"`conv_kernels`: expected 3 entries"),
    (dict(blocks=(1, 1, 1), channels=(8, 8, 8), skip_kernels=(1, 1, 1, 1)),
     r"`skip_kernels`: expected 3 entries"),
    (dict(blocks=(1, 0, 1), channels=(8, 8, 8)), r"`blocks`: expected a non-empty list of pos"),
    (dict(blocks=(), channels=()), r"`blocks`"),
    (dict(blocks=(1, 1), channels=(8, -8)), r"`channels`.*positive"),
    (dict(blocks=(1, 1), channels=(8, 8), pool=0), r"`pool`: expected a positive integer"),
    (dict(blocks=(1, 1, 1, 1), channels=(8, 8, 8, 8), skip_kernels=(1, 3, 1, 1)),
     r"`skip_kernels`: K_2=3 .*layer 2 block 1 .*15x15 map .*produces 16x16"),
    (dict(blocks=(1, 1), channels=(8, 8), conv_kernels=(5, 3)),
     r"`conv_kernels`: F_1=5 .*26x26 map.*keeps 30x30"),
])
def test_configurations_the_original_cannot_build_are_refused(kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        build_cifar_resnet(**kwargs)


def test_pool_check_is_only_for_the_head():
    model = build_cifar_resnet((1,) * 7, (4,) * 7, pool=1, include_top=False)
    assert model.output.shape == (None, 1, 1, 4)


# --- the original's forward pass in NumPy (NCHW, PyTorch weight layouts, eval-mode BN) -------

def _conv_nchw(x, weight, stride, padding):
    x = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    windows = sliding_window_view(x, weight.shape[2:], axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", windows, weight)


def _reference_logits(model, x, blocks, pool):
    """kuangliu's ResNet.forward with the weights ported as the module docstring says."""
    names = {l.name for l in model.layers}

    def conv(t, name, stride, padding):
        return _conv_nchw(t, model.get_layer(name).kernel.numpy().transpose(3, 2, 0, 1), stride,
                          padding)

    def bn(t, name):
        g, b, m, v = (w[:, None, None] for w in model.get_layer(name).get_weights())
        return (t - m) / np.sqrt(v + 1e-5) * g + b

    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    out = relu(bn(conv(x.transpose(0, 3, 1, 2), "stem_conv", 1, 1), "stem_bn"))
    for i, n in enumerate(blocks, start=1):
        for b in range(1, n + 1):
            s, name = (2 if i > 1 and b == 1 else 1), f"layer{i}_block{b}"
            y = relu(bn(conv(out, f"{name}_conv1", s, 1), f"{name}_bn1"))
            y = bn(conv(y, f"{name}_conv2", 1, 1), f"{name}_bn2")
            if f"{name}_shortcut_conv" in names:
                out = bn(conv(out, f"{name}_shortcut_conv", s, 0), f"{name}_shortcut_bn") + y
            else:
                out = out + y
            out = relu(out)
    n, c, h, w = out.shape
    h, w = h // pool, w // pool  # F.avg_pool2d(out, P): stride P, floor
    out = out[:, :, :h * pool, :w * pool].reshape(n, c, h, pool, w, pool).mean(axis=(3, 5))
    kernel, bias = model.get_layer("predictions").get_weights()  # kernel = linear.weight.T
    return out.reshape(n, -1) @ kernel + bias  # out.view(out.size(0), -1): (C, H, W) order


def _randomize_batch_norms(model, seed):
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.2, c),
                               rng.normal(0, 0.2, c), rng.uniform(0.5, 1.5, c)])


@pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
@pytest.mark.parametrize("config", [
    dict(blocks=(1, 2), channels=(4, 6), skip_kernels=(1, 2)),  # 2x2 shortcut, 4x4 pooled map
    dict(blocks=(1, 1), channels=(4, 6), conv_kernels=(3, 5), skip_kernels=(1, 8), pool=13),
])
def test_equals_the_original_forward_pass(config, data_format):
    if data_format == "channels_first":
        needs_channels_first()
    model = build_cifar_resnet(**config, classifier_activation=None, data_format=data_format)
    _randomize_batch_norms(model, 0)
    x = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype(np.float32)
    expected = _reference_logits(model, x.astype(np.float64), config["blocks"],
                                 config.get("pool", 4))
    np.testing.assert_allclose(model(x, training=False), expected, rtol=1e-4, atol=1e-4)


def test_data_formats_give_the_same_outputs_with_the_same_weights():
    needs_channels_first()
    config = dict(blocks=(1, 2, 1), channels=(8, 16, 16))  # 2x2 pooled map: order matters
    last = build_cifar_resnet(**config, data_format="channels_last")
    first = build_cifar_resnet(**config, data_format="channels_first")
    assert [tuple(w.shape) for w in last.weights] == [tuple(w.shape) for w in first.weights]
    _randomize_batch_norms(last, 2)
    first.set_weights(last.get_weights())
    x = np.random.default_rng(3).random((3, 32, 32, 3), np.float32)
    np.testing.assert_allclose(first.predict(x, verbose=0), last.predict(x, verbose=0),
                               rtol=1e-4, atol=1e-6)


def test_keras_file_round_trip(tmp_path):
    model = get_model("nyu_resnet10_1")
    _randomize_batch_norms(model, 4)
    path = tmp_path / "nyu_resnet10_1.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    x = np.random.default_rng(5).random((2, 32, 32, 3), np.float32)
    assert loaded.name == "ResNet-10-1"
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0),
                               rtol=1e-6, atol=1e-7)


def test_every_trainable_weight_gets_a_gradient():
    model = get_model("cifar_resnet", blocks=(2, 1, 1), channels=(16, 32, 32))
    x = tf.random.stateless_uniform((4, 32, 32, 3), seed=[1, 2])
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(np.array([0, 3, 5, 9]), out))
    grads = tape.gradient(loss, model.trainable_weights)
    assert len(grads) == 3 + 4 * 6 + 2 * 3 + 2  # stem, 4 blocks, 2 projections, dense
    missing = [w.path for w, g in zip(model.trainable_weights, grads)
               if g is None or not np.any(np.asarray(g))]
    assert not missing


def test_width_scales_every_layer():
    model = get_model("nyu_resnet24", width=0.25)
    convs = [l.filters for l in model.layers if isinstance(l, keras.layers.Conv2D)]
    assert sorted(set(convs)) == [16, 32, 64]
    assert model.output.shape == (None, 10)
