"""Augmentation: recipes as data (``recipes``), backends that run them (``backends``), and batch
transforms on normalised images with labels (``mixup``).

The backends import TensorFlow and imgaug when first used, so that a command line can list and
check recipe names before that cost.
"""
from tinynet.augment.backends import get_augmenter, list_backends
from tinynet.augment.recipes import Recipe, build_recipe, get_recipe, list_recipes, register_recipe

__all__ = ["ImgaugAugment", "Recipe", "build_recipe", "get_augmenter", "get_recipe",
           "list_backends", "list_recipes", "register_recipe"]


def __getattr__(name):
    if name == "ImgaugAugment":
        from tinynet.augment.imgaug_backend import ImgaugAugment
        return ImgaugAugment
    raise AttributeError(f"module 'tinynet.augment' has no attribute {name!r}")
