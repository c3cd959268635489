"""Custom Keras layers, each registered for serialization under the package name ``tinynet``."""
from tinynet.layers.fused_batch_norm import FusedBatchNormalization
from tinynet.layers.imagenet_preprocessing import ImageNetPreprocessing
from tinynet.layers.multi_residual import MultiResidual
from tinynet.layers.space_to_depth import SpaceToDepth
from tinynet.layers.stochastic_depth import StochasticDepth, linear_survival
from tinynet.layers.torch_batch_norm import TorchBatchNormalization

__all__ = ["FusedBatchNormalization", "ImageNetPreprocessing", "MultiResidual", "SpaceToDepth",
           "StochasticDepth", "TorchBatchNormalization", "linear_survival"]
