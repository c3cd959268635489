"""ImageNetPreprocessing: keras.applications' ``preprocess_input`` as a serialisable layer.

DenResNet (seed 000) fine-tunes ImageNet-pretrained backbones, each of which expects the input
normalisation it was trained with. ``keras.applications`` offers it as a function per family
(``resnet``: ``caffe``; ``resnet_v2``: ``tf``; ``densenet``: ``torch``, which is torchvision's
normalisation), applied to images on the 0-255 scale outside the model. This layer applies the
same arithmetic inside the model, to images on tinynet's 0-1 scale (``x / 255``), so that it
runs on the accelerator and a saved model carries its own preprocessing (no ``Lambda``):

    caffe  RGB -> BGR, then minus [103.939, 116.779, 123.68] (BGR means, 0-255 scale)
    tf     x / 127.5 - 1 on the 0-255 scale, i.e. 2 x - 1 on the 0-1 scale
    torch  (x - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225] on the 0-1 scale

``ImageNetPreprocessing(mode)(x)`` equals ``keras.applications.imagenet_utils.preprocess_input(
x * 255, mode=mode)`` to float32 rounding (tests check 1e-5).
"""
import keras
import numpy as np
from keras import ops

from tinynet.layers.data_format import standardize_data_format

MODES = ("caffe", "tf", "torch")
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
TORCH_MEAN = (0.485, 0.456, 0.406)
TORCH_STD = (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="tinynet")
class ImageNetPreprocessing(keras.layers.Layer):
    """Normalises ``x / 255`` images (0-1 scale, RGB) the way ``mode`` expects.

    Args:
        mode: ``"caffe"``, ``"tf"`` or ``"torch"``, as in
            ``keras.applications.imagenet_utils.preprocess_input``.
        data_format: ``"channels_last"`` or ``"channels_first"`` (where the 3 colour channels
            are); defaults to ``keras.config.image_data_format()``.
    """

    def __init__(self, mode="torch", data_format=None, **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Invalid value for argument `mode`: expected one of {MODES}. "
                             f"Received: mode={mode!r}")
        self.mode = mode
        self.data_format = standardize_data_format(data_format)

    def _channel_constant(self, values, ndim, dtype):
        shape = [1] * ndim
        shape[-1 if self.data_format == "channels_last" else 1] = 3
        return ops.reshape(ops.convert_to_tensor(np.asarray(values), dtype=dtype), shape)

    def call(self, inputs):
        x = ops.cast(inputs, self.compute_dtype)
        ndim = len(x.shape)
        if self.mode == "tf":
            return x * 2.0 - 1.0
        if self.mode == "torch":
            mean = self._channel_constant(TORCH_MEAN, ndim, x.dtype)
            std = self._channel_constant(TORCH_STD, ndim, x.dtype)
            return (x - mean) / std
        axis = -1 if self.data_format == "channels_last" else 1
        x = ops.flip(x * 255.0, axis=axis)  # RGB -> BGR
        return x - self._channel_constant(CAFFE_MEAN_BGR, ndim, x.dtype)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update({"mode": self.mode, "data_format": self.data_format})
        return config
