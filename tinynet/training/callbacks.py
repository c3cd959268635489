"""Training-time behaviour as Keras callbacks, each able to save and restore its state.

A callback whose state matters for an exact resume implements ``get_state() -> dict`` and
``set_state(dict)``; the runner stores those states in every checkpoint under the callback's
``state_key``.
"""
import math
import time

import keras
import numpy as np


class PlateauWindow(keras.callbacks.ReduceLROnPlateau):
    """``ReduceLROnPlateau`` active only on a window of one stage's epochs, with resumable state.

    Keras resets wait/best/cooldown in ``on_train_begin``; here they are reset when the window
    opens and otherwise carried (and checkpointed), because the runner calls ``fit`` again after
    a resume and must not forget that the monitored metric has not improved for 3 epochs.
    """

    state_key = "reduce_lr_on_plateau"

    def __init__(self, plateau, stage_start, **kwargs):
        super().__init__(monitor=plateau.monitor, factor=plateau.factor,
                         patience=plateau.patience, min_lr=plateau.min_lr, **kwargs)
        self.plateau = plateau
        self.stage_start = stage_start
        self._reset()

    def on_train_begin(self, logs=None):
        pass  # keep the (possibly restored) state; see the class docstring

    def on_epoch_begin(self, epoch, logs=None):
        if epoch - self.stage_start == self.plateau.first_epoch:
            self._reset()

    def on_epoch_end(self, epoch, logs=None):
        if self.plateau.active(epoch - self.stage_start):
            super().on_epoch_end(epoch, logs)

    def get_state(self):
        # best is None until the window's first epoch has been seen.
        return {"wait": int(self.wait),
                "best": None if self.best is None else float(self.best),
                "cooldown_counter": int(self.cooldown_counter)}

    def set_state(self, state):
        self.wait = state["wait"]
        self.best = state["best"]
        self.cooldown_counter = state["cooldown_counter"]


def current_lr(optimizer):
    return float(keras.ops.convert_to_numpy(optimizer.learning_rate))


def format_duration(seconds):
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}"


class EpochEnd(keras.callbacks.Callback):
    """Hands every finished epoch (its logs, lr and duration) to ``on_epoch(record)``.

    The lr recorded is the one the epoch trained with (read at epoch begin). Put this callback
    after any that change state at epoch end (ReduceLROnPlateau), so that what ``on_epoch``
    checkpoints already includes their update.
    """

    def __init__(self, on_epoch):
        super().__init__()
        self.on_epoch = on_epoch
        self._lr = None
        self._start = None

    def on_epoch_begin(self, epoch, logs=None):
        self._lr = current_lr(self.model.optimizer)
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(np.asarray(v)) for k, v in (logs or {}).items()}
        self.on_epoch(epoch, logs, self._lr, time.perf_counter() - self._start)
