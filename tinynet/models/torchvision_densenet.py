"""torchvision's DenseNet-121 (Huang et al. 2017), layer for layer, in Keras 3.

Reproduces ``torchvision.models.densenet121`` (torchvision/models/densenet.py: ``DenseNet``
with ``growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64, bn_size=4,
drop_rate=0``), the ImageNet backbone DenResNet (seed 000) fine-tuned::

    features.conv0   7x7/2 conv, 64 filters, padding 3, no bias
    features.norm0   BN, then relu0 and pool0 (3x3/2 max pool, padding 1)
    denseblock1..4   6, 12, 24, 16 dense layers; layer j: norm1 relu1 conv1 (1x1, 128 = bn_size
                     x growth) norm2 relu2 conv2 (3x3, padding 1, 32 = growth); its 32 maps are
                     concatenated after the block's input and the earlier layers' maps
    transition1..3   norm relu conv (1x1, half the channels) pool (2x2/2 average pool)
    features.norm5   BN
    head             ReLU, global average pool, classifier (Linear 1024 -> classes)

Every conv has no bias; every BN has epsilon 1e-5 and PyTorch momentum 0.1 (Keras 0.9). Where
PyTorch pads a conv or pool, an explicit ``ZeroPadding2D`` feeds a ``valid`` one, so every
feature map equals torchvision's (Keras' ``same`` padding of a stride-2 layer pads one pixel
more at the bottom/right and none at the top/left instead). Zero padding before the max pool
equals PyTorch's implicit -inf padding because its input is a ReLU output (>= 0).

Layer names mirror torchvision's ``state_dict`` keys with ``.`` -> ``_`` (``features.
denseblock1.denselayer1.norm1`` -> ``features_denseblock1_denselayer1_norm1``, ``classifier``),
so ``tinynet.models.torchvision_weights`` converts a torchvision checkpoint by a name transform.

Parameters at 1000 classes: 7,978,856 trainable (= torchvision's ``densenet121``), 8,062,504
in all (BN moving statistics); the backbone without ``classifier`` has 6,953,856 trainable.

Initialisation (it only matters when training from scratch) is torchvision's: convs
``kaiming_normal_`` (untruncated normal, std sqrt(2 / fan_in)), BN gamma 1 and beta 0, the
classifier's bias 0 and its kernel PyTorch's default ``nn.Linear`` init (uniform in
+-1 / sqrt(fan_in)).

``width`` multiplies the initial features, the growth rate and so the bottleneck width
(``tinynet.models.width``, as every tinynet family takes it: small copies for CPU tests);
1.0 is torchvision's model, the only width its checkpoints fit.

``batch_norm``: ``"torch"`` (default: ``tinynet.layers.TorchBatchNormalization``, PyTorch's
unbiased moving variance, as the checkpoint was trained) or ``"keras"``
(``tinynet.models.batch_norm``). The model is channels last; its input is NHWC.

Checked against torchvision in float64 by tests/test_torchvision_weights.py (fixture weights
converted from a torchvision state dict: logits equal to 2e-15 relative).
"""
import keras
from keras import layers

from tinynet.models.batch_norm import batch_norm_class
from tinynet.models.registry import register_model
from tinynet.models.width import scale_filters

BLOCK_CONFIG = (6, 12, 24, 16)
GROWTH_RATE = 32
BN_SIZE = 4
NUM_INIT_FEATURES = 64
BATCH_NORMS = ("keras", "torch")
TORCHVISION_PARAMS = 7_978_856  # torchvision densenet121(num_classes=1000), all trainable
TORCHVISION_BACKBONE_PARAMS = 6_953_856  # ... without classifier
TOTAL_PARAMS = 8_062_504  # this model at 1000 classes, BN moving statistics included


def _conv_init():
    """torch.nn.init.kaiming_normal_(w): mode fan_in, gain sqrt(2), untruncated."""
    return keras.initializers.VarianceScaling(2.0, "fan_in", "untruncated_normal")


def _linear_init():
    """nn.Linear's default kaiming_uniform_(w, a=sqrt(5)): uniform in +-1 / sqrt(fan_in)."""
    return keras.initializers.VarianceScaling(1.0 / 3.0, "fan_in", "uniform")


class _Ops:
    """Layer factories bound to one model's batch-norm class and widths."""

    def __init__(self, batch_norm, width, name):
        self.bn_class = batch_norm_class(batch_norm, BATCH_NORMS)
        self.init_features, self.growth = scale_filters((NUM_INIT_FEATURES, GROWTH_RATE),
                                                        width, name)

    def bn(self, name):
        return self.bn_class(axis=-1, epsilon=1e-5, momentum=0.9, name=name)

    @staticmethod
    def conv(x, filters, kernel, stride, padding, name):
        """A bias-free conv with PyTorch's symmetric ``padding`` made explicit."""
        if padding:
            x = layers.ZeroPadding2D(padding, name=f"{name}_pad")(x)
        return layers.Conv2D(filters, kernel, strides=stride, padding="valid", use_bias=False,
                             kernel_initializer=_conv_init(), name=name)(x)


def _dense_layer(x, ops, name):
    """torchvision's ``_DenseLayer``: BN-ReLU-1x1 conv-BN-ReLU-3x3 conv, concatenated."""
    y = ops.bn(f"{name}_norm1")(x)
    y = layers.Activation("relu", name=f"{name}_relu1")(y)
    y = ops.conv(y, BN_SIZE * ops.growth, 1, 1, 0, f"{name}_conv1")
    y = ops.bn(f"{name}_norm2")(y)
    y = layers.Activation("relu", name=f"{name}_relu2")(y)
    y = ops.conv(y, ops.growth, 3, 1, 1, f"{name}_conv2")
    return layers.Concatenate(axis=-1, name=f"{name}_concat")([x, y])


def _transition(x, ops, name):
    """torchvision's ``_Transition``: BN-ReLU-1x1 conv (half the channels)-2x2/2 avg pool."""
    x = ops.bn(f"{name}_norm")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = ops.conv(x, x.shape[-1] // 2, 1, 1, 0, f"{name}_conv")
    return layers.AveragePooling2D(2, strides=2, padding="valid", name=f"{name}_pool")(x)


def build_densenet121(input_shape=(224, 224, 3), num_classes=1000, include_top=True,
                      batch_norm="torch", classifier_activation="softmax", name="densenet121",
                      width=1.0):
    """torchvision's ``densenet121`` (module docstring). ``include_top=False`` returns the
    ``features`` output (after ``norm5``, before the final ReLU), as torchvision's
    ``model.features``; ``classifier_activation=None`` gives logits, as torchvision's
    ``forward``. ``input_shape`` is (height, width, 3); at least 32 px (four halvings before
    the 2x2/2 pools run out of pixels). ``width``: module docstring."""
    ops = _Ops(batch_norm, width, name)
    inputs = keras.Input(shape=input_shape, name="image")
    x = ops.conv(inputs, ops.init_features, 7, 2, 3, "features_conv0")
    x = ops.bn("features_norm0")(x)
    x = layers.Activation("relu", name="features_relu0")(x)
    x = layers.ZeroPadding2D(1, name="features_pool0_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, padding="valid", name="features_pool0")(x)
    for b, repeats in enumerate(BLOCK_CONFIG, start=1):
        for j in range(1, repeats + 1):
            x = _dense_layer(x, ops, f"features_denseblock{b}_denselayer{j}")
        if b < len(BLOCK_CONFIG):
            x = _transition(x, ops, f"features_transition{b}")
    x = ops.bn("features_norm5")(x)
    if include_top:
        x = layers.Activation("relu", name="relu")(x)
        x = layers.GlobalAveragePooling2D(name="avgpool")(x)
        x = layers.Dense(num_classes, activation=classifier_activation,
                         kernel_initializer=_linear_init(),
                         bias_initializer="zeros", name="classifier")(x)
    return keras.Model(inputs, x, name=name)


@register_model(paper="Huang et al. 2017; torchvision's densenet121 (DenResNet, seed 000)",
                input_shape=(224, 224, 3), num_classes=1000, total_params=TOTAL_PARAMS,
                trainable_params=TORCHVISION_PARAMS,
                params_note="trainable count = torchvision's densenet121 (7,978,856)")
def torchvision_densenet121(input_shape=(224, 224, 3), num_classes=1000, include_top=True,
                            batch_norm="torch", classifier_activation="softmax", width=1.0):
    """torchvision's DenseNet-121, layer names = its state_dict keys (``build_densenet121``)."""
    return build_densenet121(input_shape, num_classes, include_top, batch_norm,
                             classifier_activation, name="torchvision_densenet121", width=width)
