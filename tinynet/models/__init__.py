"""Model registry and the model families (importing this module registers every family)."""
from tinynet.models.registry import ModelInfo, get_model, list_models, model_info, register_model
from tinynet.models import (cifar_resnet, densenet, multi_resnet, resnet,  # noqa: F401 (registers)
                            transfer)
from tinynet.models import torchvision_densenet  # noqa: F401 (registers)

__all__ = ["ModelInfo", "get_model", "list_models", "model_info", "register_model"]
