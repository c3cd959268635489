"""The ``width`` multiplier every tinynet family takes (1.0 = the paper's model; smaller for CPU
demos and tests), checked in one place.

A layer's filters are ``round(filters * width)``. A width that rounds some layer to zero
filters is refused rather than silently raised to one filter: the model would no longer be a
scaled copy of the paper's, and the run's recorded width would not describe it. ``round`` gives
at least 1 exactly when ``filters * width > 0.5``, so the smallest width that works is anything
above ``0.5 / (the narrowest layer's filters)``.
"""
import math
import numbers

from tinynet.errors import TinynetError


def check_width(width, model):
    """``TinynetError`` unless ``width`` is a finite number > 0 (infinity and NaN cannot size a
    layer)."""
    if isinstance(width, bool) or not isinstance(width, numbers.Real) or \
            not math.isfinite(width) or width <= 0:
        raise TinynetError(f"width must be a positive number (finite, > 0; 1.0 = the paper's "
                           f"model) for {model}; got {width!r}")


def smallest_width(filters):
    """The exclusive lower bound of the widths that give every layer of ``filters`` (filter
    counts at width 1) at least one filter, and a short number above it that works."""
    bound = 0.5 / min(filters)
    scale = 10 ** (1 - math.floor(math.log10(bound)))  # two significant digits
    example = (math.floor(bound * scale) + 1) / scale
    return bound, example


def scale_filters(filters, width, model):
    """``filters`` (counts at width 1.0) times ``width``, rounded, as a list of ints.

    Raises ``TinynetError`` where ``width`` is not a finite positive number, or where it would
    leave a layer of ``model`` under one filter; the message names the smallest width that
    works for ``model``."""
    check_width(width, model)
    scaled = [int(round(f * width)) for f in filters]
    if min(scaled) < 1:
        bound, example = smallest_width(filters)
        raise TinynetError(
            f"width {width:g} is too small for {model}: its narrowest layer ({min(filters)} "
            f"filters at width 1.0) would get under one filter; the smallest width that works "
            f"for {model} is anything above {bound:g} (e.g. {example:g})")
    return scaled


def scale_groups(groups, width, model):
    """``scale_filters`` over several groups (e.g. blocks) of filter counts at once, so that the
    smallest width named is the whole model's; returns the scaled groups as lists."""
    flat = scale_filters([f for group in groups for f in group], width, model)
    scaled, start = [], 0
    for group in groups:
        scaled.append(flat[start:start + len(group)])
        start += len(group)
    return scaled
