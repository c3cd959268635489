"""The CIFAR-10 ResNet design space of seed 004 ("Mini-Project 1: Residual Network Design",
Singh, Kumar & Biyani, NYU; code: github.com/95anantsingh/NYU-ResNet-On-Steroids, models.py),
which is kuangliu's pytorch-cifar ResNet with every hyper-parameter exposed:

    N    residual layers (len(blocks))        C_i  channels of layer i  (channels)
    B_i  BasicBlocks in layer i   (blocks)    F_i  conv kernel of layer i  (conv_kernels, 3s)
    P    average-pool size        (pool, 4)   K_i  shortcut kernel of layer i  (skip_kernels, 1s)

    stem     ZeroPad 1, conv F_0 x F_0 (C_0, stride 1, no bias), BN, ReLU; no pooling
    layer i  B_i BasicBlocks; the first block of layers 2..N has stride 2:
               branch   ZeroPad 1, conv F_i (stride s) BN ReLU, ZeroPad 1, conv F_i BN
               shortcut identity, or conv K_i x K_i (stride s, no padding, no bias) BN when
                        s != 1 or the block changes the channel count
               out      ReLU(branch + shortcut)
    head     average pool P x P (stride P, valid), flatten, dense (bias), softmax

Padding is explicit (``ZeroPadding2D(1)`` + ``valid`` conv, as PyTorch's ``padding=1``) so that
F != 3 and K != 1 change the map sizes exactly as in the original. The model is named ResNet-d
with d = 2 * sum(B) + 2. Numerics follow PyTorch: BN epsilon 1e-5 and momentum 0.9 (PyTorch's
0.1), conv and dense kernels kaiming_uniform(a=sqrt(5)) (``VarianceScaling(1/3, "fan_in",
"uniform")``), dense bias U(-1/sqrt(fan_in), 1/sqrt(fan_in)). The original returns logits for
CrossEntropyLoss; here ``classifier_activation="softmax"`` (the runner's probabilities +
cross-entropy, the same loss); ``None`` gives the logits.

Flatten order: PyTorch's (C, H, W) in both data formats (a channels_last model permutes the
pooled map to channels-first before flattening), so the dense kernel is the transpose of the
original ``linear.weight`` and the two data formats share one set of weights. Porting a
PyTorch state_dict: ``conv1``/``bn1`` -> ``stem_conv``/``stem_bn``; ``layer{i}.{b-1}.conv1``,
``.bn1``, ``.conv2``, ``.bn2``, ``.shortcut.0``, ``.shortcut.1`` -> ``layer{i}_block{b}_conv1``,
``_bn1``, ``_conv2``, ``_bn2``, ``_shortcut_conv``, ``_shortcut_bn``; ``linear`` ->
``predictions``. Conv kernels transpose (O, I, kh, kw) -> (kh, kw, I, O); BN weights are
[weight, bias, running_mean, running_var].

The original sizes its dense layer as ``C[N-1] * (32 // (P * 2**(N-1)))**2``, which assumes a
32x32 input and exact halving; where that differs from the real pooled map x C_N, PyTorch fails
at the dense layer, and the builder refuses the configuration (``ValueError`` naming ``pool``
and N, or ``input_shape``). It also refuses list lengths other than N, non-positive entries,
shortcut kernels whose map differs from the branch's, conv kernels that change the size of a
block with an identity shortcut (any F_i != 3 there) and pools larger than the last map.

Table 1 of the paper (F = 3, K = 1, P = 4 throughout) against the builder, 10 classes; the
builder's trainable count is PyTorch's parameter count (convs, BN gamma/beta, dense), which is
what torchsummary and the paper print; "total" adds the BN moving mean/variance (Keras
``count_params``, PyTorch buffers):

    name         N  B            C                builder trainable (total)  printed    verdict
    ResNet-10-1  3  1,2,1        64,128,256       1,530,698 (1,533,898)     312,490  wrong (1)
    ResNet-10-2  4  1,1,1,1      64,128,256,512   4,903,242 (4,909,002)   4,903,242  equal (2)
    ResNet-12    4  2,1,1,1      64,128,256,512   4,977,226 (4,983,242)   4,977,226  equal
    ResNet-16    4  2,1,2,2      64,128,256,256   4,909,642 (4,916,170)   4,909,642  equal
    ResNet-20    3  3,3,3        64,128,256       4,335,434 (4,341,706)   4,335,434  equal (3)
    ResNet-24    4  3,3,2,3      64,128,128,256   4,935,242 (4,942,794)   4,935,242  equal (4)
    ResNet-32    4  4,4,4,3      32,64,128,256    4,754,218 (4,761,834)   4,754,218  equal
    ResNet-48    4  8,5,5,5      64,128,128,128   4,994,378 (5,005,002)   4,994,378  equal (5)
    ResNet-86    4  10,8,10,14   16,32,64,128     4,987,162 (4,999,034)   4,994,378  wrong (6)

(1) 312,490 is the count of N=3, B=1,1,1, C=32,64,128: the code's ``ResNet10_2()`` (an
    8-layer net by 2*sum(B)+2; run in the authors' logs zResNet10_2_*). It is the only
    configuration with that count among N in {3, 4}, B_i <= 15, increasing C_i from {8, 16,
    32, 48, 64, 96, 128, 192, 256, 512}. The printed configuration agrees with the name
    (d = 10) and the text ("3 layers with 1, 2, and 1 residual blocks") and is what is
    registered; the count is another configuration's.
(2) The code calls this configuration ``ResNet10_1()`` (the two ResNet-10 names are crossed
    between paper and code); torchsummary in logs restnet10_1_0/1 prints 4,903,242.
(3) The code calls it ``ResNet24_2()`` although it has 20 layers.
(4) ``project1_model()`` = ``ResNet24_1()``, the headline model (94.8% on CIFAR-10) and the
    default of the ``cifar_resnet`` entry. The README's "Parameters: 4,935,242" and the goal
    "under 5 million" hold for the trainable count (torchsummary in logs AA1Test, AA2Test,
    restnet24_1_0); with the BN moving statistics it is 4,942,794, still under 5M.
(5) Trainable 4,994,378 < 5M, but 5,005,002 with the BN moving statistics: the budget is on
    trainable parameters, as the paper says.
(6) 4,994,378 is ResNet-48's figure, copied from the row above. No B with C=16,32,64,128 gives
    it (B_i <= 20; the nearest, B=19,18,19,11, gives 4,994,394), so the printed B is not a
    misprint of another block count; d = 86 agrees with B. The printed configuration is
    registered and its count is 4,987,162.

``width`` (keyword, default 1.0) multiplies every C_i, as every tinynet family's ``width``, for
CPU demos and tests; it is not part of the paper. A width that leaves some C_i under one channel
is refused (``tinynet.models.width``).
"""
import math
import numbers

import keras
from keras import layers

from tinynet.layers.data_format import standardize_data_format
from tinynet.models.batch_norm import batch_norm_class
from tinynet.models.registry import register_model
from tinynet.models.width import scale_filters

PAPER = "Singh, Kumar & Biyani, NYU Mini-Project 1: Residual Network Design (seed 004)"

# name: (paper's name, B, C, builder trainable, builder total, printed count, note)
SPECS = {
    "nyu_resnet10_1": (
        "ResNet-10-1", (1, 2, 1), (64, 128, 256), 1_530_698, 1_533_898, 312_490,
        "printed 312,490 is the count of N=3 B=1,1,1 C=32,64,128 (the code's ResNet10_2(), an "
        "8-layer net), the only configuration with that count in a search over N=3,4; the "
        "printed configuration (B=1,2,1, C=64,128,256, d=10 as named and as the text says) "
        "is registered and has 1,530,698 trainable parameters"),
    "nyu_resnet10_2": (
        "ResNet-10-2", (1, 1, 1, 1), (64, 128, 256, 512), 4_903_242, 4_909_002, 4_903_242,
        "equal (the code calls this configuration ResNet10_1())"),
    "nyu_resnet12": (
        "ResNet-12", (2, 1, 1, 1), (64, 128, 256, 512), 4_977_226, 4_983_242, 4_977_226,
        "equal"),
    "nyu_resnet16": (
        "ResNet-16", (2, 1, 2, 2), (64, 128, 256, 256), 4_909_642, 4_916_170, 4_909_642,
        "equal"),
    "nyu_resnet20": (
        "ResNet-20", (3, 3, 3), (64, 128, 256), 4_335_434, 4_341_706, 4_335_434,
        "equal (the code calls it ResNet24_2())"),
    "nyu_resnet24": (
        "ResNet-24", (3, 3, 2, 3), (64, 128, 128, 256), 4_935_242, 4_942_794, 4_935_242,
        "equal; project1_model(), the headline model; the README's 4,935,242 is the trainable "
        "count (4,942,794 with BN moving statistics, still under 5M)"),
    "nyu_resnet32": (
        "ResNet-32", (4, 4, 4, 3), (32, 64, 128, 256), 4_754_218, 4_761_834, 4_754_218,
        "equal"),
    "nyu_resnet48": (
        "ResNet-48", (8, 5, 5, 5), (64, 128, 128, 128), 4_994_378, 5_005_002, 4_994_378,
        "equal (trainable under 5M; 5,005,002 with BN moving statistics)"),
    "nyu_resnet86": (
        "ResNet-86", (10, 8, 10, 14), (16, 32, 64, 128), 4_987_162, 4_999_034, 4_994_378,
        "printed 4,994,378 is ResNet-48's figure copied from the row above; no B with "
        "C=16,32,64,128 gives it, so the printed configuration (d=86 as named) is registered "
        "and has 4,987,162 trainable parameters"),
}
DEFAULT = "nyu_resnet24"  # project1_model(): the paper's final model
ORIGINAL_INPUT = 32  # the original's dense-size formula assumes 32x32 inputs


def _conv_init():
    """PyTorch's conv/linear kernel init, kaiming_uniform(a=sqrt(5)) = U(+-1/sqrt(fan_in))."""
    return keras.initializers.VarianceScaling(scale=1 / 3, mode="fan_in", distribution="uniform")


def _channel_axis(data_format):
    return -1 if data_format == "channels_last" else 1


def _conv(x, filters, kernel, stride, padding, *, data_format, name):
    """PyTorch ``Conv2d(kernel, stride, padding, bias=False)``: explicit zero padding + valid."""
    if padding:
        x = layers.ZeroPadding2D(padding, data_format=data_format, name=f"{name}_pad")(x)
    return layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                         kernel_initializer=_conv_init(), data_format=data_format, name=name)(x)


def _bn(x, *, data_format, name, bn):
    """PyTorch ``BatchNorm2d`` defaults (eps 1e-5, momentum 0.1 = Keras 0.9); ``bn`` the layer
    class (``tinynet.models.batch_norm``)."""
    return bn(axis=_channel_axis(data_format), epsilon=1e-5, momentum=0.9, name=name)(x)


def basic_block(x, filters, kernel_size, skip_kernel, stride, *, data_format, name,
                bn=layers.BatchNormalization):
    """kuangliu's ``BasicBlock``: ReLU(BN(conv(ReLU(BN(conv(x))))) + shortcut(x))."""
    in_channels = x.shape[_channel_axis(data_format)]
    y = _conv(x, filters, kernel_size, stride, 1, data_format=data_format, name=f"{name}_conv1")
    y = _bn(y, data_format=data_format, name=f"{name}_bn1", bn=bn)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = _conv(y, filters, kernel_size, 1, 1, data_format=data_format, name=f"{name}_conv2")
    y = _bn(y, data_format=data_format, name=f"{name}_bn2", bn=bn)
    if stride != 1 or in_channels != filters:
        shortcut = _conv(x, filters, skip_kernel, stride, 0, data_format=data_format,
                         name=f"{name}_shortcut_conv")
        shortcut = _bn(shortcut, data_format=data_format, name=f"{name}_shortcut_bn", bn=bn)
    else:
        shortcut = x
    y = layers.Add(name=f"{name}_add")([y, shortcut])
    return layers.Activation("relu", name=f"{name}_out_relu")(y)


def _positive_ints(argument, values, n=None):
    """``values`` as a tuple of positive ints (of length ``n`` when given), else ValueError."""
    try:
        values = tuple(values)
    except TypeError:
        raise ValueError(f"Invalid value for argument `{argument}`: expected a list of positive "
                         f"integers. Received: {argument}={values!r}") from None
    if n is not None and len(values) != n:
        raise ValueError(f"Invalid value for argument `{argument}`: expected {n} entries, one "
                         f"per residual layer (N = len(blocks) = {n}); got {len(values)}. "
                         f"Received: {argument}={values!r}")
    if not values or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                             and v > 0 for v in values):
        raise ValueError(f"Invalid value for argument `{argument}`: expected a non-empty list of "
                         f"positive integers. Received: {argument}={values!r}")
    return tuple(int(v) for v in values)


def _conv_size(size, kernel, stride, padding):
    return (size + 2 * padding - kernel) // stride + 1


def _check_sizes(input_shape, blocks, channels, conv_kernels, skip_kernels, pool, include_top):
    """Follows the map size through the network as PyTorch would; ValueError where the original
    cannot run (see the module docstring). Returns nothing: the sizes are only checked."""
    size = tuple(input_shape[:2])
    received = (f"blocks={blocks}, channels={channels}, conv_kernels={conv_kernels}, "
                f"skip_kernels={skip_kernels}")

    def fmt(s):
        return f"{s[0]}x{s[1]}"

    stem = tuple(_conv_size(s, conv_kernels[0], 1, 1) for s in size)
    if min(stem) < 1:
        raise ValueError(f"Invalid value for argument `conv_kernels`: the stem's "
                         f"F_1={conv_kernels[0]} kernel does not fit the padded {fmt(size)} "
                         f"input. Received: {received}")
    size, in_channels = stem, channels[0]
    for i, (n, c, f, k) in enumerate(zip(blocks, channels, conv_kernels, skip_kernels), start=1):
        for b in range(1, n + 1):
            stride = 2 if (i > 1 and b == 1) else 1
            where = f"layer {i} block {b} (input {fmt(size)}, stride {stride})"
            mid = tuple(_conv_size(s, f, stride, 1) for s in size)
            out = tuple(_conv_size(s, f, 1, 1) for s in mid) if min(mid) >= 1 else (0, 0)
            if min(out) < 1:
                raise ValueError(f"Invalid value for argument `conv_kernels`: F_{i}={f} does not "
                                 f"fit the maps of {where}. Received: {received}")
            if stride != 1 or in_channels != c:
                short = tuple(_conv_size(s, k, stride, 0) for s in size)
                if short != out:
                    raise ValueError(
                        f"Invalid value for argument `skip_kernels`: K_{i}={k} makes the "
                        f"projection shortcut of {where} produce a {fmt(short)} map but its "
                        f"residual branch (F_{i}={f}) produces {fmt(out)}; the addition needs "
                        f"equal sizes. Received: {received}")
            elif out != size:
                raise ValueError(
                    f"Invalid value for argument `conv_kernels`: F_{i}={f} makes the residual "
                    f"branch of {where} produce a {fmt(out)} map, but its identity shortcut "
                    f"keeps {fmt(size)}; with padding 1 only a 3x3 kernel keeps the size. "
                    f"Received: {received}")
            size, in_channels = out, c
    if not include_top:
        return
    n_layers = len(blocks)
    pooled = tuple(s // pool for s in size)
    if min(pooled) < 1:
        raise ValueError(f"Invalid value for argument `pool`: P={pool} is larger than the "
                         f"{fmt(size)} map of the last residual layer (N = len(blocks) = "
                         f"{n_layers}), so the pooled map would be {fmt(pooled)} and the dense "
                         f"layer would have no input. Received: pool={pool}")
    real = channels[-1] * pooled[0] * pooled[1]
    side = ORIGINAL_INPUT // (pool * 2 ** (n_layers - 1))
    expected = channels[-1] * side * side
    if real != expected:
        argument = "input_shape" if tuple(input_shape[:2]) != (32, 32) else "pool"
        raise ValueError(
            f"Invalid value for argument `{argument}`: the original sizes its dense layer as "
            f"C_N*(32//(P*2**(N-1)))**2 = {channels[-1]}*(32//({pool}*2**{n_layers - 1}))**2 = "
            f"{expected} inputs (P = pool = {pool}, N = len(blocks) = {n_layers}, a 32x32 input "
            f"assumed), but the last residual layer's {fmt(size)}x{channels[-1]} map pools to "
            f"{fmt(pooled)}x{channels[-1]} = {real} values, so the original cannot build this "
            f"configuration. Received: pool={pool}, blocks={blocks}, "
            f"input_shape={tuple(input_shape)}")


def build_cifar_resnet(blocks, channels, conv_kernels=None, skip_kernels=None, pool=4,
                       input_shape=(32, 32, 3), num_classes=10, include_top=True,
                       classifier_activation="softmax", data_format=None, name=None, *,
                       width=1.0, batch_norm="keras"):
    """The ResNet of seed 004 with N = len(blocks) residual layers (see the module docstring).

    ``conv_kernels`` (F) and ``skip_kernels`` (K) default to 3s and 1s. ``include_top=False``
    returns the last residual layer's map (no pooling; ``pool`` is then not checked). The input
    is always NHWC; a ``channels_first`` model transposes once at its input. ``name`` defaults
    to ``ResNet-d``, d = 2 * sum(blocks) + 2. ``width`` multiplies every C_i (not the paper's).
    ``batch_norm``: ``"torch"`` (PyTorch's moving variance, the protocol's default) or
    ``"keras"`` (``tinynet.models.batch_norm``).
    """
    blocks = _positive_ints("blocks", blocks)
    n = len(blocks)
    channels = _positive_ints("channels", channels, n)
    conv_kernels = _positive_ints("conv_kernels", (3,) * n if conv_kernels is None else
                                  conv_kernels, n)
    skip_kernels = _positive_ints("skip_kernels", (1,) * n if skip_kernels is None else
                                  skip_kernels, n)
    if not (isinstance(pool, numbers.Integral) and not isinstance(pool, bool) and pool > 0):
        raise ValueError(f"Invalid value for argument `pool`: expected a positive integer. "
                         f"Received: pool={pool!r}")
    pool, input_shape = int(pool), tuple(input_shape)
    if len(input_shape) != 3 or not all(isinstance(d, numbers.Integral) and d > 0
                                        for d in input_shape):
        raise ValueError(f"Invalid value for argument `input_shape`: expected (height, width, "
                         f"channels) with known positive sizes. Received: "
                         f"input_shape={input_shape!r}")
    data_format = standardize_data_format(data_format)
    bn = batch_norm_class(batch_norm)
    scaled = tuple(scale_filters(channels, width, name or f"ResNet-{2 * sum(blocks) + 2}"))
    _check_sizes(input_shape, blocks, scaled, conv_kernels, skip_kernels, pool, include_top)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if data_format == "channels_first":
        x = layers.Permute((3, 1, 2), name="to_channels_first")(x)
    x = _conv(x, scaled[0], conv_kernels[0], 1, 1, data_format=data_format, name="stem_conv")
    x = _bn(x, data_format=data_format, name="stem_bn", bn=bn)
    x = layers.Activation("relu", name="stem_relu")(x)
    for i, (b_i, c_i, f_i, k_i) in enumerate(zip(blocks, scaled, conv_kernels, skip_kernels),
                                             start=1):
        for b in range(1, b_i + 1):
            x = basic_block(x, c_i, f_i, k_i, 2 if (i > 1 and b == 1) else 1,
                            data_format=data_format, name=f"layer{i}_block{b}", bn=bn)
    if include_top:
        x = layers.AveragePooling2D(pool, strides=pool, padding="valid", data_format=data_format,
                                    name="avg_pool")(x)
        if data_format == "channels_last":  # flatten in PyTorch's (C, H, W) order
            x = layers.Permute((3, 1, 2), name="to_chw")(x)
        x = layers.Flatten(data_format="channels_last", name="flatten")(x)  # a plain reshape
        bound = 1 / math.sqrt(x.shape[-1])
        x = layers.Dense(num_classes, activation=classifier_activation,
                         kernel_initializer=_conv_init(),
                         bias_initializer=keras.initializers.RandomUniform(-bound, bound),
                         name="predictions")(x)
    return keras.Model(inputs, x, name=name or f"ResNet-{2 * sum(blocks) + 2}")


_default = SPECS[DEFAULT]


@register_model(paper=f"{PAPER}, any configuration (defaults: ResNet-24, project1_model())",
                input_shape=(32, 32, 3), num_classes=10,
                trainable_params=_default[3], total_params=_default[4])
def cifar_resnet(blocks=_default[1], channels=_default[2], conv_kernels=None, skip_kernels=None,
                 pool=4, input_shape=(32, 32, 3), num_classes=10, include_top=True,
                 classifier_activation="softmax", width=1.0, data_format=None,
                 batch_norm="keras"):
    """Any configuration of the design space; the defaults are the paper's ResNet-24."""
    return build_cifar_resnet(blocks, channels, conv_kernels, skip_kernels, pool, input_shape,
                              num_classes, include_top, classifier_activation, data_format,
                              width=width, batch_norm=batch_norm)


def _register(name):
    paper_name, blocks, channels, trainable, total, printed, note = SPECS[name]

    def entry(input_shape=(32, 32, 3), num_classes=10, include_top=True,
              classifier_activation="softmax", width=1.0, data_format=None,
              batch_norm="keras"):
        return build_cifar_resnet(blocks, channels, None, None, 4, input_shape, num_classes,
                                  include_top, classifier_activation, data_format, paper_name,
                                  width=width, batch_norm=batch_norm)

    entry.__name__ = entry.__qualname__ = name
    entry.__doc__ = f"{paper_name} of seed 004's Table 1: B={blocks}, C={channels}, F=3, K=1, P=4."
    return register_model(paper=f"{PAPER}, Table 1 {paper_name}", input_shape=(32, 32, 3),
                          num_classes=10, trainable_params=trainable, total_params=total,
                          paper_params=printed, params_note=note)(entry)


for _name in SPECS:
    globals()[_name] = _register(_name)
