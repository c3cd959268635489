"""Multi-ResNet (Abdi & Nahavandi 2016, "Multi-Residual Networks", arXiv 1609.05672; seed 003),
built as the authors' Lua Torch code builds it (github masoudabd/multi-resnet, on
fb.resnet.torch): ``models/mpreresnet.lua`` (basic blocks, the paper's Tables I and II) and
``models/multi-resnet.lua`` (bottleneck blocks, Table III). A multi-residual block adds k
residual functions ("branches") to its shortcut: ``x + f_1(x) + ... + f_k(x)``; k = 1 is the
pre-activation ResNet of He et al. ("Identity Mappings in Deep Residual Networks").

Basic family (``block="basic"``, ``mpreresnet.lua``), depth = 6n + 2 (n blocks per stage; the
depth does not count the k functions):

    stem     conv3x3 3->16 (stride 1, pad 1), nothing after it
    stage s  n blocks of 16, 32, 64 channels (s = 1, 2, 3); stride 1, 2, 2 in the first block
      first block ('both_preact'): one shared BN-ReLU on the block input; k branches
               conv3x3(stride)-BN-ReLU-conv3x3; the shortcut starts from the pre-activated input
      other blocks: k branches BN-ReLU-conv3x3-BN-ReLU-conv3x3; identity shortcut of the raw input
      shortcut type A (default, parameter-free): identity when the channels agree, else
               subsample by the stride and append as many zero channels; type B: a 1x1 conv
               (stride, no BN) where the channels change, identity elsewhere
      output   shortcut + the sum of the k branches (nothing after the addition)
    head     BN-ReLU, global average pool, dense(num_classes)

Bottleneck family (``block="bottleneck"``, ``multi-resnet.lua``), depth = 9n + 2:

    stem     conv3x3 3->16
    stage s  n blocks with outputs 64, 128, 256 (strides 1, 2, 2), bottleneck width out/4
      first block (in != out: 16->64, 64->128, 128->256): shared BN-ReLU; k branches
               conv1x1(in->out/4, stride)-BN-ReLU-conv3x3-BN-ReLU-conv1x1(out/4->out) (the
               stride is in the FIRST 1x1 conv); shortcut conv1x1(in->out, stride, no BN) from
               the pre-activated input
      other blocks: k branches BN-ReLU-conv1x1-BN-ReLU-conv3x3-BN-ReLU-conv1x1; identity
    head     BN-ReLU, global average pool, dense(num_classes)

The bottleneck family always projects at stage starts (the code has no type A there):
``shortcut`` is None or "B" for it (both mean that projection); "A" is refused.

Numerics as the code: no conv biases (cudnn >= 4 drops them); conv kernels N(0, sqrt(2 / (kh *
kw * out_channels))) (He fan-out, ``VarianceScaling(2, "fan_out", "untruncated_normal")``); BN
gamma 1, beta 0, epsilon 1e-5, momentum 0.9 (Torch 0.1); dense weight Torch's ``nn.Linear``
default U(+-1/sqrt(fan_in)) (``VarianceScaling(1/3, "fan_in", "uniform")``), bias zero (the
code zeroes it). Padding as Torch's: a stride-2 3x3 conv is ``ZeroPadding2D(1)`` + a valid conv
(Keras' "same" would pad only bottom/right and shift the map by one pixel against the type A
shortcut's ``x[::2, ::2]``); stride-1 3x3 convs use "same", which is the same as Torch's pad 1.
Torch's final ``Avg(8, 8)`` on the 8x8 map is a global average pool here (so other input sizes
work). The original returns logits for its cross-entropy criterion; here
``classifier_activation="softmax"`` (the runner's probabilities + cross-entropy, the same loss);
``None`` gives the logits. Channels-last only (the type A shortcut appends channels on the last
axis); the input is NHWC.

Layer names (Lua module -> Keras layer):

    first Convolution                         stem_conv
    block's shared SBatchNorm, ReLU           stage{s}_block1_preact_bn, _preact_relu
    the block (ConcatTable + CAddTable)       stage{s}_block{b}            (a MultiResidual)
    branch i (ls[i], an nn.Sequential)        stage{s}_block{b}_branch{i}  (a keras.Sequential)
    its SBatchNorm, ReLU, Convolution #j      stage{s}_block{b}_branch{i}_bn{j}, _relu{j}, _conv{j}
                                              (bn{j}/relu{j} precede conv{j}; stage-first blocks
                                              have no bn1/relu1: the shared pre-activation;
                                              _pad1 is the explicit padding of a stride-2 conv1)
    type A shortcut (AvgPool(1,1,s,s)+Concat) stage{s}_block1_shortcut     (a ZeroPadShortcut)
    1x1 Convolution shortcut (type B, bottleneck projection)   stage{s}_block1_shortcut_conv
    last SBatchNorm, ReLU, Avg, Linear        final_bn, final_relu, avg_pool, predictions

Porting Torch weights: conv (O, I, kh, kw) -> (kh, kw, I, O); SBatchNorm weight, bias,
running_mean, running_var -> gamma, beta, moving_mean, moving_variance; Linear weight transposed.

Model parallelism (the paper's Section V, ``ModelParallelTable.lua``): ``devices`` (a list of
device names, e.g. ``["GPU:0", "GPU:1"]``) is passed to every block. Each block splits its k
branches into contiguous shares, sizes differing by at most one, the larger shares on the later
devices (k=5 over 2 devices -> 2 + 3; over 3 -> 1 + 2 + 2; fewer branches than devices: the
first k devices, one each); each share's partial sum is computed under ``tf.device`` and the
first device adds the shortcut and then the others' partial sums in device order. The stem,
the shared pre-activations and the head run on TensorFlow's default device: list it first.
The original supports exactly two GPUs and an even k (k/2 each); any number of devices works
here. Without the devices, on another backend or under a multi-replica ``tf.distribute``
strategy the blocks compute unsplit, with one warning per process. ``devices`` changes no weight and no
weight name (see ``tinynet.layers.multi_residual``).

Parameter counts (32x32x3 input, type A, width 1): "trainable" is Torch's
``getParameters()`` (convs, BN gamma/beta, dense), which the code prints; "total" adds the BN
moving mean/variance (Keras ``count_params``). Test errors (CIFAR-10 %, CIFAR-100 % in
parentheses) are the paper's:

    entry               family      depth  k  trainable (total)        printed  error
    preresnet110        basic        110   1   1,727,962 (1,736,058)    1.7M    6.37 (Table I),
                                                                                6.02 (Table II)
    multi_resnet8_k23   basic          8  23   1,702,234 (1,707,642)    1.7M    7.37 (Table I)
    multi_resnet14_k10  basic         14  10   1,713,018 (1,719,994)    1.7M    6.42 (Table I)
    multi_resnet8_k4    basic          8   4     297,146 (298,298)      0.29M   9.28 (Table II)
    multi_resnet20_k4   basic         20   4   1,074,874 (1,079,610)    1.0M    6.31 (Table II)
    multi_resnet200_k5  bottleneck   200   5  10,187,354 (10,331,642)  10.2M    4.35 (20.42)
                        (num_classes=100: 10,210,484 trainable, 10,354,772 total)
    multi_resnet398_k5  bottleneck   398   5  20,388,314 (20,680,442)  20.4M    3.92 (20.59)
    preresnet1001       bottleneck  1001   1  10,327,706 (10,476,922)  10.2M    4.62 (22.71)

``multi_resnet`` is the generic entry (any depth, k, block, shortcut); its defaults are
multi-resnet 20, k=4. Table I also has ResNet-110 (post-activation, 6.61), which is not this
family. Table II (median of 5 runs) pairs pre-resnet 24 / 68 / 110 (7.75 / 6.27 / 6.02) with
multi-resnet k=4 of depth 8 / 20 / 30 (9.28 / 6.31 / 5.89). Pre-resnet 68 is
``multi_resnet(depth=68, k=1)``; "pre-resnet 24" and "multi-resnet 30, k=4, 1.7M" are not of
the form 6n+2 (the paper says a block "might be removed" to match the counts, which the code
cannot build), so neither is registered, and the builder refuses depth 30 (nearest 26 and 32).
The paper's 10.2M for pre-resnet 1001 is He et al.'s figure; this code (``multi-resnet.lua``
with k=1) has 10,327,706 parameters. The paper's wide variants (Table III "26, k=2/4, (10)")
are not in the code and not registered.

``width`` (keyword, default 1.0; not in the paper, for CPU demos and tests) scales the base
width 16 to ``round(16 * width)`` = b: basic stages b, 2b, 4b (type A's doubling holds);
bottleneck stem b and stage outputs 4b, 8b, 16b with bottleneck width out/4. A width that
makes b zero (at most 1/32) is refused (``tinynet.models.width``).
"""
import numbers

import keras
from keras import layers

from tinynet.errors import TinynetError
from tinynet.layers.multi_residual import MultiResidual, ZeroPadShortcut
from tinynet.models.batch_norm import batch_norm_class
from tinynet.models.registry import register_model
from tinynet.models.width import scale_filters

PAPER = "Abdi & Nahavandi 2016, Multi-Residual Networks (arXiv 1609.05672, seed 003)"
BLOCKS = {"basic": 6, "bottleneck": 9}  # depth = BLOCKS[block] * n + 2
SHORTCUTS = ("A", "B")
BASE_WIDTH = 16  # the stem's filters at width 1.0; every other layer's are a multiple


def _conv_init():
    """fb.resnet.torch's ConvInit: N(0, sqrt(2 / (kh * kw * out_channels)))."""
    return keras.initializers.VarianceScaling(2.0, "fan_out", "untruncated_normal")


def _conv(filters, kernel, stride, prefix, j):
    """Torch ``SpatialConvolution`` #j of ``prefix`` without bias, padded as Torch pads: a 3x3
    kernel gets pad 1 ("same" at stride 1, an explicit ``ZeroPadding2D`` before a stride-2
    conv), a 1x1 kernel none."""
    conv = layers.Conv2D(filters, kernel, strides=stride,
                         padding="same" if kernel == 3 and stride == 1 else "valid",
                         use_bias=False, kernel_initializer=_conv_init(),
                         name=f"{prefix}_conv{j}")
    if kernel == 3 and stride != 1:
        return [layers.ZeroPadding2D(1, name=f"{prefix}_pad{j}"), conv]
    return [conv]


def _bn(name, bn):
    """Torch ``SpatialBatchNormalization``: eps 1e-5, momentum 0.1 (Keras 0.9), gamma 1, beta 0;
    ``bn`` the layer class (``tinynet.models.batch_norm``)."""
    return bn(epsilon=1e-5, momentum=0.9, name=name)


def _preact(j, name, bn):
    return [_bn(f"{name}_bn{j}", bn), layers.Activation("relu", name=f"{name}_relu{j}")]


def _basic_branch(name, out_channels, stride, preact, bn):
    """BN-ReLU-conv3x3(stride)-BN-ReLU-conv3x3; no first BN-ReLU in a stage-first block."""
    ls = _preact(1, name, bn) if preact else []
    ls += _conv(out_channels, 3, stride, name, 1)
    ls += _preact(2, name, bn) + _conv(out_channels, 3, 1, name, 2)
    return keras.Sequential(ls, name=name)


def _bottleneck_branch(name, out_channels, stride, preact, bn):
    """BN-ReLU-conv1x1(stride)-BN-ReLU-conv3x3-BN-ReLU-conv1x1, bottleneck width out/4."""
    mid = out_channels // 4
    ls = _preact(1, name, bn) if preact else []
    ls += _conv(mid, 1, stride, name, 1)
    ls += _preact(2, name, bn) + _conv(mid, 3, 1, name, 2)
    ls += _preact(3, name, bn) + _conv(out_channels, 1, 1, name, 3)
    return keras.Sequential(ls, name=name)


def multi_residual_block(x, out_channels, stride, *, k, block, first, shortcut, devices, name,
                         bn=layers.BatchNormalization):
    """One block (see the module docstring); ``first``: the stage's first block, which
    pre-activates its input once for all branches and the shortcut."""
    in_channels = x.shape[-1]
    if first:
        x = _bn(f"{name}_preact_bn", bn)(x)
        x = layers.Activation("relu", name=f"{name}_preact_relu")(x)
    make = _basic_branch if block == "basic" else _bottleneck_branch
    branches = [make(f"{name}_branch{i}", out_channels, stride, not first, bn)
                for i in range(1, k + 1)]
    shortcut_layer = None
    if in_channels != out_channels:
        if shortcut == "A":
            if out_channels != 2 * in_channels:
                raise TinynetError(f"the type A shortcut of {name} can only double the channels "
                                   f"({in_channels} -> {out_channels}); use shortcut='B'")
            shortcut_layer = ZeroPadShortcut(stride, name=f"{name}_shortcut")
        else:
            shortcut_layer = layers.Conv2D(out_channels, 1, strides=stride, use_bias=False,
                                           kernel_initializer=_conv_init(),
                                           name=f"{name}_shortcut_conv")
    elif stride != 1:
        raise TinynetError(f"{name}: an identity shortcut cannot change the map size")
    return MultiResidual(branches, shortcut_layer, devices=devices, name=name)(x)


def _nearest_depths(depth, step):
    """The valid depths step * n + 2 (n >= 1) nearest to ``depth``, as a phrase."""
    lower = (depth - 2) // step * step + 2
    candidates = [d for d in (lower, lower + step) if d >= step + 2]
    if len(candidates) == 1:
        return f"nearest valid depth: {candidates[0]}"
    return f"nearest valid depths: {candidates[0]} and {candidates[1]}"


def check_configuration(depth, k, block="basic", shortcut=None, width=1.0, num_classes=10,
                        input_shape=(32, 32, 3)):
    """Raises ``TinynetError`` naming the problem (and, for a depth, the nearest valid ones)
    unless the builder can build this configuration; command lines call it before loading
    any data."""
    if block not in BLOCKS:
        raise TinynetError(f"unknown block type {block!r}; expected one of "
                           f"{', '.join(map(repr, BLOCKS))}")
    step = BLOCKS[block]
    if not (isinstance(depth, numbers.Integral) and not isinstance(depth, bool)):
        raise TinynetError(f"depth must be an integer {step}n+2; got {depth!r}")
    if depth < step + 2 or (depth - 2) % step:
        raise TinynetError(f"depth {depth} is not {step}n+2 ({block} blocks); "
                           f"{_nearest_depths(depth, step)}")
    if not (isinstance(k, numbers.Integral) and not isinstance(k, bool) and k >= 1):
        raise TinynetError(f"k (residual functions per block) must be an integer >= 1; "
                           f"got {k!r}")
    if shortcut is not None and shortcut not in SHORTCUTS:
        raise TinynetError(f"unknown shortcut type {shortcut!r}; expected 'A' (zero padding) "
                           f"or 'B' (1x1 convolution), or None for the family's default")
    if block == "bottleneck" and shortcut == "A":
        raise TinynetError("the bottleneck family always uses its 1x1 conv projection at stage "
                           "starts (multi-resnet.lua has no type A shortcut); pass shortcut=None "
                           "or 'B'")
    scale_filters((BASE_WIDTH,), width, "Multi-ResNet")
    if not (isinstance(num_classes, numbers.Integral) and num_classes >= 1):
        raise TinynetError(f"num_classes must be a positive integer; got {num_classes!r}")
    if len(input_shape) != 3 or not all(isinstance(d, numbers.Integral) and d > 0
                                        for d in input_shape):
        raise TinynetError(f"input_shape must be (height, width, channels) with known positive "
                           f"sizes (channels last); got {tuple(input_shape)!r}")


def build_multi_resnet(depth, k, block="basic", shortcut=None, input_shape=(32, 32, 3),
                       num_classes=10, include_top=True, classifier_activation="softmax",
                       name=None, *, width=1.0, devices=None, batch_norm="keras"):
    """Multi-ResNet of ``depth`` with ``k`` residual functions per block (module docstring).

    ``shortcut``: None (the family's default: 'A' for basic, the projection for bottleneck),
    'A' or 'B'. ``include_top=False`` returns the final BN-ReLU map. ``name`` defaults to
    ``multi-resnet-{depth}-k{k}``, or ``pre-resnet-{depth}`` when k = 1. ``devices`` splits
    every block's branches over those devices (model parallelism). ``batch_norm``: ``"torch"``
    (the moving variance Torch7 kept, the protocol's default) or ``"keras"``
    (``tinynet.models.batch_norm``).
    """
    input_shape = tuple(input_shape)
    bn = batch_norm_class(batch_norm)
    check_configuration(depth, k, block, shortcut, width, num_classes, input_shape)
    n = (depth - 2) // BLOCKS[block]
    base, = scale_filters((BASE_WIDTH,), width, "Multi-ResNet")
    if block == "basic":
        stem, outputs, shortcut = base, (base, 2 * base, 4 * base), shortcut or "A"
    else:
        stem, outputs, shortcut = base, (4 * base, 8 * base, 16 * base), "B"

    inputs = keras.Input(shape=input_shape, name="image")
    x = _conv(stem, 3, 1, "stem", "")[0](inputs)
    for s, out_channels in enumerate(outputs, start=1):
        for b in range(1, n + 1):
            stride = 2 if (s > 1 and b == 1) else 1
            x = multi_residual_block(x, out_channels, stride, k=k, block=block, first=b == 1,
                                     shortcut=shortcut, devices=devices,
                                     name=f"stage{s}_block{b}", bn=bn)
    x = _bn("final_bn", bn)(x)
    x = layers.Activation("relu", name="final_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(num_classes, activation=classifier_activation,
                         kernel_initializer=keras.initializers.VarianceScaling(
                             1 / 3, "fan_in", "uniform"),
                         bias_initializer="zeros", name="predictions")(x)
    default_name = f"pre-resnet-{depth}" if k == 1 else f"multi-resnet-{depth}-k{k}"
    return keras.Model(inputs, x, name=name or default_name)


# name: (paper's label, block, depth, k, builder trainable, builder total, printed, note)
SPECS = {
    "preresnet110": (
        "pre-resnet 110 (Tables I, II)", "basic", 110, 1, 1_727_962, 1_736_058, 1_700_000,
        "printed 1.7M, rounded; equal"),
    "multi_resnet8_k23": (
        "multi-resnet 8, k=23 (Table I)", "basic", 8, 23, 1_702_234, 1_707_642, 1_700_000,
        "printed 1.7M, rounded; equal"),
    "multi_resnet14_k10": (
        "multi-resnet 14, k=10 (Table I)", "basic", 14, 10, 1_713_018, 1_719_994, 1_700_000,
        "printed 1.7M, rounded; equal"),
    "multi_resnet8_k4": (
        "multi-resnet 8, k=4 (Table II)", "basic", 8, 4, 297_146, 298_298, 290_000,
        "printed 0.29M; the code's count is 297,146 (0.30M), the printed figure truncates it"),
    "multi_resnet20_k4": (
        "multi-resnet 20, k=4 (Table II)", "basic", 20, 4, 1_074_874, 1_079_610, 1_000_000,
        "printed 1.0M; the code's count is 1,074,874 (1.1M rounded), the printed figure "
        "truncates it"),
    "multi_resnet200_k5": (
        "multi-resnet 200, k=5 (Table III)", "bottleneck", 200, 5, 10_187_354, 10_331_642,
        10_200_000,
        "printed 10.2M, rounded; equal (CIFAR-10; with num_classes=100, 10,210,484 trainable)"),
    "multi_resnet398_k5": (
        "multi-resnet 398, k=5 (Table III)", "bottleneck", 398, 5, 20_388_314, 20_680_442,
        20_400_000, "printed 20.4M, rounded; equal"),
    "preresnet1001": (
        "pre-resnet 1001 (Table III)", "bottleneck", 1001, 1, 10_327_706, 10_476_922,
        10_200_000,
        "printed 10.2M is He et al.'s figure for their pre-resnet 1001; the code "
        "(multi-resnet.lua, k=1) gives 10,327,706 (10.3M), which is what is registered"),
}
DEFAULT = "multi_resnet20_k4"
_default = SPECS[DEFAULT]


@register_model(paper=f"{PAPER}, any configuration (defaults: multi-resnet 20, k=4, basic)",
                input_shape=(32, 32, 3), num_classes=10, trainable_params=_default[4],
                total_params=_default[5], paper_params=_default[6], params_note=_default[7])
def multi_resnet(depth=20, k=4, block="basic", shortcut=None, input_shape=(32, 32, 3),
                 num_classes=10, include_top=True, classifier_activation="softmax", width=1.0,
                 devices=None, batch_norm="keras"):
    """Any Multi-ResNet (basic depth 6n+2 or bottleneck depth 9n+2, k >= 1); the defaults are
    Table II's multi-resnet 20, k=4."""
    return build_multi_resnet(depth, k, block, shortcut, input_shape, num_classes, include_top,
                              classifier_activation, width=width, devices=devices,
                              batch_norm=batch_norm)


def _register(name):
    paper_name, block, depth, k, trainable, total, printed, note = SPECS[name]

    def entry(input_shape=(32, 32, 3), num_classes=10, include_top=True,
              classifier_activation="softmax", width=1.0, devices=None, batch_norm="keras"):
        return build_multi_resnet(depth, k, block, None, input_shape, num_classes, include_top,
                                  classifier_activation, width=width, devices=devices,
                                  batch_norm=batch_norm)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = (f"{paper_name} of seed 003: {block} blocks, depth {depth}, k={k}, the "
                     f"code's default shortcut.")
    return register_model(paper=f"{PAPER}, {paper_name}", input_shape=(32, 32, 3),
                          num_classes=10, trainable_params=trainable, total_params=total,
                          paper_params=printed, params_note=note)(entry)


for _name in SPECS:
    globals()[_name] = _register(_name)
