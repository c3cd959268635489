"""Writes tests/data/torchvision/<architecture>.json: what tests/test_torchvision_weights.py
needs to check tinynet's torchvision converter without torch (CI has none).

Run once with torch and torchvision installed (nothing is downloaded; the models are built
with ``weights=None``)::

    /work/venv-torch/bin/python tools/make_torchvision_fixtures.py

For resnet18, resnet50 (the bottleneck mapping) and densenet121 it records torchvision's
``state_dict`` key names, shapes and dtypes, and for every tensor the rule that fills it from
numpy alone: ``center + scale * (2 * np.random.default_rng(seed).random(shape) - 1)`` with
``seed = zlib.crc32(key)`` (uniform: numpy's ``random()`` takes the top 53 bits of PCG64's
output, the most stable stream numpy has). Scales keep the activations of the eval-mode
network of order one: convs He-uniform (sqrt(6 / fan_in)), linear weights sqrt(3 / fan_in),
BN gamma 1 +- 0.25, beta and running_mean +- 0.1, running_var 1 +- 0.5 (positive),
``num_batches_tracked`` 0. The input is ``2 * default_rng(INPUT_SEED).random((2, 3, 64, 64))
- 1`` (NCHW; the test feeds its NHWC transpose). With those weights loaded, the model is run
in eval mode in float64 and its logits (1000 classes) stored, exactly (JSON floats round-trip).

For the ResNets it also stores ``logits_keras_same_padding``: the same network with every conv
and max pool padded as Keras' ``padding="same"`` pads (total padding ``max((ceil(n / s) - 1) *
s + k - n, 0)``, the smaller half at the top/left), which is what tinynet.models.resnet builds
today; the test checks the weight mapping against it exactly and reports the difference from
torchvision's own (symmetric) padding.
"""
import json
import math
import pathlib
import sys
import zlib

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

OUT = pathlib.Path(__file__).resolve().parents[1] / "tests" / "data" / "torchvision"
ARCHITECTURES = ("resnet18", "resnet50", "densenet121")
INPUT_SEED = 20240601
INPUT_SHAPE = (2, 3, 64, 64)  # NCHW; densenet121 needs >= 32 px


def fill_rule(key, shape, keys):
    """``(center, scale)`` of the uniform fill of state-dict entry ``key``."""
    module, _, tensor = key.rpartition(".")
    is_bn = f"{module}.running_var" in keys
    if tensor == "num_batches_tracked":
        return 0.0, 0.0
    if is_bn:
        return {"weight": (1.0, 0.25), "bias": (0.0, 0.1), "running_mean": (0.0, 0.1),
                "running_var": (1.0, 0.5)}[tensor]
    if tensor == "bias":
        return 0.0, 0.1
    fan_in = math.prod(shape[1:])
    return 0.0, math.sqrt((6.0 if len(shape) == 4 else 3.0) / fan_in)


def fill(entry):
    """The array of one fixture entry (the test has the same three lines)."""
    rng = np.random.default_rng(entry["seed"])
    shape = tuple(entry["shape"])
    if entry["scale"] == 0:
        return np.full(shape, entry["center"], dtype=entry["dtype"])
    return (entry["center"] + entry["scale"] * (2.0 * rng.random(shape) - 1.0)).astype(
        entry["dtype"])


def _pair(value):
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


class KerasSamePadding(nn.Module):
    """``module`` (a Conv2d or MaxPool2d) with its padding replaced by Keras' "same" one."""

    def __init__(self, module):
        super().__init__()
        self.module = module
        self.kernel, self.stride = _pair(module.kernel_size), _pair(module.stride)
        self.value = -math.inf if isinstance(module, nn.MaxPool2d) else 0.0
        module.padding = 0 if isinstance(module, nn.MaxPool2d) else (0, 0)

    def forward(self, x):
        pads = []
        for dim, k, s in ((3, self.kernel[1], self.stride[1]), (2, self.kernel[0],
                                                              self.stride[0])):
            n = x.shape[dim]
            total = max((math.ceil(n / s) - 1) * s + k - n, 0)
            pads += [total // 2, total - total // 2]
        return self.module(F.pad(x, pads, value=self.value))


def keras_same_padded(model):
    for name, module in list(model.named_modules()):
        if isinstance(module, (nn.Conv2d, nn.MaxPool2d)):
            parent = model.get_submodule(name.rpartition(".")[0]) if "." in name else model
            setattr(parent, name.rpartition(".")[2], KerasSamePadding(module))
    return model


def make(architecture):
    torch.set_default_dtype(torch.float64)
    model = getattr(torchvision.models, architecture)(weights=None).double().eval()
    state = model.state_dict()
    keys = set(state)
    entries = []
    for key, value in state.items():
        shape = list(value.shape)
        center, scale = fill_rule(key, shape, keys)
        dtype = "int64" if value.dtype == torch.int64 else "float64"
        entries.append({"key": key, "shape": shape, "dtype": dtype,
                        "seed": zlib.crc32(key.encode()), "center": center, "scale": scale})
    model.load_state_dict({e["key"]: torch.from_numpy(fill(e)) for e in entries})
    image = 2.0 * np.random.default_rng(INPUT_SEED).random(INPUT_SHAPE) - 1.0
    with torch.no_grad():
        logits = model(torch.from_numpy(image)).numpy()
        record = {
            "architecture": architecture,
            "made_by": "tools/make_torchvision_fixtures.py",
            "versions": {"torch": torch.__version__, "torchvision": torchvision.__version__,
                         "numpy": np.__version__},
            "fill": "center + scale * (2 * np.random.default_rng(seed).random(shape) - 1), "
                    "cast to dtype; scale 0: np.full(shape, center)",
            "input": {"seed": INPUT_SEED, "shape_nchw": list(INPUT_SHAPE),
                      "rule": "2 * np.random.default_rng(seed).random(shape_nchw) - 1"},
            "entries": entries,
            "logits": logits.tolist(),
        }
        if architecture.startswith("resnet"):
            record["logits_keras_same_padding"] = keras_same_padded(model)(
                torch.from_numpy(image)).numpy().tolist()
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{architecture}.json"
    path.write_text(json.dumps(record, separators=(",", ":")) + "\n")
    print(f"{path}: {len(entries)} entries, {path.stat().st_size:,} bytes, logits "
          f"{logits.shape}, max |logit| {np.abs(logits).max():.4g}")


if __name__ == "__main__":
    for name in sys.argv[1:] or ARCHITECTURES:
        make(name)
