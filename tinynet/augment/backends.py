"""The augmentation backends, by name: each turns a recipe name into a callable with the
augmentation contract ``augment(images, labels, key) -> (images, labels)`` for tf.data.

``imgaug`` runs the papers' own imgaug pipelines (one Python call per batch); ``native`` runs
the same recipe trees as TensorFlow ops on the whole batch (stateless randomness, usable in
``tf.data`` and in a ``tf.function``; ``tinynet.augment.native_backend``). Backends are
imported when first used. An augmenter sets
``on_normalized`` from its recipe (``Recipe.on_normalized``): the pipeline then gives it the
normalised float images instead of the uint8 ones.
"""
import importlib

from tinynet.errors import TinynetError

BACKENDS = {"imgaug": "tinynet.augment.imgaug_backend:ImgaugAugment",
            "native": "tinynet.augment.native_backend:NativeAugment"}


def list_backends():
    return sorted(BACKENDS)


def get_augmenter(recipe, backend="imgaug"):
    """The callable that applies ``recipe`` (a recipe name; the native backend also takes a
    tree node) with ``backend``."""
    try:
        module, name = BACKENDS[backend].split(":")
    except KeyError:
        raise TinynetError(f"unknown augmentation backend {backend!r}; known: "
                           f"{', '.join(list_backends())}") from None
    return getattr(importlib.import_module(module), name)(recipe)
