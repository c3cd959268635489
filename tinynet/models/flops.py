"""Floating-point operations of a model's forward pass, counted by TensorFlow's profiler.

TensorFlow's graph profiler (``tf.compat.v1.profiler`` with ``float_operation()``) sums each
op's registered float-op statistics over the inference graph of one image: a
convolution or matrix product counts 2 per multiply-add (the convention of the papers' and
torchvision's "GFLOPs" figures halved: those count multiply-adds), batch normalisation,
additions and activations count their element operations. Training is projected at 3x the
forward pass (the backward pass computes two products per forward one: the gradients of the
inputs and of the weights), the usual estimate (Kaplan et al. 2020, "Scaling laws for neural
language models", section 2.1).
"""


def forward_flops(model, input_shape):
    """Float operations of ``model``'s inference forward pass on one input of ``input_shape``
    (without the batch axis). Needs the TensorFlow backend."""
    import tensorflow as tf

    function = tf.function(lambda x: model(x, training=False))
    concrete = function.get_concrete_function(tf.TensorSpec([1, *input_shape], tf.float32))
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    return int(tf.compat.v1.profiler.profile(graph=concrete.graph, options=options)
               .total_float_ops)
