"""SpaceToDepth: the skip connection of DenseNet Model 1 (Abai & Rajmalwar 2019, seed 002).

Model 1 concatenates a block's input skip with the next block's pooled output; the skip has
twice the spatial size, so it is folded with ``space_to_depth(block_size=2)`` (each 2x2 patch
becomes 4x the channels). The original code used ``tf.nn.space_to_depth`` inside a Lambda layer;
this layer is the same operation, serialisable, and works in both data formats. Channel order
is TensorFlow's: output channel ``(dy * block + dx) * C + c``.
"""
import keras
import tensorflow as tf

from tinynet.layers.data_format import standardize_data_format


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
        if self.data_format == "channels_last":
            return tf.nn.space_to_depth(inputs, self.block_size, data_format="NHWC")
        # TensorFlow's CPU kernel only supports NHWC; transposing keeps one definition of the
        # channel order for both formats, and XLA fuses the transposes on GPU.
        x = tf.transpose(inputs, [0, 2, 3, 1])
        x = tf.nn.space_to_depth(x, self.block_size, data_format="NHWC")
        return tf.transpose(x, [0, 3, 1, 2])

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
