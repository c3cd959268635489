"""Augmentation: recipes as data (``recipes``) and the imgaug backend for tf.data."""
from tinynet.augment.imgaug_backend import ImgaugAugment
from tinynet.augment.recipes import Recipe, build_recipe, get_recipe, list_recipes, register_recipe

__all__ = ["ImgaugAugment", "Recipe", "build_recipe", "get_recipe", "list_recipes",
           "register_recipe"]
