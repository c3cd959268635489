"""BatchNormalization whose moving variance follows PyTorch and Torch7: the unbiased batch
variance.

In training both frameworks normalise a batch by its *biased* variance (divide by n, the number
of values per channel: batch x height x width). They differ in the running estimate kept for
inference: ``torch.nn.BatchNorm2d`` (torch/nn/modules/batchnorm.py, ``F.batch_norm``) and Torch7's
``nn.SpatialBatchNormalization`` (THNN's BatchNormalization.c: ``unbiased_var = sum / (n - 1)``)
update it with the *unbiased* variance, ``var · n / (n - 1)``, while
``keras.layers.BatchNormalization`` uses the biased one. With n = 128 x 32 x 32 the factor is
1 + 7.6e-6; with the 4 x 4 maps of a late stage and small batches it is larger (1 + 4.9e-4 at
128 x 4 x 4) -- enough that a model trained by the original code and its Keras reproduction
carry different statistics into evaluation.

``TorchBatchNormalization`` is ``keras.layers.BatchNormalization`` (same arguments, variables and
config, so weights move between the two) with that one update changed. It is what
``batch_norm="torch"`` builds in the PyTorch- and Torch-origin model families (seed 004's design
space, Multi-ResNet, the torchvision-exact ResNets). Under ``synchronized=True`` n counts the
values of every replica, as ``torch.nn.SyncBatchNorm`` does. Renormalisation and masks have no
PyTorch counterpart and are refused.
"""
import keras
from keras import ops

__all__ = ["TorchBatchNormalization"]


def _replicas_in_sync():
    """How many replicas a synchronized batch spans (TensorFlow's distribution strategy)."""
    if keras.backend.backend() != "tensorflow":
        return 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return context.num_replicas_in_sync if context is not None else 1


@keras.saving.register_keras_serializable(package="tinynet")
class TorchBatchNormalization(keras.layers.BatchNormalization):
    """``keras.layers.BatchNormalization`` with PyTorch's/Torch7's moving variance update,
    ``moving_variance = momentum · moving_variance + (1 - momentum) · var · n / (n - 1)``
    (Keras' ``momentum`` is 1 - PyTorch's)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.renorm:
            raise ValueError("TorchBatchNormalization has no renormalisation (PyTorch's "
                             "BatchNorm has none); use keras.layers.BatchNormalization")

    def call(self, inputs, training=None, mask=None):
        if mask is not None:
            raise ValueError("TorchBatchNormalization takes no mask (PyTorch's BatchNorm has "
                             "none); use keras.layers.BatchNormalization")
        if not (training and self.trainable):
            return super().call(inputs, training=training)
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, None)
        n = ops.divide(ops.cast(ops.size(x), x.dtype), x.shape[self.axis])
        if self.synchronized:
            n = ops.multiply(n, _replicas_in_sync())
        unbiased = ops.multiply(variance, ops.divide(n, ops.maximum(ops.subtract(n, 1.0), 1.0)))
        momentum = self.momentum
        self.moving_mean.assign(ops.add(
            ops.multiply(ops.cast(self.moving_mean, x.dtype), momentum),
            ops.multiply(mean, 1.0 - momentum)))
        self.moving_variance.assign(ops.add(
            ops.multiply(ops.cast(self.moving_variance, x.dtype), momentum),
            ops.multiply(unbiased, 1.0 - momentum)))
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else None
        beta = ops.cast(self.beta, x.dtype) if self.center else None
        outputs = ops.batch_normalization(x=x, mean=mean, variance=variance, axis=self.axis,
                                          offset=beta, scale=gamma, epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)
