"""Each paper's augmentation recipe as data: a registry of named imgaug pipelines.

A recipe is an imgaug augmenter factory applied per image to uint8 NHWC batches, plus the
``input_size`` it expects (None: any). Normalisation (seed 001's global mean subtraction, the
CIFAR mean/std) is not a recipe's business: it is a pipeline step whose statistics belong to
the dataset (``tinynet.data.datasets``), switched on by the protocol (``Protocol.normalize``).
Backends live in a registry (``tinynet.augment.backends``); imgaug is the one today.

- ``densenet_model1`` (Abai & Rajmalwar 2019, original notebook; seed 002 section II-A-3):
  ``SomeOf((0, None), [...])`` -- a random subset (possibly empty) of five transforms, in
  random order, per image: scale 0.5-1.5, rotation +-20 degrees, coarse dropout of up to 20%
  of the pixels in 5-7%-sized blocks, additive Gaussian noise (sigma 0.05 * 255), crop/pad by
  +-25%. Parameters are the original code's (protocols.md).
- ``densenet_model2`` (the Model 2 code, protocols.md): a random-order ``Sequential`` of
  Fliplr(0.5), Flipud(0.2) and, each with probability 0.5, GaussianBlur, CropAndPad, Affine,
  CoarseDropout, Multiply and contrast normalisation (``LinearContrast``, imgaug 0.4's name
  for ``ContrastNormalization``), with the original's ranges.
- ``resnet_basic`` (seed 001 section 4.3): horizontal flip with probability 0.5 (the improved
  protocol adds global mean subtraction in the pipeline).
- ``resnet_heavy`` (seed 001 section 6): 12 transforms -- "flipping, cropping, scaling,
  shifting and etc." -- of which ``SomeOf((1, 4))`` are applied per image in random order,
  strengths chosen here (the paper gives none) so that the object stays "obvious to human
  eyes": horizontal flip; vertical flip (p 0.2 within the subset: Tiny ImageNet has few
  upside-down classes); crop up to 15% per side; scale 0.8-1.25; translate +-12.5%; rotate
  +-15 degrees; shear +-10 degrees; Gaussian blur sigma 0-1.0; additive Gaussian noise up to
  0.04 * 255; brightness x0.75-1.25; contrast 0.75-1.35; hue/saturation shift +-15.
  Geometric transforms fill with edge pixels, so no black borders suggest a class. The final
  protocol keeps the improved model's global mean subtraction.
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

from tinynet.augment.imgaug_compat import import_imgaug
from tinynet.errors import TinynetError


@dataclasses.dataclass(frozen=True)
class Recipe:
    name: str
    build: object  # () -> imgaug augmenter
    input_size: int | None = None  # the image size the recipe expects (None: any)
    paper: str = ""
    on_normalized: bool = False  # runs on the normalised float images, not the uint8 ones


_RECIPES = {}


def register_recipe(input_size=None, paper="", on_normalized=False):
    def decorate(fn):
        _RECIPES[fn.__name__] = Recipe(fn.__name__, fn, input_size, paper, on_normalized)
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
    return get_recipe(name).build()


def _iaa():
    return import_imgaug().augmenters


@register_recipe(paper="Abai & Rajmalwar 2019, Model 1 (seed 002)")
def densenet_model1():
    iaa = _iaa()
    return iaa.SomeOf((0, None), [
        iaa.Affine(scale=(0.5, 1.5)),
        iaa.Affine(rotate=20),
        iaa.CoarseDropout((0.0, 0.2), size_percent=(0.05, 0.07)),
        iaa.AdditiveGaussianNoise(scale=0.05 * 255),
        iaa.CropAndPad(percent=(-0.25, 0.25)),
    ], random_order=True)


@register_recipe(paper="Abai & Rajmalwar 2019, Model 2 (seed 002)")
def densenet_model2():
    imgaug = import_imgaug()
    iaa = imgaug.augmenters
    sometimes = lambda aug: iaa.Sometimes(0.5, aug)  # noqa: E731
    return iaa.Sequential([
        iaa.Fliplr(0.5),
        iaa.Flipud(0.2),
        sometimes(iaa.GaussianBlur(sigma=(0, 2.0))),
        sometimes(iaa.CropAndPad(percent=(-0.1, 0.2), pad_mode=imgaug.ALL, pad_cval=(0, 255))),
        sometimes(iaa.Affine(scale={"x": (0.8, 1.5), "y": (0.8, 1.5)},
                             translate_percent={"x": (-0.2, 0.2), "y": (-0.2, 0.2)},
                             rotate=(-45, 45), shear=(-16, 16), order=[0, 1], cval=(0, 255),
                             mode=imgaug.ALL)),
        sometimes(iaa.CoarseDropout((0.03, 0.15), size_percent=(0.02, 0.05), per_channel=0.2)),
        sometimes(iaa.Multiply((0.8, 1.2), per_channel=0.2)),
        sometimes(iaa.LinearContrast((0.75, 1.5), per_channel=0.5)),
    ], random_order=True)


@register_recipe(paper="seed 001, section 4.3")
def resnet_basic():
    return _iaa().Fliplr(0.5)


@register_recipe(paper="seed 001, section 6")
def resnet_heavy():
    iaa = _iaa()
    return iaa.SomeOf((1, 4), [
        iaa.Fliplr(1.0),
        iaa.Flipud(0.2),
        iaa.Crop(percent=(0, 0.15), keep_size=True),
        iaa.Affine(scale=(0.8, 1.25), mode="edge"),
        iaa.Affine(translate_percent={"x": (-0.125, 0.125), "y": (-0.125, 0.125)}, mode="edge"),
        iaa.Affine(rotate=(-15, 15), mode="edge"),
        iaa.Affine(shear=(-10, 10), mode="edge"),
        iaa.GaussianBlur(sigma=(0, 1.0)),
        iaa.AdditiveGaussianNoise(scale=(0, 0.04 * 255)),
        iaa.Multiply((0.75, 1.25)),
        iaa.LinearContrast((0.75, 1.35)),
        iaa.AddToHueAndSaturation((-15, 15)),
    ], random_order=True)


@register_recipe(input_size=32, paper="He et al. 2016 CIFAR protocol (seeds 003, 004)")
def cifar_crop_flip():
    iaa = _iaa()
    return iaa.Sequential([
        iaa.Pad(px=4, pad_mode="constant", pad_cval=0, keep_size=False),
        iaa.CropToFixedSize(width=32, height=32),
        iaa.Fliplr(0.5),
    ])


@register_recipe(input_size=32, paper="fb.resnet.torch CIFAR protocol (seed 003)",
                 on_normalized=True)
def cifar_crop_flip_mean_border():
    return cifar_crop_flip()  # (pad value 0 on normalised images: the mean colour)


@register_recipe(paper="seed 000")
def flip():
    return _iaa().Fliplr(0.5)
