"""tinynet: end-to-end reproductions of small-image classification papers in Keras 3.

The package is organised as the data flows (README.md, "Layout"):
``tinynet.data`` (index, decode, tf.data pipeline) -> ``tinynet.models`` (registry) ->
``tinynet.training`` (protocols of stages, resumable runner, run directory) -> plots and tools
that read the run directory.
"""

__version__ = "0.1.0"
