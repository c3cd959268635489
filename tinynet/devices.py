"""Device names, one spelling for the whole package: ``"gpu:1"``, ``"/GPU:1"`` and
``"/device:GPU:1"`` all mean ``"/device:GPU:1"`` (TensorFlow's local device name). Used by the
model-parallel layers (``tinynet.layers.multi_residual``) and the ``--devices`` /
``--model-parallel`` flags (``tinynet.training.distribute``). No TensorFlow import."""
import re

from tinynet.errors import TinynetError

_DEVICE = re.compile(r"^(?:/?device:)?/?(cpu|gpu|tpu):(\d+)$", re.IGNORECASE)


def normalize_device(name):
    """``"gpu:1"``, ``"/GPU:1"``, ``"/device:GPU:1"`` -> ``"/device:GPU:1"``; anything else is a
    ``TinynetError``."""
    match = _DEVICE.match(name.strip()) if isinstance(name, str) else None
    if match is None:
        raise TinynetError(f"invalid device name {name!r}: expected TYPE:INDEX with TYPE CPU, "
                           f"GPU or TPU, such as CPU:1, GPU:0 or /device:GPU:0")
    return f"/device:{match.group(1).upper()}:{int(match.group(2))}"


def device_index(name, kind):
    """The index of ``name`` (normalised) if it is a ``kind`` ("CPU", "GPU") device, else None."""
    match = _DEVICE.match(name)
    return int(match.group(2)) if match and match.group(1).upper() == kind else None
