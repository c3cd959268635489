"""Augmentation: recipes as data (``recipes``), backends that run them (``backends``), and batch
transforms on normalised images with labels (``mixup``).

The backends import TensorFlow and imgaug when first used, so that a command line can list and
check recipe names before that cost.
"""
from tinynet.augment.backends import get_augmenter, list_backends
from tinynet.augment.recipes import (Recipe, SomeOf, Sequential, Sometimes, T, build_recipe,
                                     get_recipe, list_recipes, register_recipe, to_imgaug)

__all__ = ["ImgaugAugment", "NativeAugment", "Recipe", "SomeOf", "Sequential", "Sometimes", "T",
           "build_recipe", "get_augmenter", "get_recipe", "list_backends", "list_recipes",
           "register_recipe", "to_imgaug"]


def __getattr__(name):
    if name == "ImgaugAugment":
        from tinynet.augment.imgaug_backend import ImgaugAugment
        return ImgaugAugment
    if name == "NativeAugment":
        from tinynet.augment.native_backend import NativeAugment
        return NativeAugment
    raise AttributeError(f"module 'tinynet.augment' has no attribute {name!r}")
