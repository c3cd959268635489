"""``--data-format auto``: the model's internal layout chosen by measuring, not by a rule.

Which layout trains faster depends on the device, the library and the model: on this
project's CPU machine NCHW was 0.74-0.78x NHWC for the ResNets (docs/benchmarks.md, "ResNet
training speed-ups"), while cuDNN has long preferred NCHW for float32 convolutions and NHWC
for 16-bit tensor cores. So ``auto`` builds the model in each layout, times a few training
steps of the first stage's batch at its resolution on the device the run uses, and keeps the
faster. A layout the device cannot run (TensorFlow has no NCHW convolution kernels on the CPU
for every op) counts as infinitely slow. The choice enters the model's arguments, so the run
directory records it and a resumed run keeps it without measuring again.
"""
import math
import time

import numpy as np

FORMATS = ("channels_last", "channels_first")


def time_training_step(model_name, model_kwargs, num_classes, batch_size, resolution,
                       steps=3, warmup=1):
    """Seconds per training step (SGD, random inputs) of ``model_name`` as given."""
    from tinynet.models import get_model

    model = get_model(model_name, num_classes=num_classes, **model_kwargs)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    x = rng.random((batch_size, resolution, resolution, 3), dtype=np.float32)
    y = rng.integers(0, num_classes, batch_size)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return (time.perf_counter() - start) / steps


def measure_data_format(model_name, model_kwargs, num_classes, batch_size, resolution,
                        steps=3, log=print):
    """The faster of ``FORMATS`` for this model and device; logs both timings."""
    seconds = {}
    for fmt in FORMATS:
        try:
            seconds[fmt] = time_training_step(model_name, dict(model_kwargs, data_format=fmt),
                                              num_classes, batch_size, resolution, steps)
        except Exception as e:  # noqa: BLE001 (the device lacks a kernel for this layout)
            seconds[fmt] = math.inf
            log(f"--data-format auto: {fmt} does not run here ({str(e).splitlines()[0][:100]})")
    best = min(FORMATS, key=lambda f: seconds[f])
    shown = ", ".join(f"{f} {seconds[f] * 1000:.0f} ms" for f in FORMATS
                      if math.isfinite(seconds[f]))
    log(f"--data-format auto: {best} ({shown} per step of {batch_size} at {resolution} px)")
    return best
