"""Loss and metrics for paired targets (``tinynet.augment.mixup``): ``y_true`` float [B, 2K] =
``concat([target distribution, onehot(unmixed label)])``, ``y_pred`` [B, K].

- ``MixedTargetCrossentropy``: Keras' categorical cross-entropy (same clipping/epsilon) of
  ``y_pred`` against ``y_true[:, :K]``; for a mixup target ``lam * onehot(a) + (1 - lam) *
  onehot(b)`` this is exactly ``lam * CE(a) + (1 - lam) * CE(b)``.
- ``MixedTargetAccuracy`` (name "accuracy") and ``MixedTargetTopK`` (name "top5" for k=5):
  top-1 / top-k of ``y_pred`` against the unmixed label ``argmax(y_true[:, K:])``.

K is ``y_pred.shape[-1]``; ``y_true`` must have 2K columns. The classes are registered as
``tinynet>...``: import this module before ``keras.models.load_model`` of a model compiled
with them.
"""
import keras


def split_paired_targets(y_true, y_pred):
    """``(target [.., K], unmixed onehot [.., K])`` halves of ``y_true`` [.., 2K], K from y_pred."""
    k = y_pred.shape[-1]
    if k is None:
        raise ValueError("Paired targets need a static number of classes (y_pred.shape[-1]). "
                         f"Received: y_pred.shape={y_pred.shape}")
    if y_true.shape[-1] is not None and y_true.shape[-1] != 2 * k:
        raise ValueError(f"Paired targets need y_true with 2 * {k} = {2 * k} columns "
                         "(mixed target, then the one-hot unmixed label) for y_pred with "
                         f"{k}. Received: y_true.shape={y_true.shape}, "
                         f"y_pred.shape={y_pred.shape}")
    return y_true[..., :k], y_true[..., k:]


def _convert(y_true, y_pred):
    y_pred = keras.ops.convert_to_tensor(y_pred)
    return keras.ops.convert_to_tensor(y_true, dtype=y_pred.dtype), y_pred


@keras.saving.register_keras_serializable(package="tinynet")
def mixed_target_crossentropy(y_true, y_pred, from_logits=False):
    """Per-sample ``keras.losses.categorical_crossentropy(y_true[:, :K], y_pred)``."""
    y_true, y_pred = _convert(y_true, y_pred)
    target, _ = split_paired_targets(y_true, y_pred)
    return keras.losses.categorical_crossentropy(target, y_pred, from_logits=from_logits)


@keras.saving.register_keras_serializable(package="tinynet")
def mixed_target_accuracy(y_true, y_pred):
    """Per-sample top-1 of ``y_pred`` against the unmixed label ``argmax(y_true[:, K:])``."""
    y_true, y_pred = _convert(y_true, y_pred)
    _, unmixed = split_paired_targets(y_true, y_pred)
    return keras.metrics.categorical_accuracy(unmixed, y_pred)


@keras.saving.register_keras_serializable(package="tinynet")
def mixed_target_top_k_accuracy(y_true, y_pred, k=5):
    """Per-sample top-k of ``y_pred`` against the unmixed label ``argmax(y_true[:, K:])``."""
    y_true, y_pred = _convert(y_true, y_pred)
    _, unmixed = split_paired_targets(y_true, y_pred)
    return keras.metrics.top_k_categorical_accuracy(unmixed, y_pred, k=k)


@keras.saving.register_keras_serializable(package="tinynet")
class MixedTargetCrossentropy(keras.losses.Loss):
    """Cross-entropy of probabilities ``y_pred`` [B, K] (softmax outputs; ``from_logits=True``
    for logits) against the target half ``y_true[:, :K]`` of paired targets [B, 2K]; equal to
    ``keras.losses.CategoricalCrossentropy(from_logits)(y_true[:, :K], y_pred)``."""

    def __init__(self, from_logits=False, reduction="sum_over_batch_size",
                 name="mixed_target_crossentropy", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = from_logits

    def call(self, y_true, y_pred):
        return mixed_target_crossentropy(y_true, y_pred, from_logits=self.from_logits)

    def get_config(self):
        return {**super().get_config(), "from_logits": self.from_logits}


@keras.saving.register_keras_serializable(package="tinynet")
class MixedTargetAccuracy(keras.metrics.MeanMetricWrapper):
    """Top-1 accuracy against the unmixed labels ``argmax(y_true[:, K:])`` of paired targets."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(fn=mixed_target_accuracy, name=name, dtype=dtype)
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


@keras.saving.register_keras_serializable(package="tinynet")
class MixedTargetTopK(keras.metrics.MeanMetricWrapper):
    """Top-k accuracy against the unmixed labels ``argmax(y_true[:, K:])`` of paired targets;
    named "top5" for the default k=5 (``f"top{k}"`` otherwise)."""

    def __init__(self, k=5, name=None, dtype=None):
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError("Invalid value received for argument `k`. Expected a positive "
                             f"integer. Received: k={k!r}")
        super().__init__(fn=mixed_target_top_k_accuracy, name=name or f"top{k}", dtype=dtype,
                         k=k)
        self.k = k
        self._direction = "up"

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype, "k": self.k}
