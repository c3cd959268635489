"""Optimizers by name, with weight decay in either convention: the one place that explains them.

A protocol names its optimizer as a plain JSON-serialisable dict (it goes into config.json and
the run's fingerprint); ``make_optimizer`` builds it::

    {"name": "adam", "learning_rate": 1e-3}
    {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": False,
     "weight_decay": 1e-4, "weight_decay_mode": "coupled"}
    {"name": "adadelta", "learning_rate": 0.1, "rho": 0.9, "epsilon": 1e-6,
     "weight_decay": 5e-4, "weight_decay_mode": "coupled", "weight_decay_exclude": ["bias"]}

``name`` is one of ``sgd``, ``sgdn`` (SGD with ``nesterov=True``: needs ``momentum`` > 0, takes
no ``nesterov``), ``adadelta``, ``adagrad``, ``adam``, ``adamw``, ``rmsprop`` or another optimizer
``keras.optimizers.get`` knows (``adamax``, ``nadam``, ``ftrl``, ``lion``, ...); every other key
is a Keras argument of that optimizer, except the three weight-decay keys below. A spec without
them builds exactly ``keras.optimizers.get({"class_name": name, "config": rest})``, as protocols
always have.

Weight decay: two conventions that are NOT interchangeable
----------------------------------------------------------
``weight_decay`` (wd) needs ``weight_decay_mode`` -- there is no default, the spec must say which
convention the original used -- one of

``"coupled"`` -- PyTorch's and Torch7's ``weight_decay`` (``torch.optim.SGD/Adadelta/Adagrad/
Adam/RMSprop``). The decay is added to the gradient before the optimizer sees it::

    g_t      = dL/dθ(θ_t) + wd · θ_t
    θ_{t+1}  = θ_t - update(g_t, optimizer state)     # momentum / second moments see wd·θ too

  This is exactly an L2 penalty ``(wd / 2) · ||θ||²`` added to the loss. Keras' regulariser
  ``keras.regularizers.L2(l2)`` adds ``l2 · Σθ²`` (gradient ``2 · l2 · θ``), so PyTorch's
  ``weight_decay=5e-4`` equals ``L2(2.5e-4)`` on every variable it decays -- for every optimizer,
  since it is the same gradient. The difference that remains: PyTorch decays *all* parameters
  (biases, BatchNorm gamma and beta included) unless the original code made parameter groups,
  while a Keras regulariser sits only where it is attached (usually kernels). Built here by the
  ``Coupled*`` subclasses (``CoupledWeightDecay`` mixin), which add ``wd · θ`` to the gradient
  inside ``apply`` (so inside ``Model.fit`` too).

``"decoupled"`` -- Keras 3's own ``weight_decay`` argument (and ``torch.optim.AdamW``). The
variables shrink separately from the gradient update, before it, scaled by the learning rate::

    θ'       = θ_t - lr · wd · θ_t
    θ_{t+1}  = θ' - update(dL/dθ(θ_t), optimizer state)   # the state never sees wd

Why PyTorch's ``weight_decay=5e-4`` is NOT Keras' ``weight_decay=5e-4``: for plain SGD without
momentum the two coincide (``θ - lr·(g + wd·θ)`` either way). With momentum μ the coupled term
goes through the momentum buffer; a steady ``wd·θ`` contributes ``lr · wd · θ / (1 - μ)`` per step,
10x the decoupled ``lr · wd · θ`` at μ = 0.9. For adaptive optimizers (Adadelta, Adagrad, Adam,
RMSprop) the coupled term is divided by the running RMS of the gradients like the rest of the
gradient, so the decay a parameter gets depends on its gradient history: a different algorithm
(Loshchilov & Hutter, "Decoupled Weight Decay Regularization"), not a rescaled one.

``weight_decay_exclude`` (optional, both modes): a list of substrings; a variable whose name
contains one is not decayed (Keras' ``exclude_from_weight_decay(var_names=...)``, substrings
taken literally). The default excludes nothing, as PyTorch decays everything. On the TensorFlow
backend Keras tests the *TensorFlow* variable's name, which is the full path plus ``:0``
(``"sequential/dense/bias:0"``), so a layer name works as well as ``"bias"``, ``"gamma"`` or
``"beta"``; the coupled classes test the very same name. Keras' ``get_config`` does not record
``exclude_from_weight_decay``: in decoupled mode exclusions are lost when a saved ``.keras`` model
is loaded (runs resume from the spec, so checkpoints are unaffected); the coupled classes save
them.

Defaults for the papers (coupled, every parameter decayed, as their PyTorch/Torch code did):
    NYU seed 004:  {"name": "adadelta", "learning_rate": 0.1, "rho": 0.9, "epsilon": 1e-6,
                    "weight_decay": 5e-4, "weight_decay_mode": "coupled"}
    Multi-ResNet:  "weight_decay": 1e-4, "weight_decay_mode": "coupled"
    DenResNet:     "weight_decay": 1e-4, "weight_decay_mode": "coupled"

PyTorch's defaults where Keras' differ (``PYTORCH_DEFAULTS`` states them as spec keys)
-------------------------------------------------------------------------------------
- SGD: lr 1e-3 (Keras 0.01; older PyTorch had no default). Momentum: PyTorch keeps an lr-free
  buffer ``b = μ·b + g`` and steps ``θ -= lr·b``; Keras keeps ``m = μ·m - lr·g`` and steps
  ``θ += m``. Identical while the lr is constant; after an lr change Keras' velocity still
  carries the old lr (the step right after the change differs, the difference then fading as
  μ^k). Same for RMSprop with momentum.
- Adadelta: lr 1.0, rho 0.9, eps 1e-6 (Keras 0.001, 0.95, 1e-7). Same update otherwise.
- Adagrad: lr 0.01, initial_accumulator_value 0, eps 1e-10 (Keras 0.001, 0.1, 1e-7); PyTorch
  divides by ``sqrt(sum) + eps``, Keras by ``sqrt(sum + eps)``; PyTorch's ``lr_decay`` has no
  Keras argument (use a schedule).
- Adam / AdamW: eps 1e-8 (Keras 1e-7); AdamW weight_decay 0.01 (Keras 0.004). Keras' epsilon is
  Kingma & Ba's "epsilon hat" (added to the uncorrected ``sqrt(v)``): it equals PyTorch's
  ``eps · sqrt(1 - beta_2^t)``, so the two agree once ``eps`` is small against ``sqrt(v_hat)``.
- RMSprop: lr 0.01, rho (PyTorch's alpha) 0.99, eps 1e-8 (Keras 0.001, 0.9, 1e-7); PyTorch divides
  by ``sqrt(v) + eps``, Keras by ``sqrt(v + eps)``.

Where clipping (``clipnorm`` etc.) is used, the coupled term is clipped with the gradient (it is
added in ``apply``, before Keras clips); PyTorch code usually clips before ``step`` adds it.
"""
import math
import numbers
import re

import keras
from keras import ops

from tinynet.errors import TinynetError

__all__ = ["COUPLED_OPTIMIZERS", "CoupledAdadelta", "CoupledAdagrad", "CoupledAdam",
           "CoupledRMSprop", "CoupledSGD", "CoupledWeightDecay", "OPTIMIZER_NAMES",
           "PYTORCH_DEFAULTS", "WEIGHT_DECAY_MODES", "make_optimizer"]

WEIGHT_DECAY_MODES = ("coupled", "decoupled")
_DECAY_KEYS = ("weight_decay", "weight_decay_mode", "weight_decay_exclude")


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
        self.coupled_weight_decay = _check_decay(coupled_weight_decay, "coupled_weight_decay")
        self._weight_decay_exclude = _check_exclude(weight_decay_exclude)
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
        return ops.add(grad, ops.multiply(ops.cast(variable, grad.dtype),
                                          ops.cast(wd, grad.dtype)))

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


@keras.saving.register_keras_serializable(package="tinynet")
class CoupledSGD(CoupledWeightDecay, keras.optimizers.SGD):
    """``keras.optimizers.SGD`` with PyTorch's coupled ``weight_decay``."""


@keras.saving.register_keras_serializable(package="tinynet")
class CoupledAdadelta(CoupledWeightDecay, keras.optimizers.Adadelta):
    """``keras.optimizers.Adadelta`` with PyTorch's coupled ``weight_decay``."""


@keras.saving.register_keras_serializable(package="tinynet")
class CoupledAdagrad(CoupledWeightDecay, keras.optimizers.Adagrad):
    """``keras.optimizers.Adagrad`` with PyTorch's coupled ``weight_decay``."""


@keras.saving.register_keras_serializable(package="tinynet")
class CoupledAdam(CoupledWeightDecay, keras.optimizers.Adam):
    """``keras.optimizers.Adam`` with PyTorch's coupled ``weight_decay`` (``torch.optim.Adam``)."""


@keras.saving.register_keras_serializable(package="tinynet")
class CoupledRMSprop(CoupledWeightDecay, keras.optimizers.RMSprop):
    """``keras.optimizers.RMSprop`` with PyTorch's coupled ``weight_decay``."""


COUPLED_OPTIMIZERS = {"sgd": CoupledSGD, "sgdn": CoupledSGD, "adadelta": CoupledAdadelta,
                      "adagrad": CoupledAdagrad, "adam": CoupledAdam, "rmsprop": CoupledRMSprop}

# name -> Keras class, for argument checking; all of them are names keras.optimizers.get knows
_KERAS_CLASSES = {name.lower(): getattr(keras.optimizers, name) for name in (
    "SGD", "Adadelta", "Adagrad", "Adam", "AdamW", "RMSprop", "Adamax", "Nadam", "Ftrl", "Lion",
    "Adafactor", "Muon", "ScheduleFreeAdamW") if hasattr(keras.optimizers, name)}
_KERAS_CLASSES["sgdn"] = keras.optimizers.SGD
OPTIMIZER_NAMES = tuple(sorted(_KERAS_CLASSES))

# spec keys that give torch.optim's defaults: {"name": n, **PYTORCH_DEFAULTS[n], ...}
PYTORCH_DEFAULTS = {
    "sgd": {"learning_rate": 1e-3, "momentum": 0.0, "nesterov": False},
    "adadelta": {"learning_rate": 1.0, "rho": 0.9, "epsilon": 1e-6},
    "adagrad": {"learning_rate": 1e-2, "initial_accumulator_value": 0.0, "epsilon": 1e-10},
    "adam": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8},
    "adamw": {"learning_rate": 1e-3, "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-8,
              "weight_decay": 1e-2, "weight_decay_mode": "decoupled"},
    "rmsprop": {"learning_rate": 1e-2, "rho": 0.99, "epsilon": 1e-8, "momentum": 0.0,
                "centered": False},
}


def _check_decay(value, key):
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (
            math.isfinite(value) and value >= 0):
        raise TinynetError(f"{key} must be a number >= 0, got {value!r}")
    return float(value)


def _check_exclude(value):
    if value is None:
        return ()
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or not all(
            isinstance(s, str) and s for s in value):
        raise TinynetError(f"weight_decay_exclude must be a list of non-empty variable-name "
                           f"substrings (e.g. [\"bias\", \"gamma\", \"beta\"]), got {value!r}")
    return tuple(value)


def _keras_arguments(cls):
    import inspect
    params = inspect.signature(cls.__init__).parameters.values()
    return {p.name for p in params if p.name not in ("self", "name")
            and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}


def _one_line(error):
    return " ".join(str(error).split())


def make_optimizer(spec):
    """The Keras optimizer a protocol's optimizer dict names (see the module docstring)."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise TinynetError(f"an optimizer spec is a dict with a \"name\" (one of "
                           f"{', '.join(OPTIMIZER_NAMES)}) and that optimizer's Keras "
                           f"arguments, got {spec!r}")
    rest = dict(spec)
    name = rest.pop("name")
    key = name.lower()
    if key not in _KERAS_CLASSES:
        raise TinynetError(f"unknown optimizer {name!r}; accepted: {', '.join(OPTIMIZER_NAMES)}")
    keras_cls = _KERAS_CLASSES[key]
    accepted = _keras_arguments(keras_cls) - ({"nesterov"} if key == "sgdn" else set())
    unknown = sorted(set(rest) - accepted - set(_DECAY_KEYS))
    if unknown:
        raise TinynetError(f"optimizer {name!r} does not take {', '.join(map(repr, unknown))}; "
                           f"it accepts: {', '.join(sorted(accepted | set(_DECAY_KEYS)))}")
    if key == "sgdn":
        if not rest.get("momentum"):
            raise TinynetError(f"optimizer 'sgdn' (Nesterov SGD) needs a \"momentum\" > 0, got "
                               f"{rest.get('momentum')!r}")
        name = "sgd"
        rest["nesterov"] = True

    decay_keys = [k for k in _DECAY_KEYS if k in rest]
    if not decay_keys or decay_keys == ["weight_decay"] and rest["weight_decay"] is None:
        return _build(lambda: keras.optimizers.get({"class_name": name, "config": rest}), spec)

    wd = _check_decay(rest.pop("weight_decay", None), "weight_decay")
    mode = rest.pop("weight_decay_mode", None)
    exclude = _check_exclude(rest.pop("weight_decay_exclude", None))
    if wd is None:
        raise TinynetError(f"optimizer {name!r}: {' and '.join(decay_keys)} without a "
                           f"\"weight_decay\"; give the decay (e.g. 5e-4) or leave them out")
    if mode not in WEIGHT_DECAY_MODES:
        raise TinynetError(
            f"optimizer {name!r}: \"weight_decay_mode\" must be \"coupled\" (PyTorch/Torch: "
            f"g += wd*p before the update) or \"decoupled\" (Keras' weight_decay: p -= lr*wd*p), "
            f"got {mode!r}; see tinynet.training.optimizers")
    if mode == "decoupled":
        def build():
            optimizer = keras.optimizers.get(
                {"class_name": name, "config": dict(rest, weight_decay=wd)})
            if exclude:
                optimizer.exclude_from_weight_decay(var_names=[re.escape(s) for s in exclude])
            return optimizer
        return _build(build, spec)
    if key not in COUPLED_OPTIMIZERS:
        hint = " (adamw's decay is decoupled by definition; coupled Adam is \"adam\")" if (
            key == "adamw") else ""
        raise TinynetError(f"coupled weight decay is available for "
                           f"{', '.join(sorted(COUPLED_OPTIMIZERS))}, not {name!r}{hint}")
    cls = COUPLED_OPTIMIZERS[key]
    return _build(lambda: cls.from_config(
        dict(rest, coupled_weight_decay=wd, weight_decay_exclude=list(exclude) or None)), spec)


def _build(build, spec):
    try:
        return build()
    except TinynetError:
        raise
    except (ValueError, TypeError) as e:
        raise TinynetError(f"optimizer {spec!r}: {_one_line(e)}") from None
