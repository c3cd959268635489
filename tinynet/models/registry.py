"""A model registry in the style of timm's ``_registry.py``.

``@register_model(...)`` on a thin entry point records its default configuration: the input
size and number of classes it was published with, the paper it reproduces, and the exact
parameter counts the builder must produce at that configuration (tests check them).
``paper_params`` is the figure the paper printed, where it printed one, and ``params_note``
says which figure is right and why when the two differ.
"""
import dataclasses
import fnmatch
import inspect

from tinynet.errors import TinynetError


@dataclasses.dataclass(frozen=True)
class ModelInfo:
    name: str
    builder: object
    paper: str
    input_shape: tuple
    num_classes: int
    total_params: int | None = None
    trainable_params: int | None = None
    paper_params: int | None = None
    params_note: str = ""

    @property
    def arguments(self):
        return tuple(inspect.signature(self.builder).parameters)


_REGISTRY: dict[str, ModelInfo] = {}


def register_model(*, paper, input_shape, num_classes, total_params=None, trainable_params=None,
                   paper_params=None, params_note=""):
    """Decorator: registers ``fn`` under ``fn.__name__`` with its published configuration."""

    def decorate(fn):
        name = fn.__name__
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is registered twice")
        _REGISTRY[name] = ModelInfo(
            name, fn, paper, tuple(input_shape), num_classes, total_params, trainable_params,
            paper_params, params_note,
        )
        return fn

    return decorate


def model_info(name):
    try:
        return _REGISTRY[name]
    except KeyError:
        raise TinynetError(
            f"unknown model {name!r}; registered models: {', '.join(list_models())}"
        ) from None


def get_model(name, **kwargs):
    """Builds registered model ``name``; unknown names and unknown arguments are errors."""
    info = model_info(name)
    unknown = sorted(set(kwargs) - set(info.arguments))
    if unknown:
        raise TinynetError(
            f"model {name!r} takes no argument(s) {', '.join(unknown)}; "
            f"it accepts: {', '.join(info.arguments)}"
        )
    return info.builder(**kwargs)


def list_models(pattern="*"):
    """Sorted names of registered models matching the shell-style ``pattern``."""
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))
