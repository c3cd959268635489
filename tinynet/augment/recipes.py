"""Each paper's augmentation recipe as data: a registry of named augmentation trees.

A recipe is a DATA tree (``Recipe.pipeline``), written once and run by every backend, plus the
``input_size`` it expects (None: any):

- ``T(kind, **params)``: one transform; ``kind`` is the imgaug augmenter class name
  (``"Fliplr"``, ``"Affine"``, ...), ``params`` exactly the keyword arguments that class takes.
  Values keep imgaug's parameter semantics: a number is deterministic, a tuple ``(a, b)`` a
  uniform range, a list a choice; imgaug's ``ALL`` constant is the string ``"ALL"``, built as
  the explicit list ``all_values(kind, name)`` (a fixed, documented order: never imgaug's own
  expansion, which for ``pad_mode`` follows PYTHONHASHSEED). Lists and
  dicts are stored frozen (``FrozenList``, ``FrozenDict``) and thawed when built, so a node
  is hashable and builds exactly the call it was written as.
- ``Sometimes(p, child)``, ``SomeOf(n, children, random_order)``,
  ``Sequential(children, random_order=False)``: imgaug's containers.

``to_imgaug(node)`` builds the imgaug augmenter of any node (children first, then the
container: the same constructor calls, in the same order, as a hand-written imgaug pipeline, so
a seed gives that pipeline's output bit for bit -- except where the pipeline would pass imgaug's
``ALL`` for ``pad_mode``: DenseNet Model 2's CropAndPad draws from the fixed list
``PAD_MODES_ALL`` instead, so its stream differs from what imgaug's own ``ALL`` gives, which
itself differs from process to process); ``build_recipe(name)`` does it for a registered
recipe. ``tinynet.augment.native_backend`` runs the same trees with TensorFlow ops.

Normalisation (seed 001's global mean subtraction, the
CIFAR mean/std) is not a recipe's business: it is a pipeline step whose statistics belong to
the dataset (``tinynet.data.datasets``), switched on by the protocol (``Protocol.normalize``).
Backends live in a registry (``tinynet.augment.backends``): ``imgaug`` (the papers' own library)
and ``native`` (TensorFlow ops on the whole batch).

- ``densenet_model1`` (Abai & Rajmalwar 2019, original notebook; seed 002 section II-A-3):
  ``SomeOf((0, None), [...])`` -- per image a random subset (possibly empty) of five
  transforms, applied in an order drawn once per batch (imgaug's ``random_order``): scale
  0.5-1.5, a rotation by exactly 20 degrees (the original code's ``rotate=20``: in imgaug 0.4 a
  bare number is deterministic, not the +-20 range the paper's prose suggests), coarse
  dropout of up to 20% of the pixels in 5-7%-sized blocks, additive Gaussian noise (sigma
  0.05 * 255), crop/pad by +-25%. Parameters are the original code's (docs/protocols.md,
  section DenseNet Model 1 and Model 2 (seed 002)).
- ``densenet_model2`` (the Model 2 code; docs/protocols.md, section DenseNet Model 1 and Model 2
  (seed 002)): a random-order ``Sequential`` of
  Fliplr(0.5), Flipud(0.2) and, each with probability 0.5, GaussianBlur, CropAndPad, Affine,
  CoarseDropout, Multiply and contrast normalisation (``LinearContrast``, imgaug 0.4's name
  for ``ContrastNormalization``), with the original's ranges. The original's ``ALL`` (pad
  and border modes) is built as the explicit lists ``PAD_MODES_ALL`` / ``AFFINE_MODES_ALL``.
- ``resnet_basic`` (seed 001 section 5.2): horizontal flip with probability 0.5 (the improved
  protocol adds global mean subtraction in the pipeline).
- ``resnet_heavy`` (seed 001 section 6): 12 transforms -- "flipping, cropping, scaling,
  shifting and etc." -- of which ``SomeOf((1, 4))`` are applied per image in random order
  (one order per batch), strengths chosen here (the paper gives none) so that the object
  stays "obvious to human eyes": horizontal flip; vertical flip (p 0.2 within the subset:
  Tiny ImageNet has few upside-down classes); crop up to 15% per side; scale 0.8-1.25;
  translate +-12.5%; rotate +-15 degrees; shear +-10 degrees (imgaug 0.4: a tuple shear
  draws one angle per image for both the x and the y shear); Gaussian blur sigma 0-1.0;
  additive Gaussian noise up to 0.04 * 255; brightness x0.75-1.25; contrast 0.75-1.35;
  hue/saturation shift +-15. Geometric transforms fill with edge pixels, so no black borders
  suggest a class. The final protocol keeps the improved model's global mean subtraction.
- ``cifar_crop_flip`` (CIFAR ResNets, seeds 003 and 004; torchvision's ``RandomCrop(32,
  padding=4)`` + ``RandomHorizontalFlip``): pad 4 pixels with zeros, a random 32x32 crop,
  horizontal flip with probability 0.5. Input size 32.
- ``cifar_crop_flip_mean_border`` (Multi-ResNet, seed 003, which is fb.resnet.torch's CIFAR
  augmentation): the same crop and flip on the **normalised** images, as the original
  normalised first, so the 4-pixel border is 0 after normalisation, i.e. the mean colour, not
  black. ``on_normalized``: the pipeline normalises before it runs the recipe (float images).
- ``flip`` (seed 000): horizontal flip with probability 0.5.
"""
import dataclasses

from tinynet.errors import TinynetError

ALL = "ALL"  # imgaug's ``ALL`` constant, as written in the data

# imgaug's ``ALL``, written out. imgaug expands most ``ALL``s from fixed lists, but
# ``CropAndPad``/``Pad``'s ``pad_mode=ALL`` is ``list(<a set of the pad mode names>)``, whose
# order follows the per-process string hash (PYTHONHASHSEED): the same seed would pick another
# pad mode in every process (a preview, a resumed run, each tf.data worker). So ``ALL`` is never
# handed to imgaug: ``to_imgaug`` passes these lists, and the native backend draws from the
# same lists in the same order (draw i -> the same value in both backends).
# numpy's 10 pad modes (imgaug's valid set), sorted by name: there is no imgaug order to keep.
PAD_MODES_ALL = ("constant", "edge", "linear_ramp", "maximum", "mean", "median", "minimum",
                 "reflect", "symmetric", "wrap")
# Affine's border modes in imgaug's own order (already a fixed list in imgaug, not a set; kept
# so that Affine's output for a seed equals imgaug's own with ``mode=ALL``).
AFFINE_MODES_ALL = ("constant", "edge", "symmetric", "reflect", "wrap")
# ``(kind, parameter) -> the explicit value of ALL`` (every parameter named ``pad_mode``
# shares imgaug's one pad-mode handler). Affine: ``order=ALL`` is [0, 1, 3] for imgaug's
# default (cv2) backend, ``cval=ALL`` uniform in 0..255.
_ALL_VALUES = {("*", "pad_mode"): list(PAD_MODES_ALL),
               ("Affine", "mode"): list(AFFINE_MODES_ALL),
               ("Affine", "order"): [0, 1, 3],
               ("Affine", "cval"): (0, 255)}


def all_values(kind, name):
    """The explicit value that ``ALL`` stands for in parameter ``name`` of transform ``kind``
    (a list: a choice in this order; a tuple: a uniform range). Raises TinynetError for an
    ``ALL`` without a written-out value, since imgaug's own expansion may vary per process."""
    for key in ((kind, name), ("*", name)):
        if key in _ALL_VALUES:
            value = _ALL_VALUES[key]
            return list(value) if isinstance(value, list) else value
    raise TinynetError(f"{kind}.{name}=ALL has no written-out value (imgaug may expand ALL in an "
                       f"order that changes from process to process); write the values as an "
                       f"explicit list instead, e.g. T({kind!r}, {name}=[...])")


class FrozenList(tuple):
    """A list-valued parameter (imgaug: a choice), stored immutable; built back as a list."""

    def thaw(self):
        return [_thaw(v) for v in self]

    def __repr__(self):
        return f"FrozenList({list(self)!r})"


class FrozenDict(tuple):
    """A dict-valued parameter (e.g. Affine's ``scale={"x": .., "y": ..}``), stored as sorted
    ``(key, value)`` pairs; built back as a dict."""

    def thaw(self):
        return {k: _thaw(v) for k, v in self}

    def __repr__(self):
        return f"FrozenDict({dict(self)!r})"


def _freeze(value):
    if isinstance(value, (FrozenList, FrozenDict)):
        return value
    if isinstance(value, dict):
        return FrozenDict(sorted((k, _freeze(v)) for k, v in value.items()))
    if isinstance(value, list):
        return FrozenList(_freeze(v) for v in value)
    if isinstance(value, tuple):
        return tuple(_freeze(v) for v in value)
    return value


def _thaw(value):
    if isinstance(value, (FrozenList, FrozenDict)):
        return value.thaw()
    if isinstance(value, tuple):
        return tuple(_thaw(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True, init=False)
class T:
    """One transform: ``T("Affine", rotate=(-15, 15), mode="edge")``. ``kind`` is the imgaug
    augmenter class name, ``params`` its keyword arguments (frozen: sorted ``(name, value)``
    pairs; ``kwargs`` gives them back as written)."""
    kind: str
    params: tuple

    def __init__(self, kind, **params):
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "params", tuple(sorted((k, _freeze(v))
                                                        for k, v in params.items())))

    @property
    def kwargs(self):
        """The keyword arguments as written (lists and dicts thawed, ``"ALL"`` kept)."""
        return {k: _thaw(v) for k, v in self.params}

    def get(self, name, default=None):
        return self.kwargs.get(name, default)


@dataclasses.dataclass(frozen=True)
class Sometimes:
    """imgaug's ``Sometimes(p, child)``: ``child`` applied to each image with probability p."""
    p: float
    child: object


@dataclasses.dataclass(frozen=True)
class SomeOf:
    """imgaug's ``SomeOf(n, children, random_order)``: per image a random subset of the
    children, of a size drawn from ``n`` (an int, ``(a, b)`` inclusive, ``(a, None)``: a to all,
    or None: all)."""
    n: object
    children: tuple
    random_order: bool = False

    def __post_init__(self):
        object.__setattr__(self, "children", tuple(self.children))
        object.__setattr__(self, "n", _freeze(self.n))


@dataclasses.dataclass(frozen=True)
class Sequential:
    """imgaug's ``Sequential(children, random_order)``: all children, in order or in an order
    drawn once per batch."""
    children: tuple
    random_order: bool = False

    def __post_init__(self):
        object.__setattr__(self, "children", tuple(self.children))


def to_imgaug(node):
    """A fresh imgaug augmenter for a tree node (children are built first, then the
    container, as a hand-written imgaug pipeline builds them)."""
    from tinynet.augment.imgaug_compat import import_imgaug
    imgaug = import_imgaug()
    iaa = imgaug.augmenters

    def value(kind, name, v):
        v = _thaw(v)
        return all_values(kind, name) if isinstance(v, str) and v == ALL else v

    def build(n):
        if isinstance(n, T):
            return getattr(iaa, n.kind)(**{k: value(n.kind, k, v) for k, v in n.params})
        if isinstance(n, Sometimes):
            return iaa.Sometimes(n.p, build(n.child))
        if isinstance(n, SomeOf):
            children = [build(c) for c in n.children]
            return iaa.SomeOf(_thaw(n.n), children, random_order=n.random_order)
        if isinstance(n, Sequential):
            children = [build(c) for c in n.children]
            return iaa.Sequential(children, random_order=n.random_order)
        raise TinynetError(f"not an augmentation tree node: {n!r}")

    return build(node)


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    pipeline: object  # the data tree (T / Sometimes / SomeOf / Sequential)
    input_size: int | None = None  # the image size the recipe expects (None: any)
    paper: str = ""
    on_normalized: bool = False  # runs on the normalised float images, not the uint8 ones


_RECIPES = {}


def register_recipe(input_size=None, paper="", on_normalized=False):
    """Registers ``fn`` (no arguments, returns a tree) as recipe ``fn.__name__``."""
    def decorate(fn):
        _RECIPES[fn.__name__] = Recipe(fn.__name__, fn(), input_size, paper, on_normalized)
        return fn
    return decorate


def list_recipes():
    return sorted(_RECIPES)


def get_recipe(name):
    try:
        return _RECIPES[name]
    except KeyError:
        raise TinynetError(f"unknown augmentation recipe {name!r}; known: "
                           f"{', '.join(list_recipes())}") from None


def build_recipe(name):
    """A fresh imgaug augmenter for recipe ``name``."""
    return to_imgaug(get_recipe(name).pipeline)


@register_recipe(paper="Abai & Rajmalwar 2019, Model 1 (seed 002)")
def densenet_model1():
    return SomeOf((0, None), [
        T("Affine", scale=(0.5, 1.5)),
        T("Affine", rotate=20),
        T("CoarseDropout", p=(0.0, 0.2), size_percent=(0.05, 0.07)),
        T("AdditiveGaussianNoise", scale=0.05 * 255),
        T("CropAndPad", percent=(-0.25, 0.25)),
    ], random_order=True)


@register_recipe(paper="Abai & Rajmalwar 2019, Model 2 (seed 002)")
def densenet_model2():
    sometimes = lambda node: Sometimes(0.5, node)  # noqa: E731
    return Sequential([
        T("Fliplr", p=0.5),
        T("Flipud", p=0.2),
        sometimes(T("GaussianBlur", sigma=(0, 2.0))),
        sometimes(T("CropAndPad", percent=(-0.1, 0.2), pad_mode=ALL, pad_cval=(0, 255))),
        sometimes(T("Affine", scale={"x": (0.8, 1.5), "y": (0.8, 1.5)},
                    translate_percent={"x": (-0.2, 0.2), "y": (-0.2, 0.2)},
                    rotate=(-45, 45), shear=(-16, 16), order=[0, 1], cval=(0, 255),
                    mode=ALL)),
        sometimes(T("CoarseDropout", p=(0.03, 0.15), size_percent=(0.02, 0.05),
                    per_channel=0.2)),
        sometimes(T("Multiply", mul=(0.8, 1.2), per_channel=0.2)),
        sometimes(T("LinearContrast", alpha=(0.75, 1.5), per_channel=0.5)),
    ], random_order=True)


@register_recipe(paper="seed 001, section 5.2")
def resnet_basic():
    return T("Fliplr", p=0.5)


@register_recipe(paper="seed 001, section 6")
def resnet_heavy():
    return SomeOf((1, 4), [
        T("Fliplr", p=1.0),
        T("Flipud", p=0.2),
        T("Crop", percent=(0, 0.15), keep_size=True),
        T("Affine", scale=(0.8, 1.25), mode="edge"),
        T("Affine", translate_percent={"x": (-0.125, 0.125), "y": (-0.125, 0.125)},
          mode="edge"),
        T("Affine", rotate=(-15, 15), mode="edge"),
        T("Affine", shear=(-10, 10), mode="edge"),
        T("GaussianBlur", sigma=(0, 1.0)),
        T("AdditiveGaussianNoise", scale=(0, 0.04 * 255)),
        T("Multiply", mul=(0.75, 1.25)),
        T("LinearContrast", alpha=(0.75, 1.35)),
        T("AddToHueAndSaturation", value=(-15, 15)),
    ], random_order=True)


def _cifar_crop_flip():
    return Sequential([
        T("Pad", px=4, pad_mode="constant", pad_cval=0, keep_size=False),
        T("CropToFixedSize", width=32, height=32),
        T("Fliplr", p=0.5),
    ])


@register_recipe(input_size=32, paper="He et al. 2016 CIFAR protocol (seeds 003, 004)")
def cifar_crop_flip():
    return _cifar_crop_flip()


@register_recipe(input_size=32, paper="fb.resnet.torch CIFAR protocol (seed 003)",
                 on_normalized=True)
def cifar_crop_flip_mean_border():
    return _cifar_crop_flip()  # (pad value 0 on normalised images: the mean colour)


@register_recipe(paper="seed 000")
def flip():
    return T("Fliplr", p=0.5)
