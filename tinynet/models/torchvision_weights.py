"""torchvision ``state_dict`` checkpoints -> tinynet's Keras models (DenResNet, seed 000, fine-
tuned torchvision's ImageNet ResNet-18/34/50/101/152 and DenseNet-121).

``ARCHITECTURES`` names the tinynet model each torchvision architecture loads into:

    resnet18/34/50/101/152  ``tinynet.models.resnet.build_resnet(name, stem="imagenet",
                            variant="a", batch_norm="torch")``: torchvision/models/resnet.py's
                            ``ResNet`` ("v1.5": the stride in the 3x3 conv of a bottleneck)
    densenet121             ``tinynet.models.torchvision_densenet.build_densenet121``:
                            torchvision/models/densenet.py's ``densenet121``

Key names (torchvision -> Keras layer; ``.weight`` etc. -> the layer's variables)::

    conv1, bn1                                   stem_conv, stem_bn
    layer{s}.{j}.conv{k}, layer{s}.{j}.bn{k}     stage{s}_block{j+1}_conv{k}, ..._bn{k}
    layer{s}.{j}.downsample.0, .downsample.1     stage{s}_block{j+1}_shortcut_conv, ..._bn
    fc                                           predictions
    features.<...>, classifier (DenseNet)        the key with "." -> "_" (same layer names)

Tensors: a conv weight (out, in, kh, kw) -> kernel (kh, kw, in, out); a linear weight
(out, in) -> kernel (in, out); bias -> bias; BN weight, bias, running_mean, running_var ->
gamma, beta, moving_mean, moving_variance; ``num_batches_tracked`` is ignored (Keras keeps no
such counter; the momentum is fixed). ``fc.*`` / ``classifier.*`` load only with
``include_top=True``; for a headless backbone they are skipped whether present or not.

Accepted spellings: DenseNet's old keys ``denselayerN.norm.1`` etc. (the ones in torchvision's
own ``densenet121-a639ec97.pth``, which torchvision renames with the same pattern on load) and
the ``module.`` prefix of a state dict saved from ``nn.DataParallel``. ``state_dict_arrays``
reads a file holding the state dict itself, or a dict holding it under ``"state_dict"`` or
``"model"`` (a training checkpoint; its other entries are ignored) -- one level, no search.

Every check (architecture, keys, dtypes, the model's layers, shapes) runs before the first
variable is assigned, so a failed load raises one ``TinynetError`` and leaves the model's
weights as they were.

ResNet caveat: tinynet's ResNet pads its stride-2 convs (the 7x7 stem conv and the 3x3 conv of
each downsampling block) and the stem max pool as Keras' ``padding="same"`` does (none at the
top/left, one more pixel at the bottom/right), where torchvision pads symmetrically. The
weights map one to one, but a converted ResNet computes a shifted function of torchvision's
until ``tinynet.models.resnet`` pads those layers explicitly (``ZeroPadding2D`` + ``valid``);
``tests/test_torchvision_weights.py`` measures both. DenseNet-121 pads explicitly and matches.

The weight files of torchvision's ``IMAGENET1K_V1`` (PyTorch's model zoo, the paper's
weights) are named in ``ARCHITECTURES`` (``weights_url``); nothing here downloads them.
"""
import dataclasses
import os
import re

import numpy as np

from tinynet.errors import TinynetError

BN_TENSORS = ("weight", "bias", "running_mean", "running_var")
IGNORED_SUFFIX = ".num_batches_tracked"
TORCHVISION_URL = "https://download.pytorch.org/models/"
# torchvision's DenseNet._load_state_dict pattern for its old key names ("norm.1" -> "norm1").
_OLD_DENSENET_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|"
    r"running_var))$")


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A torchvision architecture and the tinynet model its state dict loads into."""
    family: str  # "resnet" or "densenet"
    builder: str  # the tinynet builder, for messages
    weights_file: str  # torchvision's IMAGENET1K_V1 file name
    torchvision_params: int  # torchvision's trainable parameters at 1000 classes

    @property
    def weights_url(self):
        return TORCHVISION_URL + self.weights_file


_RESNET = ("tinynet.models.resnet.build_resnet({!r}, stem='imagenet', variant='a', "
           "padding='torch')")
ARCHITECTURES = {
    "resnet18": Architecture("resnet", _RESNET.format("resnet18"), "resnet18-f37072fd.pth",
                             11_689_512),
    "resnet34": Architecture("resnet", _RESNET.format("resnet34"), "resnet34-b627a593.pth",
                             21_797_672),
    "resnet50": Architecture("resnet", _RESNET.format("resnet50"), "resnet50-0676ba61.pth",
                             25_557_032),
    "resnet101": Architecture("resnet", _RESNET.format("resnet101"), "resnet101-63fe2227.pth",
                              44_549_160),
    "resnet152": Architecture("resnet", _RESNET.format("resnet152"), "resnet152-394f9c45.pth",
                              60_192_808),
    "densenet121": Architecture(
        "densenet", "tinynet.models.torchvision_densenet.build_densenet121()",
        "densenet121-a639ec97.pth", 7_978_856),
}


def _architecture(name):
    try:
        return ARCHITECTURES[name]
    except (KeyError, TypeError):
        raise TinynetError(f"unknown torchvision architecture {name!r}; expected one of "
                           f"{', '.join(ARCHITECTURES)}") from None


def build_model(architecture, input_shape=(224, 224, 3), num_classes=1000, include_top=True,
                classifier_activation="softmax", batch_norm="torch"):
    """The tinynet model ``architecture``'s state dict loads into (``ARCHITECTURES``), channels
    last; ``include_top=False`` ends at the last feature maps (no pooling, no head)."""
    spec = _architecture(architecture)
    if spec.family == "densenet":
        from tinynet.models.torchvision_densenet import build_densenet121

        return build_densenet121(input_shape, num_classes, include_top, batch_norm,
                                 classifier_activation, name=architecture)
    from tinynet.models.resnet import build_resnet

    return build_resnet(architecture, input_shape, num_classes, include_top,
                        classifier_activation, variant="a", stem="imagenet",
                        batch_norm=batch_norm, data_format="channels_last", padding="torch")


def _resnet_modules(architecture):
    """``(torchvision module, Keras layer, kind)`` of a ResNet's backbone, in order."""
    from tinynet.models.resnet import SPECS

    kind, repeats = SPECS[architecture]
    convs = 2 if kind == "basic" else 3
    modules = [("conv1", "stem_conv", "conv"), ("bn1", "stem_bn", "bn")]
    for s, n in enumerate(repeats, start=1):
        for j in range(n):
            block = f"stage{s}_block{j + 1}"
            for k in range(1, convs + 1):
                modules += [(f"layer{s}.{j}.conv{k}", f"{block}_conv{k}", "conv"),
                            (f"layer{s}.{j}.bn{k}", f"{block}_bn{k}", "bn")]
            # torchvision projects where the stride or the width changes: the first block of
            # stages 2-4, and of stage 1 with bottlenecks (64 -> 256), as tinynet does.
            if j == 0 and (s > 1 or kind == "bottleneck"):
                modules += [(f"layer{s}.{j}.downsample.0", f"{block}_shortcut_conv", "conv"),
                            (f"layer{s}.{j}.downsample.1", f"{block}_shortcut_bn", "bn")]
    return modules


def _densenet_modules():
    from tinynet.models.torchvision_densenet import BLOCK_CONFIG

    modules = [("features.conv0", "conv"), ("features.norm0", "bn")]
    for b, n in enumerate(BLOCK_CONFIG, start=1):
        for j in range(1, n + 1):
            layer = f"features.denseblock{b}.denselayer{j}"
            modules += [(f"{layer}.norm1", "bn"), (f"{layer}.conv1", "conv"),
                        (f"{layer}.norm2", "bn"), (f"{layer}.conv2", "conv")]
        if b < len(BLOCK_CONFIG):
            modules += [(f"features.transition{b}.norm", "bn"),
                        (f"features.transition{b}.conv", "conv")]
    modules.append(("features.norm5", "bn"))
    return [(m, m.replace(".", "_"), kind) for m, kind in modules]


def module_map(architecture, include_top=True):
    """``[(torchvision module, Keras layer name, kind)]`` for ``architecture``; kind is
    ``conv``, ``bn`` or ``linear`` (the head: ``fc`` / ``classifier``, with include_top)."""
    spec = _architecture(architecture)
    if spec.family == "densenet":
        modules, head = _densenet_modules(), ("classifier", "classifier", "linear")
    else:
        modules, head = _resnet_modules(architecture), ("fc", "predictions", "linear")
    return modules + [head] if include_top else modules


def _tensor_names(kind):
    return {"conv": ("weight",), "bn": BN_TENSORS, "linear": ("weight", "bias")}[kind]


def expected_keys(architecture, include_top=True):
    """torchvision's ``state_dict`` keys of ``architecture`` (without num_batches_tracked)."""
    return [f"{m}.{t}" for m, _, kind in module_map(architecture, include_top)
            for t in _tensor_names(kind)]


def _head_prefix(architecture):
    return "classifier." if _architecture(architecture).family == "densenet" else "fc."


def normalize_keys(arrays):
    """The state dict with ``num_batches_tracked`` dropped, a common ``module.`` prefix
    removed and DenseNet's old ``norm.1``-style keys renamed as torchvision renames them."""
    keys = [k for k in arrays if not k.endswith(IGNORED_SUFFIX)]
    strip = bool(keys) and all(k.startswith("module.") for k in keys)
    out = {}
    for key in keys:
        new = key[len("module."):] if strip else key
        match = _OLD_DENSENET_KEY.match(new)
        if match:
            new = match.group(1) + match.group(2)
        out[new] = arrays[key]
    return out


def _listed(keys, limit=5):
    keys = sorted(keys)
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _looks_like(keys):
    """The architectures whose backbone keys are exactly ``keys``' (head keys aside)."""
    found = []
    for name in ARCHITECTURES:
        head = _head_prefix(name)
        if {k for k in keys if not k.startswith(head)} == set(expected_keys(name, False)):
            found.append(name)
    return found


def _check_keys(arrays, architecture, include_top):
    expected = set(expected_keys(architecture, include_top))
    given = set(arrays)
    if not include_top:  # a headless backbone: the head's keys are skipped, present or not
        given = {k for k in given if not k.startswith(_head_prefix(architecture))}
    missing, unexpected = sorted(expected - given), sorted(given - expected)
    if not (missing or unexpected):
        return
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing keys ({_listed(missing)})")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected keys ({_listed(unexpected)})")
    like = [n for n in _looks_like(set(arrays)) if n != architecture]
    hint = (f"; it looks like torchvision's {' or '.join(like)}: pass architecture="
            f"{like[0]!r}" if like else "")
    head = (" (include_top=True needs the fc/classifier keys; pass include_top=False to "
            "load the backbone only)" if include_top and all(
                k.startswith(_head_prefix(architecture)) for k in missing) and not unexpected
            else "")
    example = ARCHITECTURES[architecture].weights_file
    raise TinynetError(f"the state dict is not torchvision's {architecture}: "
                       f"{'; '.join(parts)}{hint}{head}; expected a state_dict of "
                       f"torchvision.models.{architecture} (e.g. {example})")


def _check_dtypes(arrays, keys):
    for key in keys:
        dtype = np.asarray(arrays[key]).dtype
        if dtype.kind != "f":
            raise TinynetError(f"state dict entry {key} has dtype {dtype}, not a float; "
                               f"expected float weights (convert the checkpoint with "
                               f"model.float() before torch.save(model.state_dict(), ...))")


def _variables(layer, kind):
    """The layer's variables in the order of ``_tensor_names(kind)``."""
    if kind == "bn":
        return [layer.gamma, layer.beta, layer.moving_mean, layer.moving_variance]
    if kind == "linear":
        return [layer.kernel, layer.bias]
    return [layer.kernel]


def _to_keras(array, kind, tensor):
    array = np.asarray(array)
    if tensor == "weight" and kind == "conv" and array.ndim == 4:
        return array.transpose(2, 3, 1, 0)
    if tensor == "weight" and kind == "linear" and array.ndim == 2:
        return array.T
    return array


def _torch_shape(shape, kind, tensor):
    """A Keras variable's shape in torchvision's layout (for messages)."""
    shape = tuple(shape)
    if tensor == "weight" and kind == "conv" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if tensor == "weight" and kind == "linear" and len(shape) == 2:
        return (shape[1], shape[0])
    return shape


def _layer(model, name, kind, architecture):
    import keras

    classes = {"conv": keras.layers.Conv2D, "bn": keras.layers.BatchNormalization,
               "linear": keras.layers.Dense}
    build = ARCHITECTURES[architecture].builder
    try:
        layer = model.get_layer(name)
    except ValueError:
        layer = None
    if not isinstance(layer, classes[kind]):
        found = "has none" if layer is None else f"has a {type(layer).__name__}"
        raise TinynetError(f"model {model.name} is not tinynet's {architecture}: it {found} "
                           f"where a {classes[kind].__name__} layer {name!r} should be; build "
                           f"it with tinynet.models.torchvision_weights.build_model"
                           f"({architecture!r}) ({build})")
    if kind == "bn" and not (layer.center and layer.scale and np.isclose(layer.epsilon, 1e-5)):
        raise TinynetError(f"batch norm {name!r} of {model.name} has epsilon {layer.epsilon} "
                           f"center={layer.center} scale={layer.scale}; torchvision's are "
                           f"1e-5 with both: build the model with build_model({architecture!r})")
    if kind == "linear" and not layer.use_bias:
        raise TinynetError(f"dense layer {name!r} of {model.name} has no bias; torchvision's "
                           f"head has one: build the model with build_model({architecture!r})")
    return layer


def _check_structure(model, architecture, include_top):
    """What the weights cannot show: the ResNet block variant (a: ReLU after the addition)."""
    if ARCHITECTURES[architecture].family != "resnet":
        return
    names = {layer.name for layer in model.layers}
    if "stage1_block1_out_relu" not in names or "stage1_block1_out_bn" in names:
        raise TinynetError(f"model {model.name} is not tinynet's {architecture} variant 'a' "
                           f"(torchvision's blocks: ReLU after the addition); build it with "
                           f"{ARCHITECTURES[architecture].builder}")
    mapped = {name for _, name, _ in module_map(architecture, include_top)}
    extra = [layer.name for layer in model.layers if layer.weights and layer.name not in mapped
             and not (layer.name == "predictions" and not include_top)]
    if extra:
        raise TinynetError(f"model {model.name} has layers torchvision's {architecture} lacks "
                           f"({_listed(extra)}); build it with "
                           f"{ARCHITECTURES[architecture].builder}")


def load_torchvision_state_dict(model, arrays, architecture, include_top=True):
    """Assigns torchvision ``architecture``'s state dict ``arrays`` ({key: array}, as
    ``state_dict_arrays`` returns) to the tinynet ``model`` (``build_model(architecture,
    include_top=...)``); returns the number of tensors assigned. Module docstring: the names,
    layouts, accepted spellings and the all-or-nothing rule."""
    _architecture(architecture)
    arrays = normalize_keys(arrays)
    _check_keys(arrays, architecture, include_top)
    modules = module_map(architecture, include_top)
    found = [_layer(model, name, kind, architecture) for _, name, kind in modules]
    _check_structure(model, architecture, include_top)
    plan = []
    for (module, name, kind), layer in zip(modules, found):
        tensors = _tensor_names(kind)
        _check_dtypes(arrays, [f"{module}.{t}" for t in tensors])
        for tensor, variable in zip(tensors, _variables(layer, kind)):
            key = f"{module}.{tensor}"
            value = _to_keras(arrays[key], kind, tensor)
            if tuple(value.shape) != tuple(variable.shape):
                fix = ("a head for another number of classes: build the model with that "
                       "num_classes, or pass include_top=False to load the backbone only"
                       if kind == "linear" else
                       f"expected torchvision.models.{architecture}'s own widths (a modified "
                       f"or width-scaled model does not fit)")
                raise TinynetError(
                    f"state dict entry {key} has shape {tuple(np.shape(arrays[key]))} but "
                    f"{model.name}'s layer {name!r} needs "
                    f"{_torch_shape(variable.shape, kind, tensor)} (torchvision layout); "
                    f"{fix}")
            plan.append((variable, value))
    previous = [np.array(variable.numpy()) for variable, _ in plan]
    try:
        for variable, value in plan:
            variable.assign(value.astype(variable.dtype))
    except Exception:
        for (variable, _), old in zip(plan, previous):
            variable.assign(old)
        raise
    return len(plan)


def _summary(error, limit=300):
    text = " ".join(str(error).split())
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(error).__name__}: {text}"


def state_dict_arrays(path):
    """``{key: numpy array}`` of the PyTorch state dict saved at ``path`` (``torch.load(path,
    map_location="cpu", weights_only=True)``; the dict itself, or one under a ``"state_dict"``
    or ``"model"`` key). Needs torch, imported here only; without it, one ``TinynetError``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise TinynetError(f"torchvision weights file {path} does not exist; expected a .pth "
                           f"state dict (e.g. from {TORCHVISION_URL})")
    try:
        import torch
    except ImportError:
        raise TinynetError(
            f"reading the PyTorch file {path} needs torch, which is not installed: pip install "
            f"torch (the CPU build is enough), or pass a Keras weights file already converted "
            f"from it (.weights.h5, by tinynet.models.torchvision_weights."
            f"convert_torchvision_file on a machine with torch)") from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 (zip, pickle and torch errors alike)
        raise TinynetError(f"could not read {path} as a PyTorch state dict ({_summary(error)});"
                           f" the file is damaged, truncated or not a torch.save file: "
                           f"download it again") from error
    state = loaded
    if isinstance(loaded, dict):
        for outer in ("state_dict", "model"):
            if isinstance(loaded.get(outer), dict):
                state = loaded[outer]
                break
    if not isinstance(state, dict) or not state:
        raise TinynetError(f"{path} holds a {type(state).__name__}, not a state dict; expected "
                           f"torch.save(model.state_dict(), path) (or a dict holding it under "
                           f"'state_dict' or 'model')")
    arrays = {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            raise TinynetError(f"{path}: entry {key!r} is a {type(value).__name__}, not a "
                               f"tensor; expected torch.save(model.state_dict(), path)")
        value = value.detach().cpu()
        if value.dtype == torch.bfloat16:  # numpy has no bfloat16
            value = value.float()
        arrays[str(key)] = value.numpy()
    return arrays


def save_converted_weights(arrays, architecture, out_path, batch_norm="torch"):
    """Writes ``arrays`` (a torchvision state dict) as the Keras ``.weights.h5`` of
    ``architecture``'s headless backbone (``build_model(architecture, include_top=False)``),
    atomically (a temporary file renamed into place); returns ``out_path``."""
    out_path = os.fspath(out_path)
    if not out_path.endswith(".weights.h5"):
        raise TinynetError(f"Keras weights files end with .weights.h5; got {out_path}")
    model = build_model(architecture, include_top=False, batch_norm=batch_norm)
    load_torchvision_state_dict(model, arrays, architecture, include_top=False)
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(out_path)}.{os.getpid()}.weights.h5")
    try:
        model.save_weights(temporary)
        os.replace(temporary, out_path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return out_path


def convert_torchvision_file(pth_path, architecture, out_path, batch_norm="torch"):
    """torchvision ``.pth`` state dict -> the Keras ``.weights.h5`` of ``architecture``'s
    headless backbone (what a ``--weights torchvision`` run caches under ``KERAS_HOME``): it
    loads with ``model.load_weights(out_path)`` into ``build_model(architecture,
    include_top=False, batch_norm=batch_norm)`` at any input size, or a model of the same
    layers (e.g. transfer_resnet18's ``backbone``). Returns ``out_path``.

    ``batch_norm`` must be the one of the model that will load the file: Keras 3 names the
    groups of a ``.weights.h5`` file by layer class and order (``layers/batch_normalization_3``
    vs ``layers/torch_batch_normalization_3``), not by layer name, so a file written from
    TorchBatchNormalization layers does not load into BatchNormalization ones (Keras raises
    "expected 4 variables, but received 0"), although their variables are the same."""
    _architecture(architecture)
    return save_converted_weights(state_dict_arrays(pth_path), architecture, out_path,
                                  batch_norm)


# --- torchvision's ImageNet weights, converted once and cached --------------------------------

def cached_imagenet_path(architecture):
    """Where the converted ImageNet weights of ``architecture`` are cached: ``<keras home>/
    models/torchvision_<architecture>_imagenet1k_v1.npz``, the keras home being
    ``$KERAS_HOME`` as it is now, else the one Keras' own ``get_file`` uses (``~/.keras``)."""
    _architecture(architecture)
    home = os.environ.get("KERAS_HOME")
    if not home:
        try:
            from keras.src.backend.config import keras_home  # what get_file itself uses
            home = keras_home()
        except ImportError:  # a Keras without it: its documented default
            home = os.path.join("~", ".keras")
    home = os.path.expanduser(home)
    return os.path.join(home, "models", f"torchvision_{architecture}_imagenet1k_v1.npz")


def save_state_dict_arrays(arrays, out_path):
    """``arrays`` (a state dict as numpy arrays) as an ``.npz`` (no pickle: readable without
    torch, by ``read_state_dict_arrays``), written atomically; returns ``out_path``."""
    out_path = os.fspath(out_path)
    folder = os.path.dirname(os.path.abspath(out_path))
    os.makedirs(folder, exist_ok=True)
    temporary = os.path.join(folder, f".{os.path.basename(out_path)}.{os.getpid()}.npz")
    try:
        np.savez(temporary, **arrays)
        os.replace(temporary, out_path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return out_path


def read_state_dict_arrays(path):
    """A state dict from a ``.pth`` (needs torch: ``state_dict_arrays``) or from the ``.npz``
    ``save_state_dict_arrays`` writes (no torch); one ``TinynetError`` for a damaged file."""
    path = os.fspath(path)
    if not path.endswith(".npz"):
        return state_dict_arrays(path)
    if not os.path.isfile(path):
        raise TinynetError(f"converted torchvision weights file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except Exception as error:  # noqa: BLE001 (zip and format errors alike)
        raise TinynetError(f"could not read {path} as converted torchvision weights "
                           f"({_summary(error)}); the file is damaged or truncated: delete "
                           f"that file (a download cache) and run again, or convert it anew "
                           f"with python -m tinynet.models.torchvision_weights") from error


def imagenet_state_dict(architecture):
    """torchvision's ``IMAGENET1K_V1`` weights of ``architecture`` (PyTorch's model zoo, the
    weights DenResNet fine-tuned) as numpy arrays: from the cache (``cached_imagenet_path``),
    else downloaded once with torch's own ``load_state_dict_from_url`` (its hash checked),
    converted and cached. Without torch, or offline, one ``TinynetError`` says what to do."""
    spec = _architecture(architecture)
    cache = cached_imagenet_path(architecture)
    if os.path.exists(cache):
        return read_state_dict_arrays(cache)
    try:
        import torch.hub
    except ImportError:
        raise TinynetError(
            f"torchvision's ImageNet weights of {architecture} are converted once from PyTorch's "
            f"file, which needs torch: pip install torch (the CPU build is enough), or convert "
            f"{spec.weights_url} on a machine with torch (python -m "
            f"tinynet.models.torchvision_weights {architecture} <file.pth> {cache}) and put "
            f"the result at {cache}, or pass --weights <that .npz or the .pth>") from None
    try:
        state = torch.hub.load_state_dict_from_url(spec.weights_url, map_location="cpu",
                                                   check_hash=True, weights_only=True)
    except Exception as error:  # noqa: BLE001 (URL, hash and file errors alike)
        raise TinynetError(
            f"could not download torchvision's ImageNet weights of {architecture} from "
            f"{spec.weights_url} ({_summary(error)}); download that file by hand and pass "
            f"--weights <file.pth>, or put its conversion at {cache}") from error
    arrays = {str(k): v.detach().cpu().float().numpy() for k, v in state.items()}
    save_state_dict_arrays(arrays, cache)
    return arrays


def main(argv=None):
    """``python -m tinynet.models.torchvision_weights ARCHITECTURE FILE.pth [OUT.npz]``:
    converts a torchvision state dict once (needs torch) into the ``.npz`` tinynet reads
    without torch (default: the ImageNet cache path of ``cached_imagenet_path``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m tinynet.models.torchvision_weights",
                                     description=main.__doc__.split("\n\n")[0])
    parser.add_argument("architecture", choices=sorted(ARCHITECTURES))
    parser.add_argument("pth")
    parser.add_argument("out", nargs="?")
    args = parser.parse_args(argv)
    try:
        arrays = state_dict_arrays(args.pth)
        model = build_model(args.architecture, input_shape=(64, 64, 3), include_top=False)
        load_torchvision_state_dict(model, arrays, args.architecture, include_top=False)
        out = save_state_dict_arrays(arrays, args.out or cached_imagenet_path(args.architecture))
    except TinynetError as error:
        print(f"error: {error}", flush=True)
        return 2
    print(f"{args.pth} -> {out} ({len(arrays)} tensors; loads into tinynet's "
          f"{args.architecture})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
