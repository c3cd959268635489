"""Custom Keras layers, each registered for serialization under the package name ``tinynet``."""
from tinynet.layers.space_to_depth import SpaceToDepth

__all__ = ["SpaceToDepth"]
