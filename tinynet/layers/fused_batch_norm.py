"""Batch normalization on TensorFlow's fused kernel (``FusedBatchNormV3``), as seed 001 used
("fused batch norm") for speed: one kernel computes the batch statistics and normalizes.

The layer is ``keras.layers.BatchNormalization`` with the same variables, arguments and config
(so weights move freely between the two); only the computation of 4-D inputs changes. The
fused kernel returns the *unbiased* batch variance; Keras updates its moving variance with the
biased one, so it is rescaled by (n - 1) / n to keep the two layers equal within float
tolerance in training and in inference.

The kernel is TensorFlow's: under another Keras backend (``KERAS_BACKEND=jax`` or ``torch``)
constructing the layer -- building a model with ``batch_norm="fused"`` or loading one that has
it -- raises a ``TinynetError`` that says so and names the replacement,
``keras.layers.BatchNormalization`` (``batch_norm="keras"``, ``fused=False``), whose variables
are the same. ``tensorflow`` is imported only inside ``call`` (TensorFlow backend only).
"""
import keras

from tinynet.errors import TinynetError


def require_tensorflow_backend(what="FusedBatchNormalization"):
    """Raises ``TinynetError`` unless Keras runs on TensorFlow (the fused kernel is TF's)."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise TinynetError(
            f"{what}: the fused batch norm needs the TensorFlow backend (TensorFlow's "
            f"FusedBatchNormV3 kernel), but Keras runs on {backend!r} (KERAS_BACKEND); use the "
            f"Keras BatchNormalization instead (batch_norm='keras', i.e. fused=False: the same "
            f"variables and arithmetic, weights interchangeable)")


@keras.saving.register_keras_serializable(package="tinynet")
class FusedBatchNormalization(keras.layers.BatchNormalization):
    """``BatchNormalization`` over the channel axis of a 4-D tensor via ``FusedBatchNormV3``.

    ``axis`` must be the channel axis of NHWC (-1 or 3) or NCHW (1) input.
    """

    def __init__(self, axis=-1, **kwargs):
        require_tensorflow_backend()
        super().__init__(axis=axis, **kwargs)
        if axis not in (-1, 1, 3):
            raise ValueError(f"FusedBatchNormalization needs the channel axis of a 4-D tensor "
                             f"(-1, 3 for NHWC or 1 for NCHW). Received: axis={axis!r}")

    def call(self, inputs, training=None, mask=None):
        if len(inputs.shape) != 4:
            return super().call(inputs, training=training, mask=mask)
        import tensorflow as tf

        fmt = "NCHW" if self.axis in (1, [1]) else "NHWC"
        scale = self.gamma if self.scale else tf.ones_like(self.moving_mean)
        offset = self.beta if self.center else tf.zeros_like(self.moving_mean)
        x = tf.cast(inputs, tf.float32) if inputs.dtype != tf.float16 else inputs
        if training and self.trainable:
            y, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=scale, offset=offset, mean=tf.zeros([0]), variance=tf.zeros([0]),
                epsilon=self.epsilon, data_format=fmt, is_training=True)
            shape = tf.shape(x)
            n = tf.cast(tf.reduce_prod(shape) // shape[1 if fmt == "NCHW" else 3], tf.float32)
            biased = variance * (n - 1.0) / n
            m = self.momentum
            self.moving_mean.assign(self.moving_mean * m + mean * (1.0 - m))
            self.moving_variance.assign(self.moving_variance * m + biased * (1.0 - m))
        else:
            y, *_ = tf.raw_ops.FusedBatchNormV3(
                x=x, scale=scale, offset=offset, mean=self.moving_mean,
                variance=self.moving_variance, epsilon=self.epsilon, data_format=fmt,
                is_training=False)
        return tf.cast(y, self.compute_dtype)
