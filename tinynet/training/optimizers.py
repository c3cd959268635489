"""Optimizers by name, with weight decay in either convention: the one place that explains them.

A protocol names its optimizer as a plain JSON-serialisable dict (it goes into config.json and
the run's fingerprint); ``make_optimizer`` builds it::

    {"name": "adam", "learning_rate": 1e-3}
    {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": False,
     "weight_decay": 1e-4, "weight_decay_mode": "coupled"}
    {"name": "adadelta", "learning_rate": 0.1, "rho": 0.9, "epsilon": 1e-6,
     "weight_decay": 5e-4, "weight_decay_mode": "coupled", "weight_decay_exclude": ["bias"]}

``"convention": "torch"`` builds the optimizer that updates as ``torch.optim`` and Torch7's
``optim`` do (``tinynet.training.torch_optimizers``: SGD's and RMSprop's lr-free momentum buffer,
``eps`` where PyTorch puts it in Adagrad, Adam and RMSprop); ``"keras"`` (the default, and what a
spec without the key always meant) builds Keras' own. The protocols of seeds 000, 003 and 004
name ``"torch"``, as their originals were PyTorch or Torch7 code.

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
  μ^k). Same for RMSprop with momentum. ``"convention": "torch"`` removes the difference.
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
import re

import keras

from tinynet.errors import TinynetError
from tinynet.training.coupled import CoupledWeightDecay, check_decay, check_exclude
from tinynet.training.torch_optimizers import TorchAdagrad, TorchAdam, TorchRMSprop, TorchSGD

__all__ = ["CONVENTIONS", "COUPLED_OPTIMIZERS", "CoupledAdadelta", "CoupledAdagrad",
           "CoupledAdam", "CoupledRMSprop", "CoupledSGD", "CoupledWeightDecay", "OPTIMIZER_NAMES",
           "PYTORCH_DEFAULTS", "TORCH_OPTIMIZERS", "WEIGHT_DECAY_MODES", "make_optimizer"]

WEIGHT_DECAY_MODES = ("coupled", "decoupled")
_DECAY_KEYS = ("weight_decay", "weight_decay_mode", "weight_decay_exclude")


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

# "convention": "torch" -- the class that updates as torch.optim does (Adadelta's rule is the same)
CONVENTIONS = ("keras", "torch")
TORCH_OPTIMIZERS = {"sgd": TorchSGD, "sgdn": TorchSGD, "adadelta": CoupledAdadelta,
                    "adagrad": TorchAdagrad, "adam": TorchAdam, "adamw": TorchAdam,
                    "rmsprop": TorchRMSprop}
_TORCH_ONLY_ARGUMENTS = {"sgd": {"dampening"}, "sgdn": {"dampening"}, "adagrad": {"lr_decay"}}

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
    convention = rest.pop("convention", "keras")
    if convention not in CONVENTIONS:
        raise TinynetError(f"optimizer {name!r}: \"convention\" must be \"torch\" (update as "
                           f"torch.optim and Torch7 do) or \"keras\" (Keras' own rules), got "
                           f"{convention!r}; see tinynet.training.torch_optimizers")
    if convention == "torch" and key not in TORCH_OPTIMIZERS:
        raise TinynetError(f"\"convention\": \"torch\" is available for "
                           f"{', '.join(sorted(TORCH_OPTIMIZERS))}, not {name!r}")
    accepted = _keras_arguments(_KERAS_CLASSES[key]) - ({"nesterov"} if key == "sgdn" else set())
    if convention == "torch":
        accepted |= _TORCH_ONLY_ARGUMENTS.get(key, set())
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

    if convention == "torch":
        cls = TORCH_OPTIMIZERS[key]
        plain = lambda config: cls.from_config(config)  # noqa: E731
    else:
        plain = lambda config: keras.optimizers.get({"class_name": name, "config": config})  # noqa: E731
    decay_keys = [k for k in _DECAY_KEYS if k in rest]
    if not decay_keys or decay_keys == ["weight_decay"] and rest["weight_decay"] is None:
        if convention == "torch" and key == "adamw":
            raise TinynetError("optimizer 'adamw' with \"convention\": \"torch\" needs its "
                               "\"weight_decay\" and \"weight_decay_mode\": \"decoupled\" "
                               "(torch.optim.AdamW's default is 0.01)")
        return _build(lambda: plain(rest), spec)

    wd = check_decay(rest.pop("weight_decay", None), "weight_decay")
    mode = rest.pop("weight_decay_mode", None)
    exclude = check_exclude(rest.pop("weight_decay_exclude", None))
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
            optimizer = plain(dict(rest, weight_decay=wd))
            if exclude:
                optimizer.exclude_from_weight_decay(var_names=[re.escape(s) for s in exclude])
            return optimizer
        return _build(build, spec)
    if key not in COUPLED_OPTIMIZERS:
        hint = " (adamw's decay is decoupled by definition; coupled Adam is \"adam\")" if (
            key == "adamw") else ""
        raise TinynetError(f"coupled weight decay is available for "
                           f"{', '.join(sorted(COUPLED_OPTIMIZERS))}, not {name!r}{hint}")
    cls = TORCH_OPTIMIZERS[key] if convention == "torch" else COUPLED_OPTIMIZERS[key]
    return _build(lambda: cls.from_config(
        dict(rest, coupled_weight_decay=wd, weight_decay_exclude=list(exclude) or None)), spec)


def _build(build, spec):
    try:
        return build()
    except TinynetError:
        raise
    except (ValueError, TypeError) as e:
        raise TinynetError(f"optimizer {spec!r}: {_one_line(e)}") from None
