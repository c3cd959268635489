"""DenseNet Model 1 and Model 2 for Tiny ImageNet (Abai & Rajmalwar 2019, arXiv:1904.10429).

Reproduced as in the original authors' Keras code (ZohebAbai/Tiny-ImageNet-Challenge), which
seed 002 (Chang, Wang & Cao, "DenseNet Models for Tiny ImageNet Classification") rebuilt with
the functional helpers ``add_layer``, ``add_block`` and ``concat_blocks`` kept here.

Model 1 (space-to-depth skips, fully convolutional, 17,927,040 parameters at 200 classes):
    block 1  conv 32, 64, 128, 256, 512 -> maxpool                        -> skip 1
    block 2  conv 64, 128, 256, 512, 1024 -> maxpool; concat[s2d(skip 1), x] -> skip 2
    block 3  conv 32, 128, 256, 512, 1024 -> maxpool; concat[s2d(skip 2), x]
    head     conv 1x1 -> classes (no bias), BN, global average pool, softmax
  Every 3x3 conv has no bias and is followed by BN and ReLU. 59.5% top-1 validation accuracy
  published after the five-stage progressive-resizing protocol (tinynet.papers.densenet_model1).

Model 2 (concatenation skips, 64x64 input, 11,822,920 parameters at 200 classes):
    block 1  conv 32                                                      -> skip 1
    block b  conv n x4; concat[skip, x]; BN; ReLU; maxpool -> skip  (n = 128, 256, 512)
    head     conv 1x1 -> classes, global average pool, softmax (no BN)
  Convs have biases, VarianceScaling initialisation and L2(2e-4) on their kernels (the
  notebook's; ``bias_l2=True``, the builder's default, also on the biases, as tinynet did
  before). 62.73% published after the six-phase CyclicLR protocol.

Both builders take ``width`` (multiplies every hidden filter count; 1.0 is the paper) so tests
and CPU demos can use a small variant (``tinynet.models.width``: one that leaves a layer under
one filter is refused), and ``data_format``: the input is always NHWC (the input
pipeline's layout) and a ``channels_first`` model transposes once at its input.
``bn_momentum`` is every BatchNormalization's moving-average momentum: 0.99 (Keras' default,
which the original code kept) unless a run is too short for it. Moving statistics start at
mean 0 and variance 1 and keep ``momentum ** steps`` of that start, so a CPU demo of a few
dozen steps (``--quick``) would be evaluated with nearly-initial statistics; it passes 0.9.
"""
import keras
from keras import layers

from tinynet.layers import SpaceToDepth
from tinynet.layers.data_format import standardize_data_format
from tinynet.models.registry import register_model
from tinynet.models.width import scale_groups

MODEL1_BLOCKS = ((32, 64, 128, 256, 512), (64, 128, 256, 512, 1024), (32, 128, 256, 512, 1024))
MODEL2_STEM = 32
MODEL2_BLOCKS = ((128,) * 4, (256,) * 4, (512,) * 4)
MODEL2_L2 = 2e-4
BN_MOMENTUM = 0.99  # Keras' default, as in the original code


def _channel_axis(data_format):
    return -1 if data_format == "channels_last" else 1


def add_layer(x, filters, *, name, data_format="channels_last", kernel_size=3, use_bias=False,
              kernel_initializer="glorot_uniform", kernel_regularizer=None,
              bias_regularizer=None, bn_momentum=BN_MOMENTUM):
    """One conv -> BatchNormalization -> ReLU unit, the building brick of both models."""
    x = layers.Conv2D(
        filters, kernel_size, padding="same", use_bias=use_bias, data_format=data_format,
        kernel_initializer=kernel_initializer, kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer if use_bias else None, name=f"{name}_conv",
    )(x)
    x = layers.BatchNormalization(axis=_channel_axis(data_format), momentum=bn_momentum,
                                  name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def add_block(x, filters, *, name, data_format="channels_last", pool=True, **conv_kwargs):
    """A stack of ``add_layer`` units (one per entry of ``filters``), optionally max-pooled 2x2;
    ``conv_kwargs`` go to every ``add_layer``."""
    for i, f in enumerate(filters, start=1):
        x = add_layer(x, f, name=f"{name}_layer{i}", data_format=data_format, **conv_kwargs)
    if pool:
        x = layers.MaxPooling2D(2, data_format=data_format, name=f"{name}_pool")(x)
    return x


def concat_blocks(skip, x, *, name, data_format="channels_last", space_to_depth=None):
    """Concatenates ``[skip, x]`` on channels; ``space_to_depth=b`` first folds ``skip`` by b."""
    if space_to_depth:
        skip = SpaceToDepth(space_to_depth, data_format=data_format, name=f"{name}_s2d")(skip)
    return layers.Concatenate(axis=_channel_axis(data_format), name=f"{name}_concat")([skip, x])


def _input(input_shape, data_format):
    inputs = keras.Input(shape=input_shape, name="image")
    x = inputs
    if data_format == "channels_first":
        x = layers.Permute((3, 1, 2), name="to_channels_first")(x)
    return inputs, x


def _head(x, num_classes, classifier_activation, data_format, **conv_kwargs):
    x = layers.Conv2D(num_classes, 1, data_format=data_format, name="head_conv", **conv_kwargs)(x)
    return x


def build_densenet_model1(input_shape=(None, None, 3), num_classes=200, include_top=True,
                          classifier_activation="softmax", width=1.0, data_format=None,
                          name="densenet_model1", bn_momentum=BN_MOMENTUM):
    """Model 1 (see module docstring). ``include_top=False`` returns the last concatenation."""
    blocks = scale_groups(MODEL1_BLOCKS, width, name)
    data_format = standardize_data_format(data_format)
    inputs, x = _input(input_shape, data_format)
    skip = None
    for b, filters in enumerate(blocks, start=1):
        x = add_block(x, filters, name=f"block{b}", data_format=data_format,
                      bn_momentum=bn_momentum)
        if skip is not None:
            x = concat_blocks(skip, x, name=f"block{b}", data_format=data_format,
                              space_to_depth=2)
        skip = x
    if include_top:
        x = _head(x, num_classes, classifier_activation, data_format, use_bias=False)
        x = layers.BatchNormalization(axis=_channel_axis(data_format), momentum=bn_momentum,
                                      name="head_bn")(x)
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
        x = layers.Activation(classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def build_densenet_model2(input_shape=(64, 64, 3), num_classes=200, include_top=True,
                          classifier_activation="softmax", width=1.0, data_format=None,
                          l2=MODEL2_L2, name="densenet_model2", bn_momentum=BN_MOMENTUM,
                          bias_l2=True):
    """Model 2 (see module docstring). ``l2`` is the L2 factor on every conv kernel, and on
    every bias with ``bias_l2``: the builder's default, which tinynet used before the notebook
    was compared; the notebook puts none on biases (cell 16), and the paper's protocol passes
    ``bias_l2=False``."""
    (stem,), *blocks = scale_groups(((MODEL2_STEM,),) + MODEL2_BLOCKS, width, name)
    data_format = standardize_data_format(data_format)
    regularizer = keras.regularizers.L2(l2) if l2 else None
    conv = dict(use_bias=True, kernel_initializer="VarianceScaling",
                kernel_regularizer=regularizer,
                bias_regularizer=regularizer if bias_l2 else None)
    axis = _channel_axis(data_format)
    inputs, x = _input(input_shape, data_format)
    x = add_layer(x, stem, name="block1_layer1", data_format=data_format,
                  bn_momentum=bn_momentum, **conv)
    skip = x
    for b, filters in enumerate(blocks, start=2):
        x = add_block(skip, filters, name=f"block{b}", data_format=data_format, pool=False,
                      bn_momentum=bn_momentum, **conv)
        x = concat_blocks(skip, x, name=f"block{b}", data_format=data_format)
        x = layers.BatchNormalization(axis=axis, momentum=bn_momentum,
                                      name=f"block{b}_concat_bn")(x)
        x = layers.Activation("relu", name=f"block{b}_concat_relu")(x)
        x = layers.MaxPooling2D(2, data_format=data_format, name=f"block{b}_pool")(x)
        skip = x
    if include_top:
        x = _head(x, num_classes, classifier_activation, data_format,
                  use_bias=True, kernel_initializer=conv["kernel_initializer"],
                  kernel_regularizer=conv["kernel_regularizer"],
                  bias_regularizer=conv["bias_regularizer"])
        x = layers.GlobalAveragePooling2D(data_format=data_format, name="avg_pool")(x)
        x = layers.Activation(classifier_activation, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


@register_model(paper="Abai & Rajmalwar 2019 (seed 002), DenseNet Model 1",
                input_shape=(None, None, 3), num_classes=200,
                total_params=17_927_040, trainable_params=17_916_784)
def densenet_model1(input_shape=(None, None, 3), num_classes=200, include_top=True,
                    classifier_activation="softmax", width=1.0, data_format=None,
                    bn_momentum=BN_MOMENTUM):
    return build_densenet_model1(input_shape, num_classes, include_top, classifier_activation,
                                 width, data_format, bn_momentum=bn_momentum)


@register_model(paper="Abai & Rajmalwar 2019 (seed 002), DenseNet Model 2",
                input_shape=(64, 64, 3), num_classes=200,
                total_params=11_822_920, trainable_params=11_812_680)
def densenet_model2(input_shape=(64, 64, 3), num_classes=200, include_top=True,
                    classifier_activation="softmax", width=1.0, data_format=None, l2=MODEL2_L2,
                    bn_momentum=BN_MOMENTUM, bias_l2=True):
    return build_densenet_model2(input_shape, num_classes, include_top, classifier_activation,
                                 width, data_format, l2, bn_momentum=bn_momentum,
                                 bias_l2=bias_l2)
