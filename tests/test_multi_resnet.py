"""Multi-ResNet of seed 003: the code's parameter counts, shortcut types, depth validation, a
NumPy reference of one block, model parallelism over logical CPU devices (placement read from
the traced graph, outputs equal to the unsplit model) and .keras round trips in a fresh
process."""
import json
import subprocess
import sys
import warnings

import keras
import numpy as np
import pytest

from tinynet.errors import TinynetError
from tinynet.layers import MultiResidual
from tinynet.devices import normalize_device
from tinynet.layers.multi_residual import ZeroPadShortcut, split_branches, zero_pad_shortcut
from tinynet.models import get_model, model_info
from tinynet.models.multi_resnet import SPECS, build_multi_resnet, multi_residual_block

from conftest import REPO

# name, block, depth, k, trainable (Torch getParameters()), total (+ BN moving statistics)
COUNTS = [
    ("preresnet110", "basic", 110, 1, 1_727_962, 1_736_058),
    ("multi_resnet8_k23", "basic", 8, 23, 1_702_234, 1_707_642),
    ("multi_resnet14_k10", "basic", 14, 10, 1_713_018, 1_719_994),
    ("multi_resnet8_k4", "basic", 8, 4, 297_146, 298_298),
    ("multi_resnet20_k4", "basic", 20, 4, 1_074_874, 1_079_610),
    ("multi_resnet200_k5", "bottleneck", 200, 5, 10_187_354, 10_331_642),
    ("multi_resnet398_k5", "bottleneck", 398, 5, 20_388_314, 20_680_442),
    ("preresnet1001", "bottleneck", 1001, 1, 10_327_706, 10_476_922),
]
CIFAR100_200_K5 = 10_210_484


def trainable_count(model):
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def nested_layers(layer):
    """Every layer inside ``layer``: functional layers, MultiResidual branches and shortcuts."""
    found = []
    children = list(getattr(layer, "layers", []))
    if isinstance(layer, MultiResidual):
        children = list(layer.branches) + ([layer.shortcut] if layer.shortcut else [])
    for child in children:
        if isinstance(child, keras.layers.InputLayer):
            continue
        found.append(child)
        found += nested_layers(child)
    return found


# the three deepest take 10-16 s each to build on 2 cores: CI counts them in its slow step
DEEP = {"multi_resnet200_k5", "multi_resnet398_k5", "preresnet1001"}


@pytest.mark.parametrize("name,block,depth,k,trainable,total", [
    pytest.param(*row, marks=pytest.mark.slow) if row[0] in DEEP else row for row in COUNTS])
def test_counts_of_the_code_and_registry(name, block, depth, k, trainable, total):
    model = get_model(name)  # built once, for the counts only (no forward pass)
    assert (trainable_count(model), model.count_params()) == (trainable, total)
    info = model_info(name)
    assert (info.trainable_params, info.total_params) == (trainable, total)
    assert (info.input_shape, info.num_classes) == ((32, 32, 3), 10)
    assert SPECS[name][1:4] == (block, depth, k)
    assert info.paper_params and info.params_note
    assert model.name == (f"pre-resnet-{depth}" if k == 1 else f"multi-resnet-{depth}-k{k}")
    for argument in ("input_shape", "num_classes", "classifier_activation", "width", "devices"):
        assert argument in info.arguments
    blocks = [l for l in model.layers if isinstance(l, MultiResidual)]
    assert len(blocks) == 3 * (depth - 2) // (6 if block == "basic" else 9)
    assert all(b.k == k for b in blocks)
    if name == "multi_resnet200_k5":  # CIFAR-100: only the dense layer differs (256 -> 100)
        dense = model.get_layer("predictions")
        assert trainable - dense.count_params() + (256 + 1) * 100 == CIFAR100_200_K5
    if name == "preresnet110":  # He fan-out init, zero dense bias, Torch BN
        kernel = model.get_layer("stage3_block5").branches[0].get_layer(
            "stage3_block5_branch1_conv2").kernel.numpy()
        assert kernel.shape == (3, 3, 64, 64)
        assert abs(np.std(kernel) / np.sqrt(2 / (9 * 64)) - 1) < 0.03
        assert not np.any(model.get_layer("predictions").bias.numpy())
        bound = 1 / np.sqrt(64)
        assert 0.9 * bound < np.max(np.abs(model.get_layer("predictions").kernel.numpy())) <= bound
        bns = [l for l in nested_layers(model)
               if isinstance(l, keras.layers.BatchNormalization)]
        assert len(bns) == 2 * 54 + 1  # two per block (the shared pre-activation counts), final
        assert all(l.epsilon == 1e-5 and l.momentum == 0.9 for l in bns)
        assert not any(l.use_bias for l in nested_layers(model)
                       if isinstance(l, keras.layers.Conv2D))


def test_generic_entry_and_cifar100():
    info = model_info("multi_resnet")
    assert (info.trainable_params, info.total_params) == (1_074_874, 1_079_610)
    assert trainable_count(get_model("multi_resnet")) == 1_074_874
    small = get_model("multi_resnet", depth=11, k=2, block="bottleneck", width=0.25,
                      num_classes=100, classifier_activation=None)
    x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
    assert small(x, training=False).shape == (2, 100)
    with pytest.raises(TinynetError, match="depth"):  # a named entry's configuration is fixed
        get_model("multi_resnet8_k4", depth=20)


def test_layer_names_are_unique_and_follow_the_lua_modules():
    model = build_multi_resnet(11, 2, "bottleneck", width=0.25)
    names = [l.name for l in nested_layers(model)]  # the model's layers and those inside
    assert len(names) == len(set(names)) > len(model.layers)
    block = model.get_layer("stage2_block1")
    assert [l.name for l in block.branches[1].layers] == [
        "stage2_block1_branch2_conv1", "stage2_block1_branch2_bn2", "stage2_block1_branch2_relu2",
        "stage2_block1_branch2_conv2", "stage2_block1_branch2_bn3", "stage2_block1_branch2_relu3",
        "stage2_block1_branch2_conv3"]
    assert block.branches[0].get_layer("stage2_block1_branch1_conv1").strides == (2, 2)
    assert block.shortcut.name == "stage2_block1_shortcut_conv"
    # the shared pre-activation (bottleneck: one BN-ReLU before the branches and the shortcut)
    layer_names = [l.name for l in model.layers]
    assert isinstance(model.get_layer("stage2_block1_preact_bn"), keras.layers.BatchNormalization)
    assert layer_names.index("stage2_block1_preact_bn") < layer_names.index("stage2_block1")
    basic = build_multi_resnet(14, 2, width=0.25)
    assert [l.name for l in basic.get_layer("stage3_block2").branches[0].layers] == [
        "stage3_block2_branch1_bn1", "stage3_block2_branch1_relu1", "stage3_block2_branch1_conv1",
        "stage3_block2_branch1_bn2", "stage3_block2_branch1_relu2", "stage3_block2_branch1_conv2"]
    assert [l.name for l in basic.get_layer("stage2_block1").branches[0].layers][:2] == [
        "stage2_block1_branch1_pad1", "stage2_block1_branch1_conv1"]
    assert isinstance(basic.get_layer("stage2_block1").shortcut, ZeroPadShortcut)
    assert basic.get_layer("stage1_block1").shortcut is None  # 16 -> 16: identity
    # width: basic b, 2b, 4b; bottleneck stem b, outputs 4b, 8b, 16b
    assert basic.output_shape == (None, 10) and basic.get_layer("final_bn").gamma.shape == (16,)
    assert model.get_layer("stem_conv").kernel.shape == (3, 3, 3, 4)
    assert model.get_layer("final_bn").gamma.shape == (64,)


def test_shortcut_a_and_b():
    x = np.random.default_rng(1).random((2, 32, 32, 3), np.float32)
    a = build_multi_resnet(8, 1, shortcut="A")
    b = build_multi_resnet(8, 1, shortcut="B")
    assert a(x, training=False).shape == b(x, training=False).shape == (2, 10)
    assert trainable_count(b) - trainable_count(a) == 16 * 32 + 32 * 64
    assert b.get_layer("stage3_block1").shortcut.kernel.shape == (1, 1, 32, 64)
    assert not a.get_layer("stage3_block1").shortcut.weights
    # the type A function: subsample by the stride, then as many zero channels
    t = np.random.default_rng(2).random((2, 7, 7, 4), np.float32)
    y = keras.ops.convert_to_numpy(zero_pad_shortcut(t, 2))
    assert y.shape == (2, 4, 4, 8)
    np.testing.assert_array_equal(y[..., :4], t[:, ::2, ::2, :])
    assert not np.any(y[..., 4:])
    assert ZeroPadShortcut(2).compute_output_shape((None, 7, 7, 4)) == (None, 4, 4, 8)
    # the bottleneck family always projects; "B" names that projection, "A" is refused
    assert trainable_count(build_multi_resnet(11, 1, "bottleneck", "B", width=0.25)) == \
        trainable_count(build_multi_resnet(11, 1, "bottleneck", width=0.25))
    with pytest.raises(TinynetError, match="bottleneck family always uses its 1x1 conv"):
        build_multi_resnet(11, 1, "bottleneck", "A")


@pytest.mark.parametrize("kwargs,pattern", [
    (dict(depth=30, k=4), r"^depth 30 is not 6n\+2 \(basic blocks\); nearest valid depths: "
                          r"26 and 32$"),
    (dict(depth=30, k=4, block="bottleneck"),
     r"^depth 30 is not 9n\+2 \(bottleneck blocks\); nearest valid depths: 29 and 38$"),
    (dict(depth=5, k=1), r"depth 5 is not 6n\+2.*nearest valid depth: 8$"),
    (dict(depth=2, k=1, block="bottleneck"), r"nearest valid depth: 11$"),
    (dict(depth=20, k=0), r"k \(residual functions per block\) must be an integer >= 1"),
    (dict(depth=20, k=2.5), r"k \(residual functions"),
    (dict(depth=20, k=2, block="wide"), r"unknown block type 'wide'"),
    (dict(depth=20, k=2, shortcut="C"), r"unknown shortcut type 'C'"),
    (dict(depth=20, k=2, width=0), r"width must be a positive number"),
])
def test_invalid_configurations(kwargs, pattern):
    with pytest.raises(TinynetError, match=pattern):
        get_model("multi_resnet", **kwargs)


def _bn_numpy(x, bn):
    gamma, beta, mean, var = (w.numpy() for w in bn.weights)
    return (x - mean) / np.sqrt(var + bn.epsilon) * gamma + beta


def _conv_numpy(x, conv, stride, pad):
    """Torch's convolution: symmetric zero padding, then a valid convolution."""
    x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    return keras.ops.convert_to_numpy(
        keras.ops.conv(x, conv.kernel, strides=stride, padding="valid"))


def _randomize_batch_norms(layers, rng):
    for bn in layers:
        if isinstance(bn, keras.layers.BatchNormalization):
            c = bn.gamma.shape[0]
            bn.set_weights([rng.uniform(0.5, 1.5, c), rng.normal(0, 0.1, c),
                            rng.normal(0, 0.1, c), rng.uniform(0.5, 1.5, c)])


def test_blocks_against_a_numpy_reference():
    rng = np.random.default_rng(3)
    inputs = keras.Input((9, 9, 4))
    first = multi_residual_block(inputs, 8, 2, k=2, block="basic", first=True, shortcut="A",
                                 devices=None, name="s2b1")
    out = multi_residual_block(first, 8, 1, k=2, block="basic", first=False, shortcut="A",
                               devices=None, name="s2b2")
    model = keras.Model(inputs, [first, out])
    _randomize_batch_norms(nested_layers(model), rng)
    x = rng.normal(size=(2, 9, 9, 4)).astype(np.float32)
    got_first, got_out = (keras.ops.convert_to_numpy(t) for t in model(x, training=False))

    relu = lambda t: np.maximum(t, 0)  # noqa: E731
    # stage-first block: shared BN-ReLU, branches conv(stride 2, Torch pad 1)-BN-ReLU-conv,
    # type A shortcut x[::2, ::2] + zero channels, all from the pre-activated input
    pre = relu(_bn_numpy(x, model.get_layer("s2b1_preact_bn")))
    expected = zero_pad_shortcut(pre, 2)
    for branch in model.get_layer("s2b1").branches:
        get = branch.get_layer
        n = branch.name
        y = _conv_numpy(pre, get(f"{n}_conv1"), 2, 1)
        y = _conv_numpy(relu(_bn_numpy(y, get(f"{n}_bn2"))), get(f"{n}_conv2"), 1, 1)
        expected = expected + y
    np.testing.assert_allclose(got_first, expected, rtol=1e-4, atol=1e-4)
    # other block: branches BN-ReLU-conv-BN-ReLU-conv, identity shortcut of the raw input
    expected2 = got_first
    for branch in model.get_layer("s2b2").branches:
        get = branch.get_layer
        n = branch.name
        y = _conv_numpy(relu(_bn_numpy(got_first, get(f"{n}_bn1"))), get(f"{n}_conv1"), 1, 1)
        y = _conv_numpy(relu(_bn_numpy(y, get(f"{n}_bn2"))), get(f"{n}_conv2"), 1, 1)
        expected2 = expected2 + y
    np.testing.assert_allclose(got_out, expected2, rtol=1e-4, atol=1e-4)


def test_k1_is_a_plain_preactivation_block():
    rng = np.random.default_rng(4)
    inputs = keras.Input((8, 8, 6))
    block = keras.Model(inputs, multi_residual_block(
        inputs, 6, 1, k=1, block="basic", first=False, shortcut=None, devices=None, name="b"))
    _randomize_batch_norms(nested_layers(block), rng)
    L = keras.layers
    y = L.BatchNormalization(epsilon=1e-5, name="bn1")(inputs)
    y = L.Conv2D(6, 3, padding="same", use_bias=False, name="conv1")(L.ReLU()(y))
    y = L.BatchNormalization(epsilon=1e-5, name="bn2")(y)
    y = L.Conv2D(6, 3, padding="same", use_bias=False, name="conv2")(L.ReLU()(y))
    plain = keras.Model(inputs, L.Add()([inputs, y]))
    plain.set_weights(block.get_weights())
    x = rng.normal(size=(2, 8, 8, 6)).astype(np.float32)
    for training in (False, True):
        np.testing.assert_allclose(block(x, training=training), plain(x, training=training),
                                   rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("k,devices,shares", [
    (4, 2, [2, 2]), (5, 2, [2, 3]), (5, 3, [1, 2, 2]), (2, 3, [1, 1]), (23, 2, [11, 12]),
    (1, 1, [1]), (6, 4, [1, 1, 2, 2]),
])
def test_split_branches(k, devices, shares):
    assert split_branches(k, devices) == shares


def test_device_names_and_layer_config():
    assert [normalize_device(d) for d in ("CPU:1", "/cpu:1", "GPU:0", "/device:GPU:0")] == [
        "/device:CPU:1", "/device:CPU:1", "/device:GPU:0", "/device:GPU:0"]
    with pytest.raises(TinynetError, match="invalid device name"):
        normalize_device("gpu0")
    with pytest.raises(TinynetError, match="twice"):
        MultiResidual([keras.layers.Identity()], devices=["GPU:0", "/gpu:0"])
    layer = MultiResidual([keras.layers.Dense(3), keras.layers.Dense(3)],
                          devices=["cpu:0", "/gpu:97"], name="mr")
    config = layer.get_config()
    assert config["devices"] == ["/device:CPU:0", "/device:GPU:97"]
    assert not layer.supports_jit  # keeps Keras' jit_compile="auto" from fusing the split
    assert MultiResidual([keras.layers.Identity()], devices=["GPU:0"]).supports_jit
    clone = MultiResidual.from_config(json.loads(json.dumps(config)))
    assert clone.k == 2 and clone.devices == layer.devices and clone.shortcut is None
    # a missing device: computed unsplit, with one warning per layer instance
    x = np.ones((2, 3), np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        layer(x)
        layer(x)
    assert len(caught) == 1 and "['/device:GPU:97'] not present" in str(caught[0].message)


# Runs in a fresh interpreter with 3 logical CPU devices (independent of the test session's
# configuration): split vs unsplit outputs, placement in the traced graph, the fallback, and
# saving the models for the fresh-process load below.
DEVICE_SCRIPT = r"""
import json, re, sys, warnings
import numpy as np, tensorflow as tf, keras
tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 3)
from tinynet.layers import MultiResidual
from tinynet.layers.multi_residual import split_branches
from tinynet.models import get_model
out = sys.argv[1]
x = np.random.default_rng(0).random((2, 32, 32, 3), np.float32)
np.save(out + "/x.npy", x)
report = {}
for tag, kw in (("basic", dict(depth=8, k=5)), ("bottleneck", dict(depth=11, k=3,
                                                                   block="bottleneck"))):
    unsplit = get_model("multi_resnet", width=0.25, **kw)
    names = [w.path for w in unsplit.weights]
    for n in (2, 3):
        devices = ["CPU:%d" % i for i in range(n)]
        split = get_model("multi_resnet", width=0.25, devices=devices, **kw)
        assert [w.path for w in split.weights] == names, "weight names differ"
        split.set_weights(unsplit.get_weights())
        diffs = [float(np.max(np.abs(unsplit(x, training=t) - split(x, training=t))))
                 for t in (False, True)]
        graph = tf.function(lambda v: split(v, training=False)).get_concrete_function(
            tf.TensorSpec((2, 32, 32, 3))).graph
        convs, adds, shortcut = {}, {}, set()
        for op in graph.get_operations():
            m = re.search(r"/(stage\d+_block\d+)_branch(\d+)_conv\d+(?:_\d+)?/convolution$",
                          op.name)
            if op.type == "Conv2D" and m:
                convs.setdefault((m.group(1), int(m.group(2))), set()).add(op.device)
            m = re.search(r"/(stage\d+_block\d+)(?:_\d+)?/Add(?:_\d+)?$", op.name)
            if op.type == "AddV2" and m:
                adds.setdefault(m.group(1), []).append(op.device)
            if op.type in ("Conv2D", "ConcatV2") and "_shortcut" in op.name:
                shortcut.add(op.device)
        def gradients(model):
            with tf.GradientTape() as tape:
                loss = tf.reduce_sum(model(x, training=True) ** 2)
            return tape.gradient(loss, model.trainable_weights)

        grad_diff = max(float(np.max(np.abs(a - b)))
                        for a, b in zip(gradients(unsplit), gradients(split)))
        # the backward pass is split too: each share's gradient convolutions on its device
        step = tf.function(gradients).get_concrete_function(split)
        backward = {}
        for op in step.graph.get_operations():
            if op.type in ("Conv2DBackpropFilter", "Conv2DBackpropInput"):
                backward[op.device] = backward.get(op.device, 0) + 1
        shares = split_branches(kw["k"], n)
        expected = {}
        for d, size in enumerate(shares):
            for b in range(sum(shares[:d]) + 1, sum(shares[:d + 1]) + 1):
                expected[b] = "/device:CPU:%d" % d
        report["%s_%d" % (tag, n)] = dict(
            diffs=diffs, grad_diff=grad_diff, backward=backward, blocks=len(adds),
            convs_ok=all(devs == {expected[b]} for (blk, b), devs in convs.items()),
            n_convs=len(convs), adds=sorted(set(map(tuple, adds.values()))),
            shortcut=sorted(shortcut))
    if tag == "basic":
        unsplit.save(out + "/unsplit.keras")
        split.save(out + "/split.keras")  # the 3-device model
        np.save(out + "/y_unsplit.npy", unsplit.predict(x, verbose=0))
        np.save(out + "/y_split.npy", split.predict(x, verbose=0))
# the fallback: a missing device warns once per block and still computes
fallback = get_model("multi_resnet", depth=8, k=2, width=0.25, devices=["CPU:0", "GPU:7"])
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    y1 = fallback(x, training=False)
    y2 = fallback(x, training=False)
report["fallback"] = dict(
    messages=sorted({str(w.message) for w in caught}), count=len(caught),
    blocks=sum(isinstance(l, MultiResidual) for l in fallback.layers),
    finite=bool(np.all(np.isfinite(y1))), same=bool(np.array_equal(y1, y2)))
# a tf.distribute strategy with two replicas: the blocks compute unsplit (and warn)
strategy = tf.distribute.MirroredStrategy(["CPU:0", "CPU:1"])
with strategy.scope():
    mirrored = get_model("multi_resnet", depth=8, k=2, width=0.25, devices=["CPU:1", "CPU:2"])
    mirrored.set_weights(fallback.get_weights())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y3 = mirrored(x, training=False)
report["strategy"] = dict(messages=sorted({str(w.message).split(": ", 1)[1] for w in caught
                                           if "MultiResidual" in str(w.message)}),
                          count=len([w for w in caught if "MultiResidual" in str(w.message)]),
                          diff=float(np.max(np.abs(y3 - y1))))
print("REPORT " + json.dumps(report))
"""

LOAD_SCRIPT = r"""
import json, sys, warnings
import numpy as np, keras, tinynet
out = sys.argv[1]
x = np.load(out + "/x.npy")
report = {}
for tag in ("unsplit", "split"):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = keras.models.load_model(out + "/%s.keras" % tag)
        y = model.predict(x, verbose=0)
    np.save(out + "/y_%s_loaded.npy" % tag, y)
    report[tag] = dict(devices=model.get_layer("stage1_block1").devices,
                       warnings=sorted({str(w.message).split(": ", 1)[1] for w in caught
                                        if "MultiResidual" in str(w.message)}))
print("REPORT " + json.dumps(report))
"""


def _report(proc, stdout, stderr):
    assert proc.returncode == 0, stderr[-3000:]
    line = [l for l in stdout.splitlines() if l.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT "):])


PARALLEL_TEST = "test_model_parallel_split_placement_fallback_and_saving"


@pytest.fixture(scope="module", autouse=True)
def device_process(request, tmp_path_factory):
    """Starts DEVICE_SCRIPT's interpreter when the module starts (if its test is selected), so
    that its TensorFlow start-up and small models run beside the big count builds."""
    if not any(item.name == PARALLEL_TEST for item in request.session.items):
        yield None
        return
    out = tmp_path_factory.mktemp("multi_resnet_devices")
    with open(out / "stdout.txt", "w") as stdout, open(out / "stderr.txt", "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-c", DEVICE_SCRIPT, str(out)], cwd=REPO,
                                stdout=stdout, stderr=stderr, text=True)
    try:
        yield proc, out
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.mark.slow  # (builds or trains models for seconds: CI's slow step)
def test_model_parallel_split_placement_fallback_and_saving(device_process):
    proc, tmp_path = device_process
    proc.wait(timeout=300)
    report = _report(proc, (tmp_path / "stdout.txt").read_text(),
                     (tmp_path / "stderr.txt").read_text())
    for tag, k, n_blocks in (("basic", 5, 3), ("bottleneck", 3, 3)):
        for n in (2, 3):
            r = report[f"{tag}_{n}"]
            assert max(r["diffs"]) < 1e-5, (tag, n, r["diffs"])
            assert r["blocks"] == n_blocks and r["n_convs"] == n_blocks * k
            assert r["convs_ok"], (tag, n)  # each branch's convs on its share's device
            # the block-level additions: the first share (shortcut + its branches) on CPU:0,
            # the other shares' partial sums on their devices, the final additions on CPU:0
            shares = split_branches(k, n)
            expected = (["/device:CPU:0"] * shares[0]
                        + [f"/device:CPU:{d}" for d in range(1, len(shares))
                           for _ in range(shares[d] - 1)]
                        + ["/device:CPU:0"] * (len(shares) - 1))
            assert r["adds"] == [expected], (tag, n, r["adds"])  # the same in every block
            assert r["shortcut"] == ["/device:CPU:0"]
            # the backward pass: the same gradients, each share's on its device (a filter
            # and an input gradient per branch convolution)
            assert r["grad_diff"] < 1e-5, (tag, n, r["grad_diff"])
            convs = {"basic": 2, "bottleneck": 3}[tag]
            for d in range(1, n):
                assert r["backward"][f"/device:CPU:{d}"] == shares[d] * convs * n_blocks * 2
            assert r["backward"]["/device:CPU:0"] >= shares[0] * convs * n_blocks * 2
    fallback = report["fallback"]
    # once per process and reason: not per call, not per block (a deep net has hundreds)
    assert fallback["blocks"] == 3 and fallback["count"] == 1
    assert len(fallback["messages"]) == 1
    assert all("['/device:GPU:7'] not present; computing on one device" in m
               for m in fallback["messages"])
    assert fallback["finite"] and fallback["same"]
    strategy = report["strategy"]  # under a 2-replica MirroredStrategy: unsplit, warned once
    assert strategy["count"] == 1 and strategy["diff"] < 1e-6, strategy
    assert strategy["messages"] == [
        "a tf.distribute strategy with more than one replica is active; computing on one device"
        " (said once for every block)"]

    load = subprocess.run([sys.executable, "-c", LOAD_SCRIPT, str(tmp_path)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    loaded = _report(load, load.stdout, load.stderr)
    for tag in ("unsplit", "split"):
        np.testing.assert_allclose(np.load(tmp_path / f"y_{tag}_loaded.npy"),
                                   np.load(tmp_path / f"y_{tag}.npy"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.load(tmp_path / "y_split.npy"),
                               np.load(tmp_path / "y_unsplit.npy"), rtol=1e-5, atol=1e-6)
    assert loaded["unsplit"] == {"devices": None, "warnings": []}
    assert loaded["split"]["devices"] == ["/device:CPU:0", "/device:CPU:1", "/device:CPU:2"]
    # a fresh process has one CPU device: the split model loads and computes unsplit
    assert loaded["split"]["warnings"] == [
        "devices ['/device:CPU:1', '/device:CPU:2'] not present; computing on one device"
        " (said once for every block)"]
