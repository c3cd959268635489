"""Model registry and the model families (importing this module registers every family)."""
from tinynet.models.registry import ModelInfo, get_model, list_models, model_info, register_model
from tinynet.models import densenet  # noqa: F401  (registers densenet_model1, densenet_model2)

__all__ = ["ModelInfo", "get_model", "list_models", "model_info", "register_model"]
