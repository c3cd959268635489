"""CyclicLR against the keras-contrib formula (docs/protocols.md, section DenseNet Model 1 and
Model 2 (seed 002), "CyclicLR (keras-contrib)"), and across a resume."""
import math

import keras
import numpy as np
import pytest

from tinynet.errors import TinynetError
from tinynet.training.callbacks import CyclicLR, PlateauWindow, check_lr_callbacks
from tinynet.training.protocol import Plateau
from tinynet.training.schedules import cyclic_lr


def contrib(it, base, top, step, scale, by_cycle):
    """keras-contrib's CyclicLR.clr(), written out independently."""
    cycle = np.floor(1 + it / (2 * step))
    x = np.abs(it / step - 2 * cycle + 1)
    return base + (top - base) * np.maximum(0, 1 - x) * scale(cycle if by_cycle else it)


TABLE = [0, 1, 5, 9, 10, 11, 19, 20, 21, 30, 39, 40, 41, 55, 60, 99]


@pytest.mark.parametrize("mode,scale,by_cycle", [
    ("triangular", lambda c: 1.0, True),
    ("triangular2", lambda c: 1 / 2 ** (c - 1), True),
    ("exp_range", lambda it: 0.99 ** it, False),
])
def test_modes_follow_the_formula(mode, scale, by_cycle):
    for it in TABLE:
        assert cyclic_lr(it, 1e-4, 6e-4, 10, mode, gamma=0.99) == pytest.approx(
            contrib(it, 1e-4, 6e-4, 10, scale, by_cycle), rel=1e-12)


def test_landmarks_of_triangular2():
    assert cyclic_lr(0, 1e-4, 6e-4, 10, "triangular2") == 1e-4  # a cycle starts at base
    assert cyclic_lr(10, 1e-4, 6e-4, 10, "triangular2") == pytest.approx(6e-4)  # peak
    assert cyclic_lr(30, 1e-4, 6e-4, 10, "triangular2") == pytest.approx(1e-4 + 2.5e-4)  # halved


@pytest.mark.parametrize("scale_mode", ["cycle", "iterations"])
def test_custom_scale_function(scale_mode):
    fn = lambda v: 1 / (1 + v)  # noqa: E731
    for it in TABLE:
        assert cyclic_lr(it, 1e-3, 1e-2, 8, scale_fn=fn, scale_mode=scale_mode) == pytest.approx(
            contrib(it, 1e-3, 1e-2, 8, fn, scale_mode == "cycle"), rel=1e-12)


def _fit(model, callback, steps, epochs=1, initial_epoch=0):
    x = np.random.default_rng(0).random((steps * 2, 8), np.float32)
    model.fit(x, x[:, :1], batch_size=2, epochs=epochs + initial_epoch,
              initial_epoch=initial_epoch, verbose=0, callbacks=[callback], shuffle=False)


def _model():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.RMSprop(1e-4), loss="mse")
    return model


def test_callback_sets_every_batch_and_resumes_from_the_iteration_count():
    make = lambda start=0: CyclicLR(1e-4, 6e-4, 3, "triangular2", phase_start=start)  # noqa: E731
    whole = make()
    model = _model()
    _fit(model, whole, steps=7, epochs=2)
    assert [it for it, _ in whole.lrs] == list(range(14))
    assert [lr for _, lr in whole.lrs] == [cyclic_lr(i, 1e-4, 6e-4, 3, "triangular2")
                                           for i in range(14)]

    first, second = make(), make()  # the same run interrupted after epoch 1 and resumed
    model = _model()
    _fit(model, first, steps=7)
    resumed = _model()
    resumed.optimizer.build(resumed.trainable_variables)
    for a, b in zip(model.optimizer.variables, resumed.optimizer.variables):
        b.assign(a)  # what a checkpoint restores
    _fit(resumed, second, steps=7, initial_epoch=1)
    assert first.lrs + second.lrs == whole.lrs


def test_phase_start_offsets_the_cycle():
    cb = CyclicLR(1e-5, 6e-5, 4, phase_start=100)
    model = _model()
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(100)
    _fit(model, cb, steps=3)
    assert [it for it, _ in cb.lrs] == [0, 1, 2] and cb.lrs[0][1] == 1e-5


def test_refuses_schedules_and_a_second_lr_policy():
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(
        keras.optimizers.schedules.ExponentialDecay(1e-3, 10, 0.9)), loss="mse")
    with pytest.raises(TinynetError, match="already has a learning-rate schedule"):
        _fit(model, CyclicLR(1e-4, 6e-4, 3), steps=2)
    plateau = PlateauWindow(Plateau(factor=math.sqrt(0.1), patience=5, min_lr=0), 0)
    with pytest.raises(TinynetError, match="cannot combine CyclicLR, PlateauWindow"):
        check_lr_callbacks([CyclicLR(1e-4, 6e-4, 3), plateau])
    with pytest.raises(TinynetError, match="mode must be one of"):
        CyclicLR(1e-4, 6e-4, 3, mode="cosine")
