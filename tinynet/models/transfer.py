"""DenResNet's transfer models (seed 000): ImageNet-pretrained backbones with a new 200-way
head, fine-tuned on Tiny ImageNet (ResNet18/34/50/101/152 and DenseNet121 from PyTorch's model
zoo in the paper; its ensemble is ResNet101 + ResNet152 + DenseNet121).

Every model is one builder, ``build_transfer(backbone, ...)``, over one structure::

    image (None, None, 3), x / 255 on the 0-1 scale
    -> Resizing(image_size, image_size, interpolation)   "resize": the 64 px data stays small
                                                          and the upscaling runs on the device
    -> ImageNetPreprocessing(mode)                        "preprocess": the backbone family's
                                                          keras.applications preprocess_input
    -> backbone, one nested Model                         "backbone": freeze it by that name
    -> GlobalAveragePooling2D                             "avg_pool"
    -> Dropout(dropout), only when dropout > 0            "dropout"
    -> Dense(num_classes, classifier_activation)          "predictions"

Backbones (``BACKBONES`` maps the short names to the registered ones, ``PREPROCESS_MODES``
to the preprocessing each expects). ``source`` chooses who builds them:

``"torchvision"`` (the paper's, and the DenResNet protocol's default) -- tinynet's exact
    torchvision models (``tinynet.models.torchvision_weights``): ResNet18/34/50/101/152
    (``build_resnet(stem="imagenet", variant="a", padding="torch")``: torchvision's "v1.5"
    blocks, its symmetric padding) and DenseNet121 (``tinynet.models.torchvision_densenet``),
    with ``batch_norm`` ``"torch"`` (PyTorch's moving variance) or ``"keras"``; preprocessing
    ``torch``. Converted from a torchvision state dict they compute torchvision's function
    (tests/test_torchvision_weights.py: 1e-15 in float64).
``"keras"`` -- keras.applications' ResNet50/101/152 (v1: Caffe's original ResNet, with conv
    biases, so 26,560 / 52,672 / 75,712 more trainable parameters than torchvision's
    23,508,032 / 42,500,160 / 58,143,808, and the stride of a downsampling block in its first
    1x1 conv), ResNet50V2/101V2/152V2 (not in the paper; torchvision has no v2) and
    DenseNet121 (torchvision's layers, but BN epsilon 1.001e-5); preprocessing ``caffe``,
    ``tf`` and ``torch``. Not the paper's backbones.
``None`` -- what the builder built before ``source`` existed (and what a model recorded
    without it was built with): keras.applications where it has the backbone, else tinynet's
    ResNet18/34 with Keras' "same" padding and BatchNormalization.

Input size: the paper "scaled up" the 64 px images before training, validation and testing
without stating the size; 224 (the size the backbones were trained at) is our choice, the
``image_size`` argument changes it (at least 32, keras.applications' minimum).

``weights``:
    ``None``        random initialisation.
    ``"imagenet"``  the source's ImageNet weights of the backbone (the head stays random):
                    for ``source="torchvision"`` torchvision's ``IMAGENET1K_V1`` (PyTorch's
                    model zoo, what the paper fine-tuned), downloaded once with torch and
                    cached converted, as numpy arrays that need no torch to read, at
                    ``$KERAS_HOME/models/torchvision_<backbone>_imagenet1k_v1.npz``
                    (``tinynet.models.torchvision_weights.imagenet_state_dict``; without torch
                    or offline, one TinynetError says how to convert the file elsewhere); for
                    keras.applications its ``_notop.h5`` file, downloaded and cached by
                    ``keras.utils.get_file`` in ``$KERAS_HOME/models/``.
    ``"torchvision"`` the same as ``"imagenet"`` with ``source="torchvision"``.
    a ``.pth``/``.npz`` a torchvision state dict (a ``.pth`` needs torch to read; the ``.npz``
                    is what the cache holds, ``python -m tinynet.models.torchvision_weights``
                    writes it) loaded into a torchvision-source backbone; a state dict of
                    another architecture or shape is one TinynetError naming the keys.
    another path    a local Keras weights file, decided by what loads, in this order:
                    (a) the whole model's weights (``model.save_weights("x.weights.h5")`` of a
                    transfer model with the same backbone and number of classes, or a
                    ``.keras`` file of one): everything, head included, is loaded;
                    (b) otherwise the backbone's weights only (keras.applications'
                    ``..._notop.h5`` ImageNet file downloaded by hand, or
                    ``model.get_layer("backbone").save_weights("x.weights.h5")``); the head
                    stays random.
                    Keras assigns variables layer by layer before it reports a mismatch, so the
                    model's weights are restored after a failed attempt: what is returned is
                    either (a), (b), or the initial weights with a TinynetError naming the file.
"""
import dataclasses
import inspect
import os
import warnings

import keras
from keras import layers

from tinynet.errors import TinynetError
from tinynet.layers import ImageNetPreprocessing
from tinynet.models.registry import register_model
from tinynet.models.resnet import build_resnet

PAPER = "DenResNet (seed 000): ImageNet-pretrained backbone, new head, Tiny ImageNet"
KERAS_WEIGHTS_URL = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
    """One backbone: where it comes from, its preprocessing and its ImageNet weights file."""
    source: str  # "keras": keras.applications.<constructor>; "tinynet": build_resnet(<name>)
    constructor: str
    preprocess: str  # ImageNetPreprocessing mode = the family's preprocess_input mode
    weights_file: str | None = None  # keras.applications' include_top=False ImageNet file
    weights_hash: str | None = None  # its MD5, as keras.applications checks it
    torchvision_trainable: int | None = None  # torchvision's backbone without fc


def _keras_weights(folder, stem, md5):
    name = f"{stem}_weights_tf_dim_ordering_tf_kernels_notop.h5"
    return {"weights_file": f"{folder}/{name}", "weights_hash": md5}


# File names and MD5s from keras/src/applications/{resnet,densenet}.py (WEIGHTS_HASHES and
# DENSENET121_WEIGHT_PATH_NO_TOP); the tests check them against the installed Keras' source.
SPECS = {
    "resnet18": BackboneSpec("tinynet", "resnet18", "torch", torchvision_trainable=11_176_512),
    "resnet34": BackboneSpec("tinynet", "resnet34", "torch", torchvision_trainable=21_284_672),
    "resnet50": BackboneSpec("keras", "ResNet50", "caffe", **_keras_weights(
        "resnet", "resnet50", "4d473c1dd8becc155b73f8504c6f6626"),
        torchvision_trainable=23_508_032),
    "resnet101": BackboneSpec("keras", "ResNet101", "caffe", **_keras_weights(
        "resnet", "resnet101", "88cf7a10940856eca736dc7b7e228a21"),
        torchvision_trainable=42_500_160),
    "resnet152": BackboneSpec("keras", "ResNet152", "caffe", **_keras_weights(
        "resnet", "resnet152", "ee4c566cf9a93f14d82f913c2dc6dd0c"),
        torchvision_trainable=58_143_808),
    "resnet50v2": BackboneSpec("keras", "ResNet50V2", "tf", **_keras_weights(
        "resnet", "resnet50v2", "fac2f116257151a9d068a22e544a4917")),
    "resnet101v2": BackboneSpec("keras", "ResNet101V2", "tf", **_keras_weights(
        "resnet", "resnet101v2", "c0ed64b8031c3730f411d2eb4eea35b5")),
    "resnet152v2": BackboneSpec("keras", "ResNet152V2", "tf", **_keras_weights(
        "resnet", "resnet152v2", "ed17cf2e0169df9d443503ef94b23b33")),
    "densenet121": BackboneSpec("keras", "DenseNet121", "torch", **_keras_weights(
        "densenet", "densenet121", "30ee3e1110167f948a6b9946edeeb738"),
        torchvision_trainable=6_953_856),
}
BACKBONES = {short: f"transfer_{short}" for short in SPECS}
# the backbones torchvision has, which tinynet builds exactly (tinynet.models.torchvision_weights)
TORCHVISION_BACKBONES = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
                         "densenet121")
PREPROCESS_MODES = {short: spec.preprocess for short, spec in SPECS.items()}
MIN_IMAGE_SIZE = 32  # keras.applications' minimum input size


def imagenet_weights_path(backbone):
    """Where ``keras.utils.get_file`` looks for ``backbone``'s ImageNet file: ``<keras home>/
    models/<file>``, the home being ``$KERAS_HOME`` or ``~/.keras`` (``/tmp/.keras`` when that
    is not writable, as get_file does); None for a backbone without Keras ImageNet weights."""
    spec = _spec(backbone)
    if spec.weights_file is None:
        return None
    try:
        from keras.src.backend.config import keras_home  # what get_file itself uses
        home = os.path.expanduser(keras_home())
    except ImportError:  # a Keras without it: its documented default
        home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    if not os.access(home, os.W_OK):
        home = os.path.join("/tmp", ".keras")
    return os.path.join(home, "models", os.path.basename(spec.weights_file))


def _spec(backbone):
    try:
        return SPECS[backbone]
    except KeyError:
        raise TinynetError(f"unknown transfer backbone {backbone!r}; expected one of "
                           f"{', '.join(SPECS)}") from None


def _build_backbone(backbone, spec, image_size, source, batch_norm):
    shape = (image_size, image_size, 3)
    if source == "torchvision":  # tinynet's torchvision-exact model, headless
        from tinynet.models.torchvision_weights import build_model

        inner = build_model(backbone, input_shape=shape, include_top=False,
                            batch_norm=batch_norm)
        return keras.Model(inner.input, inner.output, name="backbone")
    if spec.source == "keras":
        constructor = getattr(keras.applications, spec.constructor)
        return constructor(include_top=False, weights=None, input_shape=shape, pooling=None,
                           name="backbone")
    # ResNet18/34 as tinynet built them before padding="torch" (Keras' "same" padding)
    inner = build_resnet(spec.constructor, input_shape=shape, include_top=False, variant="a",
                         stem="imagenet", data_format="channels_last")
    return keras.Model(inner.input, inner.output, name="backbone")


def _source(backbone, spec, source):
    """``source`` resolved: None is the backbone's own default (what tinynet built before the
    argument existed: keras.applications, or tinynet's ResNet18/34 with Keras' padding)."""
    if source is None:
        return "tinynet" if spec.source == "tinynet" else "keras"
    if source == "torchvision" and backbone not in TORCHVISION_BACKBONES:
        raise TinynetError(f"torchvision has no {backbone}; its backbones are "
                           f"{', '.join(TORCHVISION_BACKBONES)} (pass source=None or 'keras')")
    if source == "keras" and spec.source != "keras":
        raise TinynetError(f"keras.applications has no {backbone}; pass source='torchvision'")
    return source


def _load_torchvision_arrays(net, arrays, backbone):
    from tinynet.models.torchvision_weights import load_torchvision_state_dict

    load_torchvision_state_dict(net, arrays, backbone, include_top=False)


def _download_imagenet_weights(backbone, spec):
    """keras.applications' ``_notop.h5`` file, through Keras' own download and cache."""
    if spec.weights_file is None:
        raise TinynetError(
            f"no Keras ImageNet weights for {backbone}: keras.applications has no "
            f"{backbone}; torchvision's are --backbone-source torchvision, or pass "
            f"--weights none or --weights <a weights file>")
    name = os.path.basename(spec.weights_file)
    try:
        return keras.utils.get_file(name, KERAS_WEIGHTS_URL + spec.weights_file,
                                    cache_subdir="models", file_hash=spec.weights_hash)
    except Exception as error:  # keras raises a bare Exception for URL errors
        raise TinynetError(
            f"could not download the ImageNet weights of {backbone}: Keras looks for {name} "
            f"in $KERAS_HOME/models/ (default ~/.keras/models/, here "
            f"{os.path.dirname(imagenet_weights_path(backbone))}); download it from "
            f"{KERAS_WEIGHTS_URL}{spec.weights_file} into that folder and re-run, or pass "
            f"--weights <path to {name}> ({_summary(error)})") from error


def _summary(error, limit=300):
    """``error`` on one line (Keras' loading report without its list of objects)."""
    text = " ".join(str(error).split("List of objects")[0].split())
    text = text if len(text) <= limit else text[:limit - 3] + "..."
    return f"{type(error).__name__}: {text}"


def _load_strictly(target, path):
    """``target.load_weights(path)``, failing where Keras would only warn that it left some
    layers "with their freshly-initialized weights" (a file of another structure)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        target.load_weights(path)
    partial = [w for w in caught if "freshly-initialized" in str(w.message)]
    if partial:
        raise ValueError(f"{len(partial)} parts of {target.name} not in the file, e.g. "
                         f"{partial[0].message}")
    for w in caught:  # a clean load: pass Keras' other warnings on
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


def load_transfer_weights(model, path):
    """Loads ``path`` into the whole transfer ``model``, else into its ``backbone`` layer;
    returns ``"model"`` or ``"backbone"`` (what was loaded). See the module docstring."""
    path = os.fspath(path)
    backbone = model.get_layer("backbone")
    expected = (f"a weights file of the whole {model.name} model (model.save_weights(...), "
                f".weights.h5, or a .keras file) or of its backbone only (keras.applications' "
                f"_notop.h5 ImageNet file, or a .weights.h5 saved from the 'backbone' layer)")
    if not os.path.isfile(path):
        raise TinynetError(f"weights file {path} does not exist; expected {expected}")
    initial = model.get_weights()
    errors = []
    for target, what in ((model, "model"), (backbone, "backbone")):
        try:
            _load_strictly(target, path)
            return what
        except Exception as error:  # noqa: BLE001 (any failure: try the next reading)
            model.set_weights(initial)
            errors.append(f"as the {what}: {_summary(error)}")
    raise TinynetError(f"weights file {path} does not fit {model.name} ({'; '.join(errors)}); "
                       f"expected {expected}")


def _check(name, value, ok, expected):
    if not ok:
        raise TinynetError(f"Invalid value for argument `{name}`: expected {expected}. "
                           f"Received: {name}={value!r}")


def build_transfer(backbone, input_shape=(None, None, 3), num_classes=200, image_size=224,
                   weights=None, dropout=0.0, interpolation="bilinear",
                   classifier_activation="softmax", source=None, batch_norm="keras"):
    """Builds the transfer model of ``backbone`` (a key of ``SPECS``); see the module docstring.

    ``input_shape``: the images as fed (0-1 scale, channels last); any size, resized inside the
    model to ``image_size`` with ``interpolation`` (``keras.layers.Resizing``'s names).
    ``dropout``: rate of a Dropout before the new head (0: none). ``weights``: None,
    ``"imagenet"``, ``"torchvision"`` or a path; ``source``: ``"torchvision"``, ``"keras"`` or
    None; ``batch_norm``: ``"torch"`` or ``"keras"`` (module docstring).
    """
    spec = _spec(backbone)
    source = _source(backbone, spec, source)
    if weights == "torchvision":
        if source != "torchvision":
            raise TinynetError(f"weights='torchvision' are torchvision's backbones' weights; "
                               f"pass source='torchvision' (not {source!r})")
        weights = "imagenet"
    if batch_norm not in ("keras", "torch"):
        raise TinynetError(f"batch_norm must be 'keras' or 'torch', got {batch_norm!r}")
    if batch_norm == "torch" and source != "torchvision":
        raise TinynetError(f"batch_norm='torch' needs source='torchvision' (the {source} "
                           f"backbone's layers are Keras' own)")
    _check("input_shape", input_shape,
           isinstance(input_shape, (tuple, list)) and len(input_shape) == 3
           and input_shape[-1] == 3, "(height, width, 3), channels last")
    _check("image_size", image_size,
           isinstance(image_size, int) and not isinstance(image_size, bool)
           and image_size >= MIN_IMAGE_SIZE, f"an integer >= {MIN_IMAGE_SIZE}")
    _check("num_classes", num_classes,
           isinstance(num_classes, int) and not isinstance(num_classes, bool)
           and num_classes >= 1, "an integer >= 1")
    _check("dropout", dropout,
           isinstance(dropout, (int, float)) and not isinstance(dropout, bool)
           and 0 <= dropout < 1, "a float in [0, 1)")
    _check("weights", weights,
           weights is None or isinstance(weights, (str, os.PathLike)),
           "None, 'imagenet', 'torchvision' or the path to a weights file")
    if keras.config.image_data_format() != "channels_last":
        raise TinynetError("transfer models need keras.config.image_data_format() == "
                           "'channels_last' (keras.applications builds its backbones in the "
                           "global format, and the ImageNet weights are channels last)")
    imagenet = None
    if weights == "imagenet":  # fetched before anything is built
        if source == "torchvision":
            from tinynet.models.torchvision_weights import imagenet_state_dict
            imagenet = imagenet_state_dict(backbone)
        else:
            imagenet = _download_imagenet_weights(backbone, spec)

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    x = layers.Resizing(image_size, image_size, interpolation=interpolation, name="resize")(inputs)
    preprocess = "torch" if source == "torchvision" else spec.preprocess
    x = ImageNetPreprocessing(preprocess, data_format="channels_last", name="preprocess")(x)
    net = _build_backbone(backbone, spec, image_size, source, batch_norm)
    if isinstance(imagenet, dict):
        _load_torchvision_arrays(net, imagenet, backbone)
    elif imagenet is not None:
        net.load_weights(imagenet)
    x = net(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    model = keras.Model(inputs, outputs, name=BACKBONES[backbone])
    if weights is not None and weights != "imagenet":
        if str(weights).endswith((".pth", ".pt", ".npz")):  # a torchvision state dict
            if source != "torchvision":
                raise TinynetError(f"{weights} is a PyTorch state dict: it loads into "
                                   f"source='torchvision' backbones, not {source!r} ones")
            from tinynet.models.torchvision_weights import read_state_dict_arrays
            _load_torchvision_arrays(net, read_state_dict_arrays(weights), backbone)
        else:
            load_transfer_weights(model, weights)
    return model


# Parameter counts of the whole model at 200 classes (total, trainable), measured from the
# builder; a registry entry checks them (tests/test_transfer.py).
COUNTS = {
    "resnet18": (11_288_712, 11_279_112),
    "resnet34": (21_404_296, 21_387_272),
    "resnet50": (23_997_512, 23_944_392),
    "resnet101": (43_067_976, 42_962_632),
    "resnet152": (58_780_744, 58_629_320),
    "resnet50v2": (23_974_600, 23_929_160),
    "resnet101v2": (43_036_360, 42_938_696),
    "resnet152v2": (58_741_448, 58_597_704),
    "densenet121": (7_242_504, 7_158_856),
}

_BUILDER_PARAMETERS = [
    p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
    for p in inspect.signature(build_transfer).parameters.values() if p.name != "backbone"]


# How each backbone compares with the paper's torchvision backbone (registry params_note).
_NOTES = {
    "resnet50": "keras.applications' ResNet50 (v1) backbone has 26,560 more trainable "
                "parameters than torchvision's (conv biases; stride in the first 1x1 conv)",
    "resnet101": "keras.applications' ResNet101 (v1) backbone has 52,672 more trainable "
                 "parameters than torchvision's (conv biases; stride in the first 1x1 conv)",
    "resnet152": "keras.applications' ResNet152 (v1) backbone has 75,712 more trainable "
                 "parameters than torchvision's (conv biases; stride in the first 1x1 conv)",
    "densenet121": "the backbone equals torchvision's DenseNet121 features (6,953,856 "
                   "trainable at include_top=False)",
    "resnet18": "backbone = torchvision's ResNet18 without fc (11,176,512 trainable)",
    "resnet34": "backbone = torchvision's ResNet34 without fc (21,284,672 trainable)",
    "resnet50v2": "not in the paper (torchvision has no ResNet v2)",
    "resnet101v2": "not in the paper (torchvision has no ResNet v2)",
    "resnet152v2": "not in the paper (torchvision has no ResNet v2)",
}


def _register(short):
    spec = SPECS[short]

    def entry(**kwargs):
        return build_transfer(short, **kwargs)

    entry.__name__ = entry.__qualname__ = BACKBONES[short]
    entry.__signature__ = inspect.Signature(_BUILDER_PARAMETERS)
    source = ("tinynet.models.resnet, torchvision-exact" if spec.source == "tinynet"
              else f"keras.applications.{spec.constructor}")
    entry.__doc__ = (f"{short} ({source}) with a new head, as DenResNet (seed 000) fine-tuned "
                     f"it; preprocessing {spec.preprocess!r}; {_NOTES[short]}. Arguments: "
                     f"those of build_transfer (image_size 224 by default: the paper's size is "
                     f"not stated).")
    total, trainable = COUNTS[short]
    return register_model(paper=f"{PAPER}; backbone {short} ({source})",
                          input_shape=(64, 64, 3), num_classes=200, total_params=total,
                          trainable_params=trainable, params_note=_NOTES[short])(entry)


for _short in SPECS:
    globals()[BACKBONES[_short]] = _register(_short)
