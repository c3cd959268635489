"""Seed 000's originals: torchvision's ResNets and DenseNet-121 themselves (DenResNet fine-tuned
torchvision's model-zoo networks with ``torch.optim.SGD``). Nothing is transliterated: this
module pairs tinynet's Keras model with the torchvision module for ``tools/fidelity.py``, by
the name map of ``tinynet.models.torchvision_weights`` (``module_map``), in the interface the
other originals' modules have (``keras_torch_pairs``, ``copy_from_keras``,
``to_torch_layout``)."""
import numpy as np
import torch

from tinynet.models import torchvision_weights as tw

_FIELDS = {"conv": ("weight",), "bn": ("weight", "bias", "running_mean", "running_var"),
           "linear": ("weight", "bias")}


def build_original(architecture, num_classes):
    """``torchvision.models.<architecture>(weights=None, num_classes=...)``."""
    import torchvision

    return getattr(torchvision.models, architecture)(weights=None, num_classes=num_classes)


def to_torch_layout(value, kind):
    """A Keras weight (numpy) in PyTorch's layout: ``conv`` (kh, kw, I, O) -> (O, I, kh, kw),
    ``dense`` (in, out) -> (out, in), ``vector`` unchanged."""
    value = np.asarray(value)
    return {"conv": lambda v: np.transpose(v, (3, 2, 0, 1)), "dense": np.transpose,
            "vector": lambda v: v}[kind](value)


def keras_torch_pairs(torch_model, keras_model, architecture=None):
    """``[(keras variable, state_dict key, kind)]`` over every weight and BN statistic; a
    ``ValueError`` when either side has one the other lacks."""
    architecture = architecture or keras_model.name
    pairs = []
    for module, layer_name, kind in tw.module_map(architecture, include_top=True):
        layer = keras_model.get_layer(layer_name)
        variables = ([layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance]
                     if kind == "bn" else [layer.kernel] + ([layer.bias] if kind == "linear"
                                                            else []))
        for variable, field in zip(variables, _FIELDS[kind]):
            layout = ("conv" if kind == "conv" else "dense") if field == "weight" and (
                kind != "bn") else "vector"
            pairs.append((variable, f"{module}.{field}", layout))
    state = {k for k in torch_model.state_dict() if not k.endswith("num_batches_tracked")}
    keys = {key for _, key, _ in pairs}
    mapped = {id(v) for v, _, _ in pairs}
    left = [w.path for w in keras_model.weights if id(w) not in mapped]
    if keys != state or left:
        raise ValueError(f"unpaired: torch {sorted(state - keys)[:5]}, keras "
                         f"{sorted(keys - state)[:5]} {left[:5]}")
    return pairs


def copy_from_keras(torch_model, keras_model):
    """tinynet's weights (BN statistics included) into the torchvision module, in place."""
    state = torch_model.state_dict()
    with torch.no_grad():
        for variable, key, kind in keras_torch_pairs(torch_model, keras_model):
            value = np.ascontiguousarray(to_torch_layout(np.asarray(variable.numpy()), kind))
            state[key].copy_(torch.from_numpy(value))
    return torch_model
