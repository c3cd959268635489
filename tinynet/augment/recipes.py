"""Each paper's augmentation recipe as data: a registry of named imgaug pipelines.

A recipe is a function ``() -> imgaug augmenter`` applied per image to uint8 NHWC batches.

- ``densenet_model1`` (Abai & Rajmalwar 2019, original notebook; seed 002 section II-A-3):
  ``SomeOf((0, None), [...])`` -- a random subset (possibly empty) of five transforms, in
  random order, per image: scale 0.5-1.5, rotation +-20 degrees, coarse dropout of up to 20%
  of the pixels in 5-7%-sized blocks, additive Gaussian noise (sigma 0.05 * 255), crop/pad by
  +-25%. Parameters are the original code's (protocols.md).
"""
from tinynet.augment.imgaug_compat import import_imgaug
from tinynet.errors import TinynetError

_RECIPES = {}


def register_recipe(fn):
    _RECIPES[fn.__name__] = fn
    return fn


def list_recipes():
    return sorted(_RECIPES)


def build_recipe(name):
    """A fresh imgaug augmenter for recipe ``name``."""
    try:
        factory = _RECIPES[name]
    except KeyError:
        raise TinynetError(f"unknown augmentation recipe {name!r}; known: "
                           f"{', '.join(list_recipes())}") from None
    return factory()


@register_recipe
def densenet_model1():
    import_imgaug()
    import imgaug.augmenters as iaa

    return iaa.SomeOf((0, None), [
        iaa.Affine(scale=(0.5, 1.5)),
        iaa.Affine(rotate=20),
        iaa.CoarseDropout((0.0, 0.2), size_percent=(0.05, 0.07)),
        iaa.AdditiveGaussianNoise(scale=0.05 * 255),
        iaa.CropAndPad(percent=(-0.25, 0.25)),
    ], random_order=True)
