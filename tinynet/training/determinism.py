"""Bit-identical runs: seeding, TensorFlow op determinism, and the process settings they need.

Op determinism alone does not make two runs agree bit for bit on CPU: measured here (TF 2.21),
about one run in four of the same training steps ended with different last bits while
independent graph ops ran concurrently on the inter-op thread pool; with one inter-op thread,
every run agreed. (Intra-op parallelism -- the threads inside one convolution -- is kept.) The
hash seed is fixed too so that nothing in graph construction that iterates over a set of
strings can change between runs. Both settings are read when the interpreter and TensorFlow
start, hence ``reexec_for_determinism``. The input pipeline keeps its parallelism through a
private thread pool (``tinynet.data.pipeline``).
"""
import os
import sys

DETERMINISTIC_ENV = {"TF_NUM_INTEROP_THREADS": "1", "PYTHONHASHSEED": "0"}


def reexec_for_determinism(argv=None):
    """Restarts this process with ``DETERMINISTIC_ENV`` unless it already has it."""
    if any(os.environ.get(k) != v for k, v in DETERMINISTIC_ENV.items()):
        env = dict(os.environ, **DETERMINISTIC_ENV)
        if argv is None:
            from tinynet.experiment import command_line
            argv = command_line()  # as typed: -m tinynet PAPER ... as well as a script
        os.execve(sys.executable, [sys.executable] + list(argv), env)


def configure_determinism(seed, deterministic, log=print):
    """Seeds Python, NumPy and TensorFlow; ``deterministic`` also turns on op determinism and
    warns when the environment above was not set before start."""
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        unset = [f"{k}={v}" for k, v in DETERMINISTIC_ENV.items() if os.environ.get(k) != v]
        if unset:
            log(f"warning: {' '.join(unset)} not set before start; runs may differ in the "
                f"last bits (see tinynet.training.determinism)")
