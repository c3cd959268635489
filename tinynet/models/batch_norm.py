"""The ``batch_norm`` argument of the model builders: which BatchNormalization layer they use.

``"keras"``: ``keras.layers.BatchNormalization`` (the moving variance follows the biased batch
variance); ``"torch"``: ``tinynet.layers.TorchBatchNormalization`` (the unbiased one, as PyTorch
and Torch7 do: the default of the papers whose original code was theirs); ``"fused"``:
``tinynet.layers.FusedBatchNormalization`` (TensorFlow's fused kernel, Keras' semantics; the
torchvision-layout ResNets only). All three have the same variables and config, so weights move
between them as arrays (``set_weights``, tinynet's checkpoints); a ``.weights.h5`` file does
not, as Keras 3 names its groups by layer class. A builder's own default stays ``"keras"``: a
model recorded without the argument was built with it.
"""
from keras import layers

from tinynet.layers import FusedBatchNormalization, TorchBatchNormalization

BATCH_NORM_CLASSES = {"keras": layers.BatchNormalization, "torch": TorchBatchNormalization,
                      "fused": FusedBatchNormalization}


def batch_norm_class(batch_norm, choices=("keras", "torch")):
    """The layer class ``batch_norm`` names; a ``ValueError`` for a value outside ``choices``."""
    if batch_norm not in choices:
        raise ValueError(f"Invalid value for argument `batch_norm`: expected one of "
                         f"{tuple(choices)}. Received: batch_norm={batch_norm!r}")
    return BATCH_NORM_CLASSES[batch_norm]
