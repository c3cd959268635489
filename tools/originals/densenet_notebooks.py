"""Seed 002's original models, DenseNet Model 1 and Model 2 (Abai & Rajmalwar 2019), transliterated
line by line from the authors' Keras 2 notebooks to Keras 3, so that tinynet's port
(``tinynet/models/densenet.py``) can be checked against the code that produced the paper's
numbers (``tools/originals/check_densenet_notebooks.py``).

Source: https://github.com/ZohebAbai/Tiny-ImageNet-Challenge at commit
cc39f57533e11a80e36f85f276b8d257cac6425d (the repository's HEAD, 2020-06-02, "Update README.md";
both notebooks are unchanged since c036244b2ac2c1168a0715341bf685b28c2dc756, 2019-04-24). The
repository is MIT-licensed (its LICENSE file, reproduced below as the license requires).

Cells transliterated ("cells[i]" is the i-th entry, from 0, of the notebook's JSON ``cells`` list;
"line" a line of that cell's source, from 1):

* ``TinyImageNet_Network_1.ipynb`` (Model 1): cells[3] lines 40-44 (``num_classes = 200``,
  ``img_channels = 3``; ``img_height, img_width = 32, 32`` there is not used by the model, whose
  input is ``(None, None, img_channels)``), cells[4] (``space_to_depth_x2``), cells[5] lines 1-94
  (the model), cells[14] line 1 (``Model(...)``). The committed cells[5] line 81 reads
  ``layer19 = MaxPooling2D(pool_size=(2, 2))(layer18)x``, a SyntaxError as stored; the cell's
  stored output and the ``model.summary()`` output of cells[14] (``max_pooling2d_3`` between
  ``conv_18``'s block and ``concatenate_2``; 17,927,040 parameters) show that the cell that ran
  had no ``x``, so it is transliterated without it.
* ``TinyImageNet_Network_2.ipynb`` (Model 2): cells[7] lines 34-40 (``img_height = 64``,
  ``img_width = 64``, ``channels = 3``, ``num_classes = 200``), cells[16] lines 1-91 (the model),
  cells[17] line 2 (``Model(...)``).

The filter counts are literals in the cells and are kept; the sizes the cells take from variables
are the builders' arguments, with the notebooks' values as defaults (Model 1: ``num_classes``,
``img_channels``; Model 2: ``img_height``, ``img_width``, ``channels``, ``num_classes``; Model 2
needs height and width divisible by 8, Model 1 any input divisible by 8).

Keras 2 -> Keras 3 (each also noted where it occurs). The notebooks ran Keras 2.2.4 on the
TensorFlow backend (TensorFlow 1.x; Network_2 cells[6] output: "Requirement already satisfied:
keras ... (2.2.4)"):

* ``from keras.layers.merge import concatenate``: the module is gone; ``keras.layers.concatenate``
  is the same function (``Concatenate(axis=-1)``).
* ``tf.space_to_depth`` (TF 1.x) is ``tf.nn.space_to_depth`` in TF 2 (the same ``SpaceToDepth``
  op). It is TensorFlow's, so the transliteration of Model 1 needs the TensorFlow backend.
* ``Model(inputs=[input], outputs=[output])``: Keras 2 unwrapped one-element lists; Keras 3 keeps
  an input list as the model's input structure (a bare tensor then warns), so the tensors are
  passed without the lists; the model computes the same.
* ``kernel_initializer="VarianceScaling"``: Keras 2.2.4's defaults (scale 1, ``fan_in``,
  ``distribution='normal'``, which there is a truncated normal of stddev
  ``sqrt(scale / fan_in) / 0.8796...``, keras/initializers.py lines 180-214) are Keras 3's
  (``distribution='truncated_normal'``, the same stddev): the same distribution, not the same
  draws. ``l2(2e-4)`` is ``2e-4 * sum(w ** 2)`` in both.
* ``BatchNormalization()``: the same arguments, defaults (momentum 0.99, epsilon 1e-3, gamma 1,
  beta 0, moving mean 0, moving variance 1) and the same output in both modes. The *moving
  statistics* are updated differently: Keras 2.2.4 on TensorFlow (keras/layers/normalization.py
  lines 183-200, keras/backend/tensorflow_backend.py lines 1002-1014 and 1803-1874) takes the
  variance from ``tf.nn.fused_batch_norm``, which already applies Bessel's correction
  ``n / (n - 1)``, multiplies it by ``n / (n - (1 + epsilon))`` a second time, and updates both
  statistics with ``assign_moving_average(..., zero_debias=True)``: a zero-debiased average whose
  shadow variables (``biased``, ``local_step``) are not layer weights, so they start at zero in
  every new graph, i.e. again after each ``load_model`` between the notebooks' stages, and the
  moving statistics then forget their loaded (or initial) values at the first training batch.
  Keras 3 updates ``m * moving + (1 - m) * batch`` with the biased batch variance. The builders
  use Keras 3's ``BatchNormalization`` unless ``keras2_bn=True``, which puts
  ``Keras224BatchNormalization`` (below) in every place, the Keras 2.2.4 update rule.
* The notebooks' loss, ``model.compile(loss='categorical_crossentropy')`` (Network_1 cells[15],
  Network_2 cells[18]), is Keras 2.2.4's ``K.categorical_crossentropy`` on probabilities:
  normalise the rows, clip to ``[1e-7, 1 - 1e-7]``, ``-sum(t * log p)`` (keras/backend/
  tensorflow_backend.py lines 3289-3295), averaged over the batch, plus ``sum(model.losses)``.
  Keras 3 on TensorFlow may take the softmax's logits instead (no clip). That is the training
  code's, not the model's; ``check_densenet_notebooks.keras224_categorical_crossentropy`` is the
  Keras 2.2.4 formula.

Added here (tinynet's, not the notebooks'): ``Keras224BatchNormalization`` and ``copy_weights``.

The original's license:

    MIT License

    Copyright (c) 2019 Zoheb Abai

    Permission is hereby granted, free of charge, to any person obtaining a copy
    of this software and associated documentation files (the "Software"), to deal
    in the Software without restriction, including without limitation the rights
    to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
    copies of the Software, and to permit persons to whom the Software is
    furnished to do so, subject to the following conditions:

    The above copyright notice and this permission notice shall be included in all
    copies or substantial portions of the Software.

    THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
    IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
    FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
    AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
    LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
    OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
    SOFTWARE.
"""
import keras
from keras import ops
from keras.layers import (Activation, BatchNormalization, Conv2D, GlobalAveragePooling2D, Input,
                          Lambda, MaxPooling2D, concatenate)
from keras.models import Model
from keras.regularizers import l2

REPOSITORY = "https://github.com/ZohebAbai/Tiny-ImageNet-Challenge"
COMMIT = "cc39f57533e11a80e36f85f276b8d257cac6425d"
# model.summary() as printed by the notebooks (Keras 2.2.4, 200 classes): total, trainable and
# non-trainable parameters. Network_1 cells[14] output; Network_2 cells[17] output.
MODEL1_SUMMARY = (17_927_040, 17_916_784, 10_256)
MODEL2_SUMMARY = (11_822_920, 11_812_680, 10_240)


@keras.saving.register_keras_serializable(package="tinynet_originals")
class Keras224BatchNormalization(BatchNormalization):
    """``BatchNormalization`` whose training-mode moving-statistics update is Keras 2.2.4's on
    the TensorFlow backend with a 4-D input (the fused path), as the notebooks ran it.

    Keras 2.2.4, keras/layers/normalization.py ``BatchNormalization.call`` (lines 183-200):
    ``normed, mean, variance = K.normalize_batch_in_training(...)``; for 4-D input that is
    ``tf.nn.fused_batch_norm`` (tensorflow_backend.py lines 1857-1864, 1803-1839), which
    normalises with the biased batch variance and returns the unbiased one,
    ``variance * n / (n - 1)``; then ``variance *= n / (n - (1.0 + epsilon))`` and
    ``K.moving_average_update(moving, value, momentum)`` for both statistics, i.e.
    ``tf.train.assign_moving_average(moving, value, momentum, zero_debias=True)``
    (tensorflow_backend.py lines 1002-1014): ``biased -= (biased - value) * (1 - momentum)``,
    ``local_step += 1``, ``moving = biased / (1 - momentum ** local_step)``.

    ``biased_mean``, ``biased_variance`` and ``local_step`` are TensorFlow's zero-debias shadow
    variables, here layer weights (TensorFlow created them outside the Keras layer, so Keras
    2.2.4's parameter counts leave them out: ``SHADOW_WEIGHTS`` names them). They start at
    zero, as in a fresh TensorFlow graph (also after each ``load_model``), and ``copy_weights``
    leaves them at zero. The output in both modes, and everything in inference, is
    ``BatchNormalization``'s.
    """

    SHADOW_WEIGHTS = ("biased_mean", "biased_variance", "local_step")

    def build(self, input_shape):
        super().build(input_shape)
        shape = (input_shape[self.axis],)
        self.biased_mean = self.add_weight(shape=shape, name="biased_mean", initializer="zeros",
                                           trainable=False, autocast=False)
        self.biased_variance = self.add_weight(shape=shape, name="biased_variance",
                                               initializer="zeros", trainable=False,
                                               autocast=False)
        self.local_step = self.add_weight(shape=(), name="local_step", initializer="zeros",
                                          trainable=False, autocast=False)

    def call(self, inputs, training=None, mask=None):
        if not (training and self.trainable):
            return super().call(inputs, training=training, mask=mask)
        if mask is not None or self.renorm:
            raise ValueError("Keras224BatchNormalization: Keras 2.2.4's update has no mask and "
                             "no renorm")
        x = ops.cast(inputs, keras.backend.result_type(inputs.dtype, "float32"))
        mean, variance = self._moments(x, None)  # the biased batch variance, as normalised
        n = ops.cast(ops.size(x), x.dtype) / ops.cast(ops.size(mean), x.dtype)
        fused_variance = variance * (n / (n - 1.0))  # tf.nn.fused_batch_norm's batch variance
        value = fused_variance * (n / (n - (1.0 + self.epsilon)))  # normalization.py line 193
        decay = 1.0 - self.momentum  # assign_moving_average's ``decay = 1.0 - decay``
        step = ops.cast(self.local_step, x.dtype) + 1.0
        bias_factor = 1.0 - ops.power(1.0 - decay, step)
        for moving, biased, batch in ((self.moving_mean, self.biased_mean, mean),
                                      (self.moving_variance, self.biased_variance, value)):
            updated = ops.cast(biased, x.dtype) - (ops.cast(biased, x.dtype) - batch) * decay
            biased.assign(ops.cast(updated, biased.dtype))
            moving.assign(ops.cast(updated / bias_factor, moving.dtype))
        self.local_step.assign(ops.cast(step, self.local_step.dtype))
        gamma = ops.cast(self.gamma, x.dtype) if self.scale else None
        beta = ops.cast(self.beta, x.dtype) if self.center else None
        outputs = ops.batch_normalization(x=x, mean=mean, variance=variance, axis=self.axis,
                                          offset=beta, scale=gamma, epsilon=self.epsilon)
        return ops.cast(outputs, self.compute_dtype)


# TinyImageNet_Network_1.ipynb cells[4] lines 1-3. Keras 2 / TF 1: ``tf.space_to_depth``; TF 2
# names the same op ``tf.nn.space_to_depth``.
def space_to_depth_x2(x):
    import tensorflow as tf
    return tf.nn.space_to_depth(x, block_size=2)


def model1_original(num_classes=200, img_channels=3, keras2_bn=False):
    """DenseNet Model 1, TinyImageNet_Network_1.ipynb cells[5] lines 1-94 and cells[14] line 1
    (``num_classes``, ``img_channels``: cells[3] lines 40, 44). ``keras2_bn=True``: every
    ``BatchNormalization`` is ``Keras224BatchNormalization`` (Keras 2.2.4's moving-statistics
    update; see the module docstring)."""
    bn = Keras224BatchNormalization if keras2_bn else BatchNormalization
    # cells[5] line 1. Keras 2 ``Input`` and Keras 3 ``keras.Input`` (keras.layers.Input) agree.
    input = Input(shape=(None, None, img_channels))

    # Block 1: cells[5] lines 3-27
    layer1 = Conv2D(32, (3, 3), strides=(1, 1), padding='same', name='conv_1',
                    use_bias=False)(input)
    layer1 = bn(name='norm_1')(layer1)
    layer1 = Activation("relu")(layer1)

    layer2 = Conv2D(64, (3, 3), strides=(1, 1), padding='same', name='conv_2',
                    use_bias=False)(layer1)
    layer2 = bn(name='norm_2')(layer2)
    layer2 = Activation("relu")(layer2)

    layer3 = Conv2D(128, (3, 3), strides=(1, 1), padding='same', name='conv_3',
                    use_bias=False)(layer2)
    layer3 = bn(name='norm_3')(layer3)
    layer3 = Activation("relu")(layer3)

    layer4 = Conv2D(256, (3, 3), strides=(1, 1), padding='same', name='conv_4',
                    use_bias=False)(layer3)
    layer4 = bn(name='norm_4')(layer4)
    layer4 = Activation("relu")(layer4)

    layer5 = Conv2D(512, (3, 3), strides=(1, 1), padding='same', name='conv_5',
                    use_bias=False)(layer4)
    layer5 = bn(name='norm_5')(layer5)
    layer5 = Activation("relu")(layer5)

    layer6 = MaxPooling2D(pool_size=(2, 2))(layer5)

    skip_connection_1 = layer6

    # Block 2: cells[5] lines 29-57
    layer7 = Conv2D(64, (3, 3), strides=(1, 1), padding='same', name='conv_7',
                    use_bias=False)(layer6)
    layer7 = bn(name='norm_7')(layer7)
    layer7 = Activation("relu")(layer7)

    layer8 = Conv2D(128, (3, 3), strides=(1, 1), padding='same', name='conv_8',
                    use_bias=False)(layer7)
    layer8 = bn(name='norm_8')(layer8)
    layer8 = Activation("relu")(layer8)

    layer9 = Conv2D(256, (3, 3), strides=(1, 1), padding='same', name='conv_9',
                    use_bias=False)(layer8)
    layer9 = bn(name='norm_9')(layer9)
    layer9 = Activation("relu")(layer9)

    layer10 = Conv2D(512, (3, 3), strides=(1, 1), padding='same', name='conv_10',
                     use_bias=False)(layer9)
    layer10 = bn(name='norm_10')(layer10)
    layer10 = Activation("relu")(layer10)

    layer11 = Conv2D(1024, (3, 3), strides=(1, 1), padding='same', name='conv_11',
                     use_bias=False)(layer10)
    layer11 = bn(name='norm_11')(layer11)
    layer11 = Activation("relu")(layer11)

    layer12 = MaxPooling2D(pool_size=(2, 2))(layer11)

    # Keras 3's Lambda infers the output shape by tracing the function, as Keras 2.2.4's did.
    skip_connection_1 = Lambda(space_to_depth_x2)(skip_connection_1)

    # Keras 2: keras.layers.merge.concatenate; Keras 3: keras.layers.concatenate (axis=-1).
    layer13 = concatenate([skip_connection_1, layer12])

    skip_connection_2 = layer13

    # Block 3: cells[5] lines 59-85
    layer14 = Conv2D(32, (3, 3), strides=(1, 1), padding='same', name='conv_14',
                     use_bias=False)(layer13)
    layer14 = bn(name='norm_14')(layer14)
    layer14 = Activation("relu")(layer14)

    layer15 = Conv2D(128, (3, 3), strides=(1, 1), padding='same', name='conv_15',
                     use_bias=False)(layer14)
    layer15 = bn(name='norm_15')(layer15)
    layer15 = Activation("relu")(layer15)

    layer16 = Conv2D(256, (3, 3), strides=(1, 1), padding='same', name='conv_16',
                     use_bias=False)(layer15)
    layer16 = bn(name='norm_16')(layer16)
    layer16 = Activation("relu")(layer16)

    layer17 = Conv2D(512, (3, 3), strides=(1, 1), padding='same', name='conv_17',
                     use_bias=False)(layer16)
    layer17 = bn(name='norm_17')(layer17)
    layer17 = Activation("relu")(layer17)

    layer18 = Conv2D(1024, (3, 3), strides=(1, 1), padding='same', name='conv_18',
                     use_bias=False)(layer17)
    layer18 = bn(name='norm_18')(layer18)
    layer18 = Activation("relu")(layer18)

    # cells[5] line 81 ends in a stray ``x`` as committed (see the module docstring).
    layer19 = MaxPooling2D(pool_size=(2, 2))(layer18)

    skip_connection_2 = Lambda(space_to_depth_x2)(skip_connection_2)

    layer20 = concatenate([skip_connection_2, layer19])

    # Head: cells[5] lines 87-94 (conv_21 keeps Conv2D's default padding, 'valid', in both)
    layer21 = Conv2D(num_classes, (1, 1), name='conv_21', use_bias=False)(layer20)
    layer21 = bn(name='norm_21')(layer21)

    layer22 = GlobalAveragePooling2D(data_format=None)(layer21)

    layer23 = Activation('softmax')(layer22)

    output = layer23

    # cells[14] line 1: Model(inputs=[input], outputs=[output]); Keras 3 keeps an input list
    # as the input structure, Keras 2 unwrapped it: the tensors are passed bare.
    return Model(inputs=input, outputs=output)


def model2_original(img_height=64, img_width=64, channels=3, num_classes=200, keras2_bn=False):
    """DenseNet Model 2, TinyImageNet_Network_2.ipynb cells[16] lines 1-91 and cells[17] line 2
    (sizes: cells[7] lines 34-36, 40). ``keras2_bn=True``: every ``BatchNormalization`` is
    ``Keras224BatchNormalization`` (Keras 2.2.4's moving-statistics update)."""
    bn = Keras224BatchNormalization if keras2_bn else BatchNormalization
    # ``l2``: Keras 2 keras.regularizers.l2 (an L1L2(l2=...)); Keras 3 keras.regularizers.l2
    # (L2): both 2e-4 * sum(w ** 2). "VarianceScaling": the same default initializer in both.
    # Model building: cells[16] line 2
    input = Input(shape=(img_height, img_width, channels))

    # Block 1: cells[16] lines 4-9
    layer0 = Conv2D(32, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                    kernel_regularizer=l2(2e-4))(input)
    layer0 = bn()(layer0)
    layer0 = Activation('relu')(layer0)

    skip_connection_1 = layer0

    # Block 2: cells[16] lines 11-34
    layer1 = Conv2D(128, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                    kernel_regularizer=l2(2e-4))(layer0)
    layer1 = bn()(layer1)
    layer1 = Activation('relu')(layer1)

    layer2 = Conv2D(128, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                    kernel_regularizer=l2(2e-4))(layer1)
    layer2 = bn()(layer2)
    layer2 = Activation('relu')(layer2)

    layer3 = Conv2D(128, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                    kernel_regularizer=l2(2e-4))(layer2)
    layer3 = bn()(layer3)
    layer3 = Activation('relu')(layer3)

    layer4 = Conv2D(128, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                    kernel_regularizer=l2(2e-4))(layer3)
    layer4 = bn()(layer4)
    layer4 = Activation('relu')(layer4)

    # Keras 2: keras.layers.merge.concatenate; Keras 3: keras.layers.concatenate (axis=-1).
    layer5 = concatenate([skip_connection_1, layer4])
    layer5 = bn()(layer5)
    layer5 = Activation('relu')(layer5)
    layer5 = MaxPooling2D(pool_size=(2, 2))(layer5)

    skip_connection_2 = layer5

    # Block 3: cells[16] lines 36-59
    layer6 = Conv2D(256, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                    kernel_regularizer=l2(2e-4))(layer5)
    layer6 = bn()(layer6)
    layer6 = Activation('relu')(layer6)

    layer7 = Conv2D(256, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                    kernel_regularizer=l2(2e-4))(layer6)
    layer7 = bn()(layer7)
    layer7 = Activation('relu')(layer7)

    layer8 = Conv2D(256, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                    kernel_regularizer=l2(2e-4))(layer7)
    layer8 = bn()(layer8)
    layer8 = Activation('relu')(layer8)

    layer9 = Conv2D(256, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                    kernel_regularizer=l2(2e-4))(layer8)
    layer9 = bn()(layer9)
    layer9 = Activation('relu')(layer9)

    layer10 = concatenate([skip_connection_2, layer9])
    layer10 = bn()(layer10)
    layer10 = Activation('relu')(layer10)
    layer10 = MaxPooling2D(pool_size=(2, 2))(layer10)

    skip_connection_3 = layer10

    # Block 4: cells[16] lines 62-83
    layer11 = Conv2D(512, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                     kernel_regularizer=l2(2e-4))(layer10)
    layer11 = bn()(layer11)
    layer11 = Activation('relu')(layer11)

    layer12 = Conv2D(512, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                     kernel_regularizer=l2(2e-4))(layer11)
    layer12 = bn()(layer12)
    layer12 = Activation('relu')(layer12)

    layer13 = Conv2D(512, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                     kernel_regularizer=l2(2e-4))(layer12)
    layer13 = bn()(layer13)
    layer13 = Activation('relu')(layer13)

    layer14 = Conv2D(512, (3, 3), padding='same', kernel_initializer="VarianceScaling",
                     kernel_regularizer=l2(2e-4))(layer13)
    layer14 = bn()(layer14)
    layer14 = Activation('relu')(layer14)

    layer15 = concatenate([skip_connection_3, layer14])
    layer15 = bn()(layer15)
    layer15 = Activation('relu')(layer15)
    layer15 = MaxPooling2D(pool_size=(2, 2))(layer15)

    # Layer 16: cells[16] lines 86-88 (a bias, as every conv here: Conv2D's default
    # use_bias=True; no bias_regularizer anywhere in the notebook)
    layer16 = Conv2D(num_classes, (1, 1), padding='same', kernel_initializer="VarianceScaling",
                     kernel_regularizer=l2(2e-4))(layer15)
    layer16 = GlobalAveragePooling2D()(layer16)

    # Output Layer: cells[16] lines 90-91
    output = Activation('softmax')(layer16)

    # cells[17] line 2: Model(inputs=[input], outputs=[output]) (lists dropped, as in Model 1)
    return Model(inputs=input, outputs=output)


def _weighted_layers(model):
    """The layers of ``model`` that own weights, in the model's (topological) layer order,
    nested models flattened."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(_weighted_layers(layer))
        elif layer.weights:
            found.append(layer)
    return found


def _same_kind(a, b):
    return isinstance(a, type(b)) or isinstance(b, type(a))


def copy_weights(src_keras_model, dst_keras_model):
    """Copies every weight of ``src_keras_model`` (tinynet's model) into ``dst_keras_model``
    (the transliteration) and returns the ``(src_variable, dst_variable)`` pairs.

    Layers that own weights are matched in model order, pairwise: the same kind (one's class a
    subclass of the other's, e.g. ``Keras224BatchNormalization`` and ``BatchNormalization``),
    and within a layer weights by name (``kernel``, ``bias``, ``gamma``, ``beta``,
    ``moving_mean``, ``moving_variance``) with equal shapes. Raises ``ValueError`` when the
    numbers of weighted layers differ, kinds differ, a weight of either layer has no partner
    (a destination layer's ``SHADOW_WEIGHTS`` excepted: they are reset to zero) or shapes
    differ; nothing is assigned unless everything matches.
    """
    src_layers = _weighted_layers(src_keras_model)
    dst_layers = _weighted_layers(dst_keras_model)
    if len(src_layers) != len(dst_layers):
        raise ValueError(f"copy_weights: {len(src_layers)} layers with weights in "
                         f"{src_keras_model.name!r} but {len(dst_layers)} in "
                         f"{dst_keras_model.name!r}")
    pairs, shadows = [], []
    for i, (src, dst) in enumerate(zip(src_layers, dst_layers)):
        where = f"weighted layer {i}: {src.name!r} ({type(src).__name__}) -> {dst.name!r} " \
                f"({type(dst).__name__})"
        if not _same_kind(src, dst):
            raise ValueError(f"copy_weights: {where}: different kinds of layer")
        src_weights = {w.name: w for w in src.weights}
        shadow_names = getattr(dst, "SHADOW_WEIGHTS", ())
        dst_weights = {w.name: w for w in dst.weights if w.name not in shadow_names}
        if len(src_weights) != len(src.weights) or len(dst_weights) + sum(
                w.name in shadow_names for w in dst.weights) != len(dst.weights):
            raise ValueError(f"copy_weights: {where}: two weights share a name")
        if set(src_weights) != set(dst_weights):
            raise ValueError(f"copy_weights: {where}: unmatched weights: source only "
                             f"{sorted(set(src_weights) - set(dst_weights))}, destination only "
                             f"{sorted(set(dst_weights) - set(src_weights))}")
        for name, w in src_weights.items():
            if tuple(w.shape) != tuple(dst_weights[name].shape):
                raise ValueError(f"copy_weights: {where}: {name} has shape {tuple(w.shape)} "
                                 f"in the source, {tuple(dst_weights[name].shape)} in the "
                                 f"destination")
            pairs.append((w, dst_weights[name]))
        shadows.extend(w for w in dst.weights if w.name in shadow_names)
    for src_variable, dst_variable in pairs:
        dst_variable.assign(ops.cast(src_variable.value, dst_variable.dtype))
    for shadow in shadows:
        shadow.assign(ops.zeros(shadow.shape, shadow.dtype))
    return pairs
