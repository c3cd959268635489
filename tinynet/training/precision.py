"""Numeric precision of a run: Keras mixed-precision policies, with the classifier in float32.

``--precision`` picks the global Keras dtype policy before the model is built:

- ``float32``: everything in float32 (the papers' setting; the default).
- ``mixed_bfloat16``: layers compute in bfloat16, variables stay float32 (TPUs, Ampere and
  newer GPUs). bfloat16 has float32's exponent range, so no loss scaling is needed.
- ``mixed_float16``: layers compute in float16, variables stay float32 (Volta/Turing GPUs);
  the loss is scaled dynamically (``keras.optimizers.LossScaleOptimizer``) so that small
  gradients do not flush to zero in float16.

Under both mixed policies the model's last layer (the classifier and its softmax) is rebuilt
with the ``float32`` policy (``float32_classifier``), as the Keras mixed-precision guide
advises: a softmax in 16 bits saturates, and the loss and metrics then read float32
probabilities. The loss is computed in float32 (Keras losses use ``floatx``, which the policy
does not change). Checkpoints hold the float32 variables and, under ``mixed_float16``, the
loss-scale state (the scale and its growth counter), so a resumed run continues with the same
scale. What holds: in float32 with ``--deterministic``, a resumed run is bit-identical to an
uninterrupted one (tested); under a mixed policy every saved array is restored exactly and the
batches are the same, but bit-equality of the resumed run is not asserted (16-bit kernels
differ across devices and libraries, and none of the papers trained that way).
"""
import contextlib

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


def check_precision(name):
    from tinynet.errors import TinynetError

    if name not in PRECISIONS:
        raise TinynetError(f"unknown precision {name!r}; choose from {', '.join(PRECISIONS)}")
    return name


@contextlib.contextmanager
def precision_policy(name):
    """Sets the global Keras dtype policy to ``name`` for the block, then restores the one
    before (so a process that runs several protocols does not leak a policy)."""
    import keras

    check_precision(name)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


def output_layer(model):
    """The layer that computes ``model``'s (single) output."""
    return model.outputs[0]._keras_history.operation


def float32_classifier(model):
    """``model`` with its output layer computing in float32, weights kept; ``model`` itself
    when that layer already does (float32 policy)."""
    import keras

    last = output_layer(model)
    if last.compute_dtype == "float32":
        return model

    def clone(layer):
        config = layer.get_config()
        if layer is last:
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    rebuilt = keras.models.clone_model(model, clone_function=clone)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def wrap_optimizer(optimizer):
    """``optimizer`` under a dynamic loss scale when the global policy is ``mixed_float16``
    (built by the caller, so checkpoints hold the scale's state from the first one)."""
    import keras

    if keras.mixed_precision.global_policy().name != "mixed_float16" or isinstance(
            optimizer, keras.optimizers.LossScaleOptimizer):
        return optimizer
    return keras.optimizers.LossScaleOptimizer(optimizer)


def inner_optimizer(optimizer):
    """The optimizer that holds the learning rate (the wrapped one under loss scaling)."""
    return getattr(optimizer, "inner_optimizer", optimizer)
