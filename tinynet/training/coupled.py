"""PyTorch's coupled weight decay as a mixin for Keras optimizers (the conventions are explained
in ``tinynet.training.optimizers``)."""
import math
import numbers
import re

import keras
from keras import ops

from tinynet.errors import TinynetError

__all__ = ["CoupledWeightDecay", "check_decay", "check_exclude"]


def _tensorflow_backend():
    return keras.backend.backend() == "tensorflow"


class CoupledWeightDecay:
    """Mixin for a Keras optimizer: PyTorch-style (coupled) weight decay.

    ``coupled_weight_decay`` wd: ``wd · θ`` is added to the gradient of every variable not
    excluded by ``weight_decay_exclude`` (name substrings, the mechanism and the names of Keras'
    ``exclude_from_weight_decay``, which also applies to Keras' own ``weight_decay``) before the
    optimizer's update, in ``apply`` -- the method ``Model.fit``'s train step reaches through
    ``apply_gradients`` (and ``LossScaleOptimizer`` through the inner optimizer's ``apply``).
    The decision per variable is made when the step is traced; the step itself only adds a term.
    """

    def __init__(self, *args, coupled_weight_decay=None, weight_decay_exclude=None, **kwargs):
        super().__init__(*args, **kwargs)
        self.coupled_weight_decay = check_decay(coupled_weight_decay, "coupled_weight_decay")
        self._weight_decay_exclude = check_exclude(weight_decay_exclude)
        if self._weight_decay_exclude:
            self.exclude_from_weight_decay(
                var_names=[re.escape(s) for s in self._weight_decay_exclude])

    @property
    def weight_decay_exclude(self):
        return list(self._weight_decay_exclude)

    def _decays(self, variable):
        if getattr(variable, "overwrite_with_gradient", False):
            return False  # Keras assigns the "gradient" itself to such variables
        if _tensorflow_backend() and isinstance(variable, keras.Variable):
            # the object Keras' own (TensorFlow) _apply_weight_decay tests: same name, same cache
            variable = variable.value
        return self._use_weight_decay(variable)

    def _coupled_gradient(self, grad, variable):
        if grad is None or not self._decays(variable):
            return grad
        wd = self.coupled_weight_decay
        if self.loss_scale_factor is not None:
            wd = wd * self.loss_scale_factor  # apply() unscales the gradients after this
        if _tensorflow_backend():
            import tensorflow as tf
            if isinstance(grad, tf.IndexedSlices):
                grad = tf.convert_to_tensor(grad)  # the decay term is dense
        if not isinstance(wd, float):
            wd = ops.cast(wd, grad.dtype)
        # a Python float wd stays exact in float64 (ops.cast would round it through float32)
        return ops.add(grad, ops.multiply(ops.cast(variable, grad.dtype), wd))

    def apply(self, grads, trainable_variables=None):
        if self.coupled_weight_decay:
            grads = list(grads)
            if trainable_variables is not None:
                trainable_variables = list(trainable_variables)
                variables = trainable_variables
            else:  # the optimizer's own list, as Keras' apply uses it (mismatches: Keras raises)
                variables = self._trainable_variables
            if len(grads) == len(variables):
                grads = [self._coupled_gradient(g, v) for g, v in zip(grads, variables)]
        return super().apply(grads, trainable_variables)

    def get_config(self):
        config = super().get_config()
        config.update(coupled_weight_decay=self.coupled_weight_decay,
                      weight_decay_exclude=self.weight_decay_exclude or None)
        return config


def check_decay(value, key):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value >= 0):
        raise TinynetError(f"{key} must be a number >= 0, got {value!r}")
    return float(value)


def check_exclude(value):
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(s, str) and s for s in value):
        raise TinynetError(f"weight_decay_exclude must be a list of non-empty variable-name "
                           f"substrings (e.g. [\"bias\", \"gamma\", \"beta\"]), got {value!r}")
    return tuple(value)
