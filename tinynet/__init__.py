"""tinynet: end-to-end reproductions of small-image classification papers in Keras 3.

The package is organised as the data flows (README.md, "Layout"): ``tinynet.data`` (dataset
registry, decode, tf.data pipeline) -> ``tinynet.models`` (registry) -> ``tinynet.training``
(protocols of stages, lr policies, resumable runner, run directory) -> ``tinynet.evaluation``
and the tools, which read the run directory.

``import tinynet`` registers every custom Keras object (layers, losses, metrics, optimizers),
so ``import tinynet; keras.models.load_model(path)`` loads any model tinynet saved. The
registration needs Keras, and importing Keras starts TensorFlow (seconds, and log lines on
stderr); so when Keras is not imported yet, it happens right after Keras' own import instead.
That keeps a command line's ``--help`` and argument errors instant and on one line.
"""
import importlib.abc
import importlib.util
import sys

__version__ = "0.2.0"


def register_keras_objects():
    """Imports the modules that register tinynet's Keras objects."""
    from tinynet import layers  # noqa: F401
    from tinynet.saving import mark_registered_classes
    from tinynet.training import losses, optimizers  # noqa: F401

    mark_registered_classes()  # a file they save then says to import tinynet to load it


class _RegisterAfterKeras(importlib.abc.MetaPathFinder):
    """Runs ``register_keras_objects`` as soon as ``keras`` has finished importing.

    TensorFlow looks ``keras`` up with ``find_spec`` before it imports it, so the finder stays
    in place until the module is actually executed."""

    _looking = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self._looking:
            return None
        self._looking = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._looking = False
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module
        finder = self

        def exec_then_register(module):
            exec_module(module)
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
            register_keras_objects()

        spec.loader.exec_module = exec_then_register
        return spec


if "keras" in sys.modules:
    register_keras_objects()
elif not any(isinstance(f, _RegisterAfterKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _RegisterAfterKeras())
