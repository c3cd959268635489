"""Optimizers that update exactly as ``torch.optim`` (and Torch7's ``optim``) do, where Keras'
namesakes compute something else.

A protocol asks for them with ``"convention": "torch"`` in its optimizer spec
(``tinynet.training.optimizers.make_optimizer``); the protocols of the papers whose original
code was PyTorch or Torch7 (seeds 000, 003 and 004) do so by default. Each class takes its
Keras namesake's arguments (plus the ones PyTorch has and Keras lacks), PyTorch's coupled
``weight_decay`` through ``CoupledWeightDecay``, and saves and loads with a ``.keras`` model.
The update rules, with ``g`` the gradient (plus ``wd·θ`` under coupled decay) and ``t`` the
1-based step:

``TorchSGD`` -- ``torch.optim.SGD`` (torch/optim/sgd.py, ``_single_tensor_sgd``) and Torch7's
``optim.sgd`` (optim/sgd.lua), which compute the same thing::

    b = g                      at the first step (the buffer starts as the gradient)
    b = μ·b + (1 - dampening)·g  after it
    d = g + μ·b  (nesterov)   or   d = b
    θ -= lr · d

  Keras' SGD keeps ``m = μ·m - lr·g`` and steps ``θ += m`` (Nesterov: ``θ += μ·m - lr·g``): the
  velocity holds the learning rate of every step that fed it. With a constant lr the two are one
  update; after an lr drop Keras' next steps still move with the old lr inside ``m`` (a drop from
  0.1 to 0.01 under μ = 0.9 leaves the first step after it about 9x too long), and a schedule
  that changes the lr every step (cosine, CyclicLR) differs at every step.

``TorchRMSprop`` -- ``torch.optim.RMSprop``::

    v = α·v + (1 - α)·g²;   (centered) a = α·a + (1 - α)·g,  v̂ = v - a²  else v̂ = v
    s = g / (sqrt(v̂) + eps)
    b = μ·b + s;  θ -= lr · b    (momentum μ > 0)   or   θ -= lr · s

  Keras divides by ``sqrt(v̂ + eps)`` and keeps ``lr`` inside its momentum.

``TorchAdagrad`` -- ``torch.optim.Adagrad``::

    clr = lr / (1 + (t - 1)·lr_decay);   S += g²;   θ -= clr · g / (sqrt(S) + eps)

  Keras divides by ``sqrt(S + eps)`` and has no ``lr_decay``.

``TorchAdam`` -- ``torch.optim.Adam`` (and ``AdamW`` with Keras' decoupled ``weight_decay``,
which is PyTorch's ``θ *= 1 - lr·wd`` before the step)::

    m = β1·m + (1 - β1)·g;   v = β2·v + (1 - β2)·g²;   (amsgrad) v_max = max(v_max, v)
    θ -= (lr / (1 - β1^t)) · m / (sqrt(v or v_max) / sqrt(1 - β2^t) + eps)

  Keras adds ``eps`` to the uncorrected ``sqrt(v)`` (Kingma & Ba's "epsilon hat"), which equals
  PyTorch's ``eps·sqrt(1 - β2^t)``.

Their state has PyTorch's names (``momentum_buffer``, ``square_avg``, ``state_sum``, ``exp_avg``,
...), so a checkpoint of Keras' namesake is never read as theirs. Adadelta needs no class of its own: Keras' and PyTorch's rules are the same (only the defaults
differ, see ``PYTORCH_DEFAULTS``), so ``"convention": "torch"`` builds ``CoupledAdadelta``.

One thing stays Keras': the learning rate lives in a float32 variable, so an lr of 0.1 is
0.100000001 -- a relative 1.5e-8 that ``docs/fidelity.md`` measures in float64.
"""
import keras
import numpy as np
from keras import ops

from tinynet.training.coupled import CoupledWeightDecay

__all__ = ["TorchAdagrad", "TorchAdam", "TorchRMSprop", "TorchSGD"]


def _step_count(optimizer, dtype):
    """``t``: the 1-based number of the step being taken (Keras counts the ones taken)."""
    return ops.cast(ops.add(optimizer.iterations, 1), dtype)


@keras.saving.register_keras_serializable(package="tinynet")
class TorchSGD(CoupledWeightDecay, keras.optimizers.SGD):
    """``torch.optim.SGD`` / Torch7 ``optim.sgd``: an lr-free momentum buffer, ``dampening``
    and Nesterov as PyTorch computes them (see the module docstring)."""

    def __init__(self, *args, dampening=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if not 0.0 <= dampening <= 1.0:
            raise ValueError(f"`dampening` must be between [0, 1]. Received: "
                             f"dampening={dampening} (of type {type(dampening)})")
        if self.nesterov and (self.momentum <= 0 or dampening != 0):
            # torch.optim.SGD and Torch7 refuse it too: Nesterov needs a momentum and no dampening
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")
        self.dampening = float(dampening)

    def build(self, variables):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, variables)
        self.momentums = []
        if self.momentum != 0:
            self.momentums = self.add_optimizer_variables(variables, "momentum_buffer")

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.momentum == 0:
            self.assign_sub(variable, ops.multiply(lr, g))
            return
        buffer = self.momentums[self._get_variable_index(variable)]
        mu = self.momentum  # a Python float, exact in float64 (ops.cast would round it to float32)
        new = ops.add(ops.multiply(mu, buffer), g)
        if self.dampening:
            damped = ops.add(ops.multiply(mu, buffer), ops.multiply(1.0 - self.dampening, g))
            new = ops.where(ops.equal(self.iterations, 0), g, damped)
        self.assign(buffer, new)
        direction = ops.add(g, ops.multiply(mu, new)) if self.nesterov else new
        self.assign_sub(variable, ops.multiply(lr, direction))

    def get_config(self):
        return dict(super().get_config(), dampening=self.dampening)


@keras.saving.register_keras_serializable(package="tinynet")
class TorchRMSprop(CoupledWeightDecay, keras.optimizers.RMSprop):
    """``torch.optim.RMSprop``: ``eps`` outside the square root, an lr-free momentum buffer."""

    def build(self, var_list):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, var_list)
        self.square_avgs = self.add_optimizer_variables(var_list, "square_avg")
        self.momentum_buffers = (self.add_optimizer_variables(var_list, "momentum_buffer")
                                 if self.momentum > 0 else [])
        self.grad_avgs = (self.add_optimizer_variables(var_list, "grad_avg")
                          if self.centered else [])

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        rho = self.rho
        square_avg = self.square_avgs[index]
        self.assign(square_avg, ops.add(ops.multiply(rho, square_avg),
                                        ops.multiply(1 - rho, ops.square(g))))
        mean_square = square_avg
        if self.centered:
            grad_avg = self.grad_avgs[index]
            self.assign(grad_avg, ops.add(ops.multiply(rho, grad_avg), ops.multiply(1 - rho, g)))
            mean_square = ops.subtract(square_avg, ops.square(grad_avg))
        scaled = ops.divide(g, ops.add(ops.sqrt(mean_square), self.epsilon))
        if self.momentum > 0:
            buffer = self.momentum_buffers[index]
            self.assign(buffer, ops.add(ops.multiply(self.momentum, buffer), scaled))
            scaled = buffer
        self.assign_sub(variable, ops.multiply(lr, scaled))


@keras.saving.register_keras_serializable(package="tinynet")
class TorchAdagrad(CoupledWeightDecay, keras.optimizers.Adagrad):
    """``torch.optim.Adagrad``: ``eps`` outside the square root, PyTorch's ``lr_decay``."""

    def __init__(self, *args, lr_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if lr_decay < 0:
            raise ValueError(f"`lr_decay` must be >= 0. Received: lr_decay={lr_decay}")
        self.lr_decay = float(lr_decay)

    def build(self, var_list):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, var_list)
        self.state_sums = self.add_optimizer_variables(var_list, "state_sum")
        for state_sum in self.state_sums:  # (Keras' Constant initialiser rounds via float32)
            state_sum.assign(np.full(state_sum.shape, self.initial_accumulator_value,
                                     dtype=state_sum.dtype))

    def update_step(self, gradient, variable, learning_rate):
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        if self.lr_decay:
            t = _step_count(self, variable.dtype)
            lr = ops.divide(lr, ops.add(1.0, ops.multiply(ops.subtract(t, 1.0), self.lr_decay)))
        state_sum = self.state_sums[self._get_variable_index(variable)]
        self.assign_add(state_sum, ops.square(g))
        self.assign_sub(variable, ops.multiply(
            lr, ops.divide(g, ops.add(ops.sqrt(state_sum), self.epsilon))))

    def get_config(self):
        return dict(super().get_config(), lr_decay=self.lr_decay)


@keras.saving.register_keras_serializable(package="tinynet")
class TorchAdam(CoupledWeightDecay, keras.optimizers.Adam):
    """``torch.optim.Adam``: ``eps`` added to the bias-corrected ``sqrt(v)``."""

    def build(self, var_list):
        if self.built:
            return
        keras.optimizers.Optimizer.build(self, var_list)
        self.exp_avgs = self.add_optimizer_variables(var_list, "exp_avg")
        self.exp_avg_sqs = self.add_optimizer_variables(var_list, "exp_avg_sq")
        self.max_exp_avg_sqs = (self.add_optimizer_variables(var_list, "max_exp_avg_sq")
                                if self.amsgrad else [])

    def update_step(self, gradient, variable, learning_rate):
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, variable.dtype)
        g = ops.cast(gradient, variable.dtype)
        t = _step_count(self, variable.dtype)
        beta_1, beta_2 = self.beta_1, self.beta_2  # Python floats: exact in float64
        m, v = self.exp_avgs[index], self.exp_avg_sqs[index]
        self.assign(m, ops.add(ops.multiply(beta_1, m), ops.multiply(1 - beta_1, g)))
        self.assign(v, ops.add(ops.multiply(beta_2, v), ops.multiply(1 - beta_2, ops.square(g))))
        if self.amsgrad:
            v_max = self.max_exp_avg_sqs[index]
            self.assign(v_max, ops.maximum(v_max, v))
            v = v_max
        step_size = ops.divide(lr, ops.subtract(1.0, ops.power(beta_1, t)))
        bias_correction2_sqrt = ops.sqrt(ops.subtract(1.0, ops.power(beta_2, t)))
        denominator = ops.add(ops.divide(ops.sqrt(v), bias_correction2_sqrt), self.epsilon)
        self.assign_sub(variable, ops.multiply(step_size, ops.divide(m, denominator)))
