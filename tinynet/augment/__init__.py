"""Augmentation: recipes as data (``recipes``) and the imgaug backend for tf.data."""
from tinynet.augment.imgaug_backend import ImgaugAugment
from tinynet.augment.recipes import build_recipe, list_recipes, register_recipe

__all__ = ["ImgaugAugment", "build_recipe", "list_recipes", "register_recipe"]
