"""ResNet-18/34/50/101/152 (He et al. 2016) with the residual-block variants of "Identity
Mappings in Deep Residual Networks" (He et al. 2016b, Fig. 4), as seed 001 trained them on
Tiny ImageNet, with stochastic depth, fused batch norm and both data formats.

One spec table, one builder (the keras.applications / tensorflow-models pattern)::

    resnet18   basic       [2, 2, 2, 2]       resnet101  bottleneck  [3, 4, 23, 3]
    resnet34   basic       [3, 4, 6, 3]       resnet152  bottleneck  [3, 8, 36, 3]
    resnet50   bottleneck  [3, 4, 6, 3]

Stage widths 64, 128, 256, 512 (x4 at the output of bottleneck blocks); stages 2-4 halve the
resolution in their first block (in the 3x3 conv of a bottleneck, torchvision's "v1.5"), whose
shortcut is then a 1x1 conv + BN projection; other shortcuts are identities. No conv has a
bias. The head is global average pooling and a dense layer with bias. With the ``imagenet``
stem, variant ``a`` and 1000 classes the trainable counts equal torchvision's:
11,689,512 / 21,797,672 / 25,557,032 / 44,549,160 / 60,192,808.

Block variants (Fig. 4 of He et al. 2016b; ``k`` convs per branch, "conv" has no bias):
    a  original:                branch [conv BN ReLU]*(k-1) conv BN;  out = ReLU(x + branch)
    b  BN after addition:       branch [conv BN ReLU]*(k-1) conv;     out = ReLU(BN(x + branch))
    c  ReLU before addition:    branch [conv BN ReLU]*k;              out = x + branch
    d  ReLU-only pre-activation branch [ReLU conv BN]*k;              out = x + branch
    e  full pre-activation:     branch [BN ReLU conv]*k;              out = x + branch
Variants d and e end the network with ReLU (d) or BN + ReLU (e) before pooling, and a
projection shortcut of a pre-activation block starts from the activated input, as in the
authors' code. Seed 001 compares c and e and picks ResNet-34 (e).

Stems: ``imagenet`` (7x7/2 conv, BN, ReLU, 3x3/2 max pool: 64 px -> 16 px before stage 1) and
``tiny`` (3x3/1 conv, BN, ReLU, no pool: stage 1 runs at 64 px), the usual choice for 64 px
inputs, which keeps 8x8 maps at the last stage instead of 2x2.

``stochastic_depth``: the final survival probability ``p_L`` (None: off); block ``l`` of ``L``
survives with ``1 - (l / L)(1 - p_L)`` (``tinynet.layers.StochasticDepth``, which skips the
dropped branch's computation). ``batch_norm``: ``"keras"``, ``"fused"``
(``tinynet.layers.FusedBatchNormalization``) or ``"torch"`` (PyTorch's moving variance, as the
torchvision models this builder matches keep it: ``tinynet.models.batch_norm``). ``padding``:
``"keras"`` (the default: Keras' ``"same"``, which at stride 2 pads only the bottom/right) or
``"torch"`` (torchvision's symmetric padding of the 7x7/2 stem conv, the stem pool and the 3x3/2
convs, as explicit ``ZeroPadding2D`` layers): with ``stem="imagenet"``, ``variant="a"``,
``batch_norm="torch"`` and ``padding="torch"`` the model computes torchvision's ResNet (same
weights, same function: tests/test_torchvision_weights.py); the parameter counts agree either
way. ``data_format``: ``channels_last``,
``channels_first`` or ``auto`` (channels_first only when a GPU is visible, where cuDNN's NCHW
kernels have been the faster layout for float32; CPU kernels are NHWC). The input is always
NHWC and a channels_first model transposes once at its input. ``width`` multiplies the stage
widths (``tinynet.models.width``: a width that leaves a stage under one filter is refused).

Backends: every model builds, trains and saves under Keras' TensorFlow, JAX and PyTorch
backends, except ``batch_norm="fused"`` (a TensorFlow kernel: a ``TinynetError`` on the
others). ``data_format="auto"`` asks the running backend whether it sees a GPU (TensorFlow:
``tf.config.list_physical_devices``, JAX: ``jax.devices()``, PyTorch: ``torch.cuda``), so it
needs no TensorFlow on the others. NCHW on CPU: TensorFlow's CPU convolutions do not support
it (TensorFlow raises its own error at the first step); JAX and PyTorch run it.
"""
import keras
from keras import layers

from tinynet.layers import StochasticDepth, linear_survival
from tinynet.layers.fused_batch_norm import require_tensorflow_backend
from tinynet.layers.data_format import standardize_data_format
from tinynet.models.batch_norm import batch_norm_class
from tinynet.models.registry import register_model
from tinynet.models.width import scale_filters

SPECS = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
TORCHVISION_PARAMS = {"resnet18": 11_689_512, "resnet34": 21_797_672, "resnet50": 25_557_032,
                      "resnet101": 44_549_160, "resnet152": 60_192_808}
WIDTHS = (64, 128, 256, 512)
VARIANTS = ("a", "b", "c", "d", "e")
STEMS = ("imagenet", "tiny")
BATCH_NORMS = ("keras", "fused", "torch")
PADDINGS = ("keras", "torch")


def gpu_visible():
    """Whether the running Keras backend sees a GPU (TensorFlow is imported only when it is
    the backend)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        return bool(tf.config.list_physical_devices("GPU"))
    if backend == "jax":
        import jax

        return any(d.platform == "gpu" for d in jax.devices())
    if backend == "torch":
        import torch

        return torch.cuda.is_available()
    return False


def resolve_data_format(data_format):
    """``auto`` -> channels_first with a visible GPU, else channels_last."""
    if data_format == "auto":
        return "channels_first" if gpu_visible() else "channels_last"
    return standardize_data_format(data_format)


NARROW_CHANNELS = 8  # see _Ops._strided_pointwise


class _Ops:
    """Layer factories bound to one model's data format, batch-norm and padding choice."""

    def __init__(self, data_format, batch_norm, weight_decay=None, padding="keras"):
        self.data_format = data_format
        self.padding = padding
        # He et al.'s weight decay adds wd * w to the gradient; Keras' L2(l) adds 2 * l * w.
        self.regularizer = keras.regularizers.L2(weight_decay / 2) if weight_decay else None
        self.axis = -1 if data_format == "channels_last" else 1
        self.bn_class = batch_norm_class(batch_norm, BATCH_NORMS)

    def conv(self, filters, kernel, stride, name):
        # PyTorch pads kernel // 2 on both sides; Keras' "same" at stride 2 puts the odd pixel
        # at the bottom/right only, which shifts the sampling grid. At stride 1 (odd kernel) and
        # for 1x1 kernels the two are the same computation.
        explicit = self.padding == "torch" and stride > 1 and kernel > 1
        if kernel == 1 and stride > 1:
            return self._strided_pointwise(filters, stride, name)
        conv = layers.Conv2D(filters, kernel, strides=stride,
                             padding="valid" if explicit else "same", use_bias=False,
                             kernel_initializer="he_normal", data_format=self.data_format,
                             kernel_regularizer=self.regularizer, name=name)
        if not explicit:
            return conv
        pad = layers.ZeroPadding2D(kernel // 2, data_format=self.data_format, name=f"{name}_pad")
        return lambda x: conv(pad(x))

    def _strided_pointwise(self, filters, stride, name):
        """A 1x1 convolution at ``stride`` (a projection shortcut). On inputs of at most
        ``NARROW_CHANNELS`` channels it is built as the same function in two layers: every
        ``stride``-th pixel (a 1x1 max pool at that stride), then the 1x1 convolution at stride
        1, with the same kernel and name. TensorFlow 2.21's oneDNN CPU kernel for the weight
        gradient of a strided 1x1 convolution corrupts the heap (a segmentation fault or "double
        free") on so few input channels at 48 px and more (docs/faults.md); the models of the
        papers have 64 channels and more there, and are built as one strided convolution."""
        def apply(x):
            channels = x.shape[self.axis]
            subsample = channels is not None and channels <= NARROW_CHANNELS
            conv = layers.Conv2D(filters, 1, strides=1 if subsample else stride, padding="same",
                                 use_bias=False, kernel_initializer="he_normal",
                                 data_format=self.data_format,
                                 kernel_regularizer=self.regularizer, name=name)
            if subsample:
                x = layers.MaxPooling2D(1, strides=stride, data_format=self.data_format,
                                        name=f"{name}_subsample")(x)
            return conv(x)
        return apply

    def max_pool(self, name):
        """The ImageNet stem's 3x3/2 max pool (torch: padding 1; after a ReLU zeros stand in
        for PyTorch's -inf padding)."""
        if self.padding == "keras":
            return layers.MaxPooling2D(3, strides=2, padding="same",
                                       data_format=self.data_format, name=name)
        pad = layers.ZeroPadding2D(1, data_format=self.data_format, name=f"{name}_pad")
        pool = layers.MaxPooling2D(3, strides=2, padding="valid", data_format=self.data_format,
                                   name=name)
        return lambda x: pool(pad(x))

    def bn(self, name):
        return self.bn_class(axis=self.axis, epsilon=1e-5, momentum=0.9, name=name)


def _branch_plan(kind, filters, stride):
    """``(filters, kernel, stride)`` of each conv of a block's branch."""
    if kind == "basic":
        return [(filters, 3, stride), (filters, 3, 1)]
    return [(filters, 1, 1), (filters, 3, stride), (filters * 4, 1, 1)]


def _branch(x, plan, variant, ops, name):
    """Applies the residual branch's layers to ``x``."""
    for i, (f, k, s) in enumerate(plan, start=1):
        last = i == len(plan)
        if variant == "e":
            if i > 1:  # the block's first BN-ReLU is shared with the shortcut (see _block)
                x = ops.bn(f"{name}_bn{i}")(x)
                x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
            x = ops.conv(f, k, s, f"{name}_conv{i}")(x)
        elif variant == "d":
            if i > 1:
                x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
            x = ops.conv(f, k, s, f"{name}_conv{i}")(x)
            x = ops.bn(f"{name}_bn{i}")(x)
        else:
            x = ops.conv(f, k, s, f"{name}_conv{i}")(x)
            if not (variant == "b" and last):
                x = ops.bn(f"{name}_bn{i}")(x)
            if not last or variant == "c":
                x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    return x


def _block(x, kind, filters, stride, variant, ops, survival, sd_mode, seed, name):
    out_filters = filters * (4 if kind == "bottleneck" else 1)
    in_filters = x.shape[ops.axis]
    project = stride != 1 or in_filters != out_filters
    if variant == "e":  # pre-activation: BN-ReLU once, feeding the branch and a projection
        act = ops.bn(f"{name}_preact_bn")(x)
        act = layers.Activation("relu", name=f"{name}_preact_relu")(act)
    elif variant == "d":
        act = layers.Activation("relu", name=f"{name}_preact_relu")(x)
    else:
        act = x
    if project:
        shortcut = ops.conv(out_filters, 1, stride, f"{name}_shortcut_conv")(act)
        shortcut = ops.bn(f"{name}_shortcut_bn")(shortcut)
    else:
        shortcut = x
    plan = _branch_plan(kind, filters, stride)
    if survival is None:
        y = layers.Add(name=f"{name}_add")([shortcut, _branch(act, plan, variant, ops, name)])
    else:  # the branch as one model, which StochasticDepth runs or skips as a unit
        inputs = keras.Input(shape=act.shape[1:], name=f"{name}_branch_in")
        branch = keras.Model(inputs, _branch(inputs, plan, variant, ops, name),
                             name=f"{name}_branch")
        y = StochasticDepth(branch, survival, mode=sd_mode, seed=seed, name=f"{name}_add")(
            [act, shortcut])
    if variant == "a":
        y = layers.Activation("relu", name=f"{name}_out_relu")(y)
    elif variant == "b":
        y = ops.bn(f"{name}_out_bn")(y)
        y = layers.Activation("relu", name=f"{name}_out_relu")(y)
    return y


def build_resnet(depth_name, input_shape=(64, 64, 3), num_classes=200, include_top=True,
                 classifier_activation="softmax", variant="a", stem="tiny", width=1.0,
                 stochastic_depth=None, stochastic_depth_mode="batch", batch_norm="keras",
                 data_format=None, seed=None, weight_decay=None, padding="keras"):
    """Builds ``depth_name`` (a key of ``SPECS``); arguments as in the module docstring.

    ``weight_decay``: L2 weight decay on conv and dense kernels as He et al. define it (``wd *
    w`` added to the gradient, so it goes through momentum); BN parameters are not decayed.
    """
    if variant not in VARIANTS:
        raise ValueError(f"Invalid value for argument `variant`: expected one of {VARIANTS}. "
                         f"Received: variant={variant!r}")
    if stem not in STEMS:
        raise ValueError(f"Invalid value for argument `stem`: expected one of {STEMS}. "
                         f"Received: stem={stem!r}")
    batch_norm_class(batch_norm, BATCH_NORMS)  # a bad value fails before anything is built
    if padding not in PADDINGS:
        raise ValueError(f"Invalid value for argument `padding`: expected one of {PADDINGS}. "
                         f"Received: padding={padding!r}")
    widths = scale_filters(WIDTHS, width, depth_name)
    if batch_norm == "fused":
        require_tensorflow_backend(f"{depth_name}(batch_norm='fused')")
    kind, repeats = SPECS[depth_name]
    data_format = resolve_data_format(data_format)
    ops = _Ops(data_format, batch_norm, weight_decay, padding)

    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if data_format == "channels_first":
        x = layers.Permute((3, 1, 2), name="to_channels_first")(x)
    if stem == "imagenet":
        x = ops.conv(widths[0], 7, 2, "stem_conv")(x)
    else:
        x = ops.conv(widths[0], 3, 1, "stem_conv")(x)
    x = ops.bn("stem_bn")(x)
    x = layers.Activation("relu", name="stem_relu")(x)
    if stem == "imagenet":
        x = ops.max_pool("stem_pool")(x)

    total, index = sum(repeats), 0
    for s, (filters, n) in enumerate(zip(widths, repeats), start=1):
        for b in range(1, n + 1):
            index += 1
            survival = (None if stochastic_depth is None
                        else linear_survival(index, total, stochastic_depth))
            x = _block(x, kind, filters, 2 if (b == 1 and s > 1) else 1, variant, ops,
                       survival, stochastic_depth_mode,
                       None if seed is None else seed * 1000 + index, f"stage{s}_block{b}")
    if variant == "e":
        x = ops.bn("post_bn")(x)
    if variant in ("d", "e"):
        x = layers.Activation("relu", name="post_relu")(x)
    if include_top:
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
        x = layers.Dense(num_classes, activation=classifier_activation,
                         kernel_regularizer=ops.regularizer, name="predictions")(x)
    return keras.Model(inputs, x, name=depth_name)


def _register(depth_name):
    def entry(input_shape=(64, 64, 3), num_classes=200, include_top=True,
              classifier_activation="softmax", variant="a", stem="tiny", width=1.0,
              stochastic_depth=None, stochastic_depth_mode="batch", batch_norm="keras",
              data_format=None, seed=None, weight_decay=None, padding="keras"):
        return build_resnet(depth_name, input_shape, num_classes, include_top,
                            classifier_activation, variant, stem, width, stochastic_depth,
                            stochastic_depth_mode, batch_norm, data_format, seed, weight_decay,
                            padding)

    entry.__name__ = entry.__qualname__ = depth_name
    entry.__doc__ = f"{depth_name}: {SPECS[depth_name][0]} blocks {SPECS[depth_name][1]}."
    return register_model(paper="He et al. 2016; seed 001 (Tiny ImageNet)",
                          input_shape=(64, 64, 3), num_classes=200)(entry)


for _name in SPECS:
    globals()[_name] = _register(_name)
