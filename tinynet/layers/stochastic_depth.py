"""Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth"), used by seed
001's improved ResNets: a residual block survives training with probability ``p_l`` and is the
identity otherwise.

``StochasticDepth`` owns the residual branch (a Keras model) so that a dropped branch is **not
computed**: in ``"batch"`` mode one Bernoulli draw per mini-batch picks, through
``keras.ops.cond``, either ``shortcut + branch(x)`` or just ``shortcut`` -- only the taken side
runs, which is where training gets faster (seed 001: 2.45 s -> 2.13 s per iteration). At inference the output
is ``shortcut + p_l * branch(x)`` (Huang et al.'s expectation scaling).

``"row"`` mode is timm's DropPath: a draw per sample, the survivors scaled by ``1 / p_l`` during
training and nothing at inference. Every sample's branch is computed, so it saves no work.

``linear_survival(l, L, p_L)`` gives Huang et al.'s linear decay ``p_l = 1 - (l / L)(1 - p_L)``.

Backends. Everything is ``keras.ops``. TensorFlow: ``ops.cond`` is ``tf.cond`` (inside
``tf.function``/XLA only the taken branch executes; eagerly only the taken one is called).
PyTorch: eager, a Python ``if`` on the draw. JAX: ``jax.lax.cond``; under ``jit`` both
branches are traced and compiled but only the taken one executes. A ``lax.cond`` branch may not
assign variables (the branch's BatchNormalization moving statistics would leak tracers out of
the cond), so on JAX -- and on any backend inside a ``keras.StatelessScope`` (``stateless_call``),
where a ``tf.cond`` branch's assignment would leak its tensors the same way -- the branch runs
through ``stateless_call``: its non-trainable variables go into the cond and their new values
come out of it (unchanged when the branch is dropped) and are assigned afterwards. TensorFlow's
``Model.fit`` uses real variables and keeps the plain ``tf.cond``.
"""
import keras
from keras import ops

try:
    from keras.src.backend.common.stateless_scope import in_stateless_scope
except ImportError:  # a Keras that moved it: only JAX then threads the state through the cond
    def in_stateless_scope():
        return False

MODES = ("batch", "row")


def linear_survival(block_index, num_blocks, final_survival=0.5):
    """``p_l`` of block ``l`` (1-based) of ``L``: 1 - (l / L)(1 - p_L)."""
    return 1.0 - block_index / num_blocks * (1.0 - final_survival)


@keras.saving.register_keras_serializable(package="tinynet")
class StochasticDepth(keras.layers.Layer):
    """``[x, shortcut] -> shortcut + branch(x)``, with ``branch`` dropped as described above.

    Args:
        branch: a Keras model (or layer) mapping ``x`` to the residual, shaped like
            ``shortcut``.
        survival_probability: ``p_l`` in (0, 1]; 1 means an ordinary residual addition.
        mode: ``"batch"`` (one draw per mini-batch, skips computation) or ``"row"`` (per
            sample, inverted scaling, timm's DropPath).
        seed: seed of the layer's ``keras.random.SeedGenerator``.
    """

    def __init__(self, branch, survival_probability=1.0, mode="batch", seed=None, **kwargs):
        super().__init__(**kwargs)
        if not 0.0 < survival_probability <= 1.0:
            raise ValueError(f"Invalid value for argument `survival_probability`: expected a "
                             f"number in (0, 1]. Received: {survival_probability!r}")
        if mode not in MODES:
            raise ValueError(f"Invalid value for argument `mode`: expected one of {MODES}. "
                             f"Received: mode={mode!r}")
        self.branch = branch
        self.survival_probability = float(survival_probability)
        self.mode = mode
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        if not self.branch.built:
            self.branch.build(input_shape[0])

    def call(self, inputs, training=None):
        x, shortcut = inputs
        p = self.survival_probability
        if not training or p == 1.0:
            residual = self.branch(x, training=training)
            if self.mode == "batch" and p < 1.0:
                residual = residual * p
            return shortcut + residual
        if self.mode == "row":
            shape = [ops.shape(x)[0]] + [1] * (len(x.shape) - 1)
            keep = keras.random.uniform(shape, seed=self.seed_generator) < p
            residual = self.branch(x, training=True)
            return shortcut + residual * ops.cast(keep, residual.dtype) / p
        keep = keras.random.uniform([], seed=self.seed_generator) < p
        if keras.backend.backend() == "jax" or in_stateless_scope():
            return self._stateless_batch_cond(keep, x, shortcut)
        return ops.cond(keep, lambda: shortcut + self.branch(x, training=True),
                        lambda: shortcut)

    def _stateless_batch_cond(self, keep, x, shortcut):
        """``ops.cond`` of the batch mode with the branch's state threaded through it."""
        branch = self.branch
        trainable = [v.value for v in branch.trainable_variables]
        state = [v.value for v in branch.non_trainable_variables]

        def kept():
            residual, new_state = branch.stateless_call(trainable, state, x, training=True)
            return shortcut + residual, [ops.cast(n, o.dtype) for n, o in zip(new_state, state)]

        def dropped():
            return shortcut, state

        y, new_state = ops.cond(keep, kept, dropped)
        for variable, value in zip(branch.non_trainable_variables, new_state):
            variable.assign(value)
        return y

    def compute_output_shape(self, input_shape):
        return input_shape[1]

    def get_config(self):
        config = super().get_config()
        config.update({"branch": keras.saving.serialize_keras_object(self.branch),
                       "survival_probability": self.survival_probability, "mode": self.mode,
                       "seed": self.seed})
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["branch"] = keras.saving.deserialize_keras_object(config["branch"])
        return cls(**config)
