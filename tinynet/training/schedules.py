"""Cyclical learning rates (Smith 2017, "Cyclical Learning Rates for Training Neural Networks"),
exactly as the keras-contrib ``CyclicLR`` callback the DenseNet Model 2 code used
(docs/protocols.md, section DenseNet Model 1 and Model 2 (seed 002), "CyclicLR (keras-contrib)"):

    cycle = floor(1 + it / (2 step_size))
    x     = |it / step_size - 2 cycle + 1|
    lr    = base + (max - base) * max(0, 1 - x) * scale(cycle or it)

``triangular``: scale 1; ``triangular2``: 1 / 2^(cycle - 1) (by cycle); ``exp_range``:
gamma^it (by iteration). A custom ``scale_fn`` takes the cycle (``scale_mode="cycle"``) or the
iteration (``scale_mode="iterations"``). ``it`` counts training iterations from the start of
the phase; batch ``it`` trains with ``cyclic_lr(it)``, so the first batch uses ``base_lr``.
"""
import math

from tinynet.errors import TinynetError

MODES = ("triangular", "triangular2", "exp_range")


def mode_scale(mode, gamma=1.0):
    """``(scale_fn, scale_mode)`` of a named mode."""
    if mode == "triangular":
        return (lambda x: 1.0), "cycle"
    if mode == "triangular2":
        return (lambda x: 1.0 / (2.0 ** (x - 1))), "cycle"
    if mode == "exp_range":
        return (lambda x: gamma ** x), "iterations"
    raise TinynetError(f"CyclicLR mode must be one of {', '.join(MODES)}, not {mode!r}")


def cyclic_lr(iteration, base_lr, max_lr, step_size, mode="triangular", gamma=1.0,
              scale_fn=None, scale_mode="cycle"):
    """The learning rate of training iteration ``iteration`` (0-based, from the phase start)."""
    if step_size <= 0:
        raise TinynetError(f"CyclicLR step_size must be positive, got {step_size}")
    if scale_fn is None:
        scale_fn, scale_mode = mode_scale(mode, gamma)
    elif scale_mode not in ("cycle", "iterations"):
        raise TinynetError(f"scale_mode must be 'cycle' or 'iterations', not {scale_mode!r}")
    cycle = math.floor(1 + iteration / (2 * step_size))
    x = abs(iteration / step_size - 2 * cycle + 1)
    scale = scale_fn(cycle if scale_mode == "cycle" else iteration)
    return base_lr + (max_lr - base_lr) * max(0.0, 1 - x) * scale
