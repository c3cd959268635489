"""Training-time behaviour as Keras callbacks, each able to save and restore its state.

A callback whose state matters for an exact resume implements ``get_state() -> dict`` and
``set_state(dict)``; the runner stores those states in every checkpoint under the callback's
``state_key``.
"""
import math
import time

import keras
import numpy as np

from tinynet.errors import TinynetError
from tinynet.training.schedules import cyclic_lr, mode_scale


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
    """Hands every finished epoch to ``on_epoch(epoch, logs, lr, seconds, lrs)``.

    ``lr`` is the learning rate the epoch's first batch trained with and ``lrs`` the
    ``(iteration, lr)`` of every batch, ``iteration`` counting the run's training batches from
    ``first_iteration`` (the run-global count when this ``fit`` starts). Nothing is read from
    the device per batch: the lr is read once per epoch -- or, under a per-iteration policy,
    computed by ``lr_at(iteration)``, the only thing that changes it within an epoch. Put this
    callback after any that set the learning rate or change state at epoch end
    (ReduceLROnPlateau), so that what ``on_epoch`` checkpoints includes their update.
    """

    def __init__(self, on_epoch, first_iteration=0, lr_at=None, progress=None):
        super().__init__()
        self.on_epoch = on_epoch
        self.lr_at = lr_at
        self._lrs = []
        self._start = None
        self._iteration = first_iteration
        self._epoch_lr = None
        # an epoch resumed inside: its earlier batches' lrs and seconds (``progress()``)
        self._resumed = progress

    def on_epoch_begin(self, epoch, logs=None):
        self._lrs, self._epoch_lr, earlier = [], None, 0.0
        if self._resumed is not None:
            self._lrs = [tuple(r) for r in self._resumed["lrs"]]
            self._epoch_lr = self._resumed.get("epoch_lr")
            earlier = self._resumed["seconds"]
            self._resumed = None
        self._start = time.perf_counter() - earlier

    def progress(self):
        """What the end of the current epoch needs from its batches so far (saved in an
        in-epoch checkpoint): their ``(iteration, lr)`` rows and seconds."""
        return {"lrs": [list(r) for r in self._lrs], "epoch_lr": self._epoch_lr,
                "seconds": time.perf_counter() - self._start}

    def on_train_batch_begin(self, batch, logs=None):
        if self.lr_at is not None:
            lr = self.lr_at(self._iteration)
        else:
            if self._epoch_lr is None:
                self._epoch_lr = current_lr(self.model.optimizer)
            lr = self._epoch_lr
        self._lrs.append((self._iteration, lr))

    def on_train_batch_end(self, batch, logs=None):
        self._iteration += 1

    def on_epoch_end(self, epoch, logs=None):
        logs = {k: float(np.asarray(v)) for k, v in (logs or {}).items()}
        lr = self._lrs[0][1] if self._lrs else current_lr(self.model.optimizer)
        self.on_epoch(epoch, logs, lr, time.perf_counter() - self._start, self._lrs)


class ScheduleCallback(keras.callbacks.Callback):
    """Sets the lr of a position-pure policy: at each epoch start, or before every batch for
    per-iteration policies. The position comes from the optimizer's iteration count, read once
    when ``fit`` starts and then counted per batch (no device read per batch)."""

    def __init__(self, policy, stage_start_epoch=0, stage_start_iteration=0, steps_per_epoch=1):
        super().__init__()
        self.policy = policy
        self.stage_start_epoch = stage_start_epoch
        self.stage_start_iteration = stage_start_iteration
        self.steps_per_epoch = steps_per_epoch
        self.lrs = []  # (stage iteration, lr) of every batch this callback set
        self._iteration = None
        self._epoch = 0

    def on_train_begin(self, logs=None):
        from tinynet.training.precision import inner_optimizer

        if isinstance(inner_optimizer(self.model.optimizer)._learning_rate,
                      keras.optimizers.schedules.LearningRateSchedule):
            raise TinynetError(f"{type(self).__name__} sets the learning rate; the optimizer "
                               f"already has a learning-rate schedule: give it a plain float lr")
        self._iteration = int(self.model.optimizer.iterations.numpy()) - self.stage_start_iteration

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch - self.stage_start_epoch
        if not self.policy.per_iteration:
            self.model.optimizer.learning_rate = self.policy.value(
                self._epoch, self._iteration, self.steps_per_epoch)

    def on_train_batch_begin(self, batch, logs=None):
        if self.policy.per_iteration:
            lr = self.policy.value(self._epoch, self._iteration, self.steps_per_epoch)
            self.model.optimizer.learning_rate = lr
            self.lrs.append((self._iteration, lr))

    def on_train_batch_end(self, batch, logs=None):
        self._iteration += 1


class _CyclicFormula:
    """keras-contrib's formula with a step size in iterations and an optional custom scale."""

    per_iteration = True

    def __init__(self, base_lr, max_lr, step_size, mode, gamma, scale_fn, scale_mode):
        self.args = (base_lr, max_lr, step_size, mode, gamma, scale_fn, scale_mode)

    def value(self, stage_epoch, stage_iteration, steps_per_epoch):
        return cyclic_lr(stage_iteration, *self.args)


class CyclicLR(ScheduleCallback):
    """keras-contrib's ``CyclicLR`` (see ``tinynet.training.schedules``), resumable by design.

    The position in the cycle is ``optimizer.iterations - phase_start``, read once when
    ``fit`` starts (then counted per batch, so no batch waits on a device read), so a run
    restored from a checkpoint (which holds the optimizer's iteration count) continues the
    cycle exactly where it stopped. Every iteration's lr is kept in ``self.lrs`` as
    ``(iteration, lr)`` for a per-iteration log. A protocol stage states the same thing as
    data with ``tinynet.training.lr.Cyclic`` (step size in epochs).

    It owns the learning rate: an optimizer whose learning rate is a schedule object is
    refused, and so is ReduceLROnPlateau in the same ``fit`` (``check_lr_callbacks``).
    """

    def __init__(self, base_lr, max_lr, step_size, mode="triangular", gamma=1.0,
                 scale_fn=None, scale_mode="cycle", phase_start=0):
        if scale_fn is None:
            mode_scale(mode, gamma)  # rejects an unknown mode now
        if not 0 < base_lr <= max_lr:
            raise TinynetError(f"CyclicLR needs 0 < base_lr <= max_lr, got {base_lr}, {max_lr}")
        super().__init__(_CyclicFormula(base_lr, max_lr, step_size, mode, gamma, scale_fn,
                                        scale_mode), stage_start_iteration=phase_start)
        self.phase_start = phase_start

    def lr_at(self, iteration):
        return self.policy.value(0, iteration, 1)


def check_lr_callbacks(callbacks):
    """Refuses two callbacks that both set the learning rate in one phase."""
    kinds = [c for c in callbacks if isinstance(c, (ScheduleCallback,
                                                    keras.callbacks.ReduceLROnPlateau,
                                                    keras.callbacks.LearningRateScheduler))]
    if len(kinds) > 1:
        names = ", ".join(type(c).__name__ for c in kinds)
        raise TinynetError(f"one phase cannot combine {names}: each sets the learning rate; "
                           f"use one lr policy per phase")


class ReplicaStatistics(keras.callbacks.Callback):
    """Averages the BN moving statistics over replicas when each training epoch ends, before
    validation and the checkpoint (``tinynet.training.distribute.replica_averager``).
    """

    def __init__(self, strategy):
        super().__init__()
        self.strategy = strategy
        self._pending = False
        self._averager = None

    def on_epoch_begin(self, epoch, logs=None):
        self._pending = True

    def on_test_begin(self, logs=None):  # fit's validation: after the epoch's training
        self._average()

    def on_epoch_end(self, epoch, logs=None):  # (no validation): before the checkpoint
        self._average()

    def _average(self):
        if self._pending:  # once per epoch: a mean of equal copies may round
            if self._averager is None:
                from tinynet.training.distribute import replica_averager
                self._averager = replica_averager(self.model, self.strategy) or (lambda: None)
            self._averager()
            self._pending = False


class PreemptionFlag:
    """SIGTERM as a flag the training loop checks between steps (TensorFlow's
    ``PreemptionCheckpointHandler`` does the same for GCP's notice): the step in flight
    finishes, a checkpoint is written, and training stops with ``Preempted``. Installed for
    the duration of a ``with`` block, restoring the previous handler after."""

    def __init__(self, signals=None):
        import signal
        self.signals = (signal.SIGTERM,) if signals is None else tuple(signals)
        self.received = None
        self._previous = {}

    def _handle(self, signum, frame):
        self.received = signum

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():
            for s in self.signals:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        import signal
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
        return False


class InEpochCheckpoint(keras.callbacks.Callback):
    """Writes a checkpoint inside an epoch every ``interval`` (``("seconds", n)`` or
    ``("steps", n)``, or None: only on SIGTERM), and stops training after a checkpoint when
    ``flag`` has seen SIGTERM.

    ``save(epoch, completed_steps, metric_arrays=None)`` writes the in-epoch checkpoint of the
    epoch in progress; ``steps_done`` is the number of that epoch's batches already trained
    before this ``fit`` (a run resumed inside an epoch). Put it after ``EpochEnd``: at an
    epoch's end that one has written the epoch checkpoint by the time this one stops the run.

    SIGTERM during the validation that ends an epoch stops it after the batch in flight (a
    10,000-image validation can outlast a preemption notice by minutes): the epoch's training
    is saved as a checkpoint of all its steps, with the running training metrics as they were
    when training ended (validation has reset them since), and the resumed run validates that
    epoch first (``tinynet.training.runner``). ``validation_saved``: that checkpoint is the one
    resumed from, so a SIGTERM in its validation stops without writing it again."""

    def __init__(self, save, steps_per_epoch, interval=None, flag=None, steps_done=0,
                 log=print, checkpoint_name=str, validation_saved=False):
        # checkpoint_name(completed_epochs[, completed_steps]): a checkpoint's file name (for
        # the messages); save -> path, or None: SIGTERM stops without an in-epoch checkpoint
        # (the last epoch's is kept)
        super().__init__()
        self.save, self.steps_per_epoch, self.interval = save, steps_per_epoch, interval
        self.flag, self.log, self.checkpoint_name = flag, log, checkpoint_name
        self.validation_saved = validation_saved
        self._step = steps_done
        self._last = time.monotonic()
        self._since = 0
        self._train_metrics = None  # the running training metrics when the epoch's training ended

    def _due(self):
        if self.interval is None:
            return False
        unit, n = self.interval
        return self._since >= n if unit == "steps" else time.monotonic() - self._last >= n

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        from tinynet.errors import interrupt_requested
        if interrupt_requested():  # a Ctrl-C whose KeyboardInterrupt something swallowed
            raise KeyboardInterrupt
        self._step += 1
        self._since += 1
        if self._step >= self.steps_per_epoch:  # validation, then the epoch's own checkpoint
            if self.save is not None and self.model is not None:  # (one device read an epoch)
                self._train_metrics = [keras.ops.convert_to_numpy(v)
                                       for v in self.model.metrics_variables]
            return
        stop = self.flag is not None and self.flag.received
        if self.save is None:
            if stop:
                self.log(f"SIGTERM: stopped at step {self._step}/{self.steps_per_epoch} of epoch "
                         f"{self._epoch + 1} without an in-epoch checkpoint (one replica only); "
                         f"re-run the same command to resume from the last finished epoch")
                from tinynet.errors import Preempted
                raise Preempted(f"epoch {self._epoch + 1}")
            return
        if stop or self._due():
            path = self.save(self._epoch, self._step)
            self._last, self._since = time.monotonic(), 0
            if stop:
                self.log(f"SIGTERM: stopped after step {self._step}/{self.steps_per_epoch} of "
                         f"epoch {self._epoch + 1} and saved {path}; re-run the same command "
                         f"to resume there")
                from tinynet.errors import Preempted
                raise Preempted(str(path))

    def on_test_begin(self, logs=None):
        _pause_in_validation(self._epoch, self.flag)
        self._stop_in_validation()

    def on_test_batch_end(self, batch, logs=None):
        self._stop_in_validation()

    def _stop_in_validation(self):
        if self.flag is None or not self.flag.received or self._step < self.steps_per_epoch:
            return  # (not fit's validation: an evaluate of its own)
        from tinynet.errors import Preempted

        epoch = self._epoch + 1
        if self.validation_saved:
            self.log(f"SIGTERM: stopped during the validation of epoch {epoch}; its training "
                     f"is in {self.checkpoint_name(self._epoch, self._step)}; re-run the same "
                     f"command to validate it and go on")
            raise Preempted(f"validation of epoch {epoch}")
        if self.save is None:
            self.log(f"SIGTERM: stopped during the validation of epoch {epoch} without saving "
                     f"its training (one replica only); re-run the same command to resume from "
                     f"the last finished epoch")
            raise Preempted(f"validation of epoch {epoch}")
        path = self.save(self._epoch, self._step, self._train_metrics)
        self.log(f"SIGTERM: stopped during the validation of epoch {epoch} and saved its "
                 f"training in {path}; re-run the same command to validate it and go on")
        raise Preempted(str(path))

    def on_epoch_end(self, epoch, logs=None):
        self._step = 0
        self._train_metrics = None
        self._last, self._since = time.monotonic(), 0
        if self.flag is not None and self.flag.received:
            self.log(f"SIGTERM: stopped after epoch {epoch + 1} and saved its checkpoint "
                     f"{self.checkpoint_name(epoch + 1)}; re-run the same command to resume "
                     f"there")
            from tinynet.errors import Preempted
            raise Preempted(f"epoch {epoch + 1}")


PAUSE_IN_VALIDATION_ENV = "TINYNET_PAUSE_IN_VALIDATION"


def _pause_in_validation(epoch, flag):
    """A test hook, like ``tinynet.io``'s: with ``TINYNET_PAUSE_IN_VALIDATION=<seconds>:<epoch>``
    the validation of that (1-based) epoch announces itself on stderr and waits, until the
    seconds pass or SIGTERM arrives, so that a fault test can signal a run there."""
    import os
    import sys

    seconds, _, when = os.environ.get(PAUSE_IN_VALIDATION_ENV, "").partition(":")
    if not seconds or int(when or 0) != epoch + 1:
        return
    print(f"tinynet-test: paused in the validation of epoch {epoch + 1}", file=sys.stderr,
          flush=True)
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline and not (flag is not None and flag.received):
        time.sleep(0.02)


class RestoreMetrics(keras.callbacks.Callback):
    """Puts an unfinished epoch's running metric totals (from an in-epoch checkpoint) back
    after ``fit`` has reset them, so the epoch's logged training loss and accuracy are those of
    the uninterrupted run, bit for bit."""

    def __init__(self, arrays):
        super().__init__()
        self.arrays = arrays

    def on_epoch_begin(self, epoch, logs=None):
        if self.arrays is None:
            return
        variables = self.model.metrics_variables
        if len(variables) != len(self.arrays):
            raise TinynetError(f"the in-epoch checkpoint holds {len(self.arrays)} metric totals, "
                               f"the compiled model has {len(variables)}; pass --restart")
        for v, value in zip(variables, self.arrays):
            v.assign(value)
        self.arrays = None


def ordered_callbacks(*, epoch_end, checkpoint, progress=None, lr=None, restore_metrics=None,
                      replica_statistics=None):
    """The callbacks of one training ``fit``, in the one order that is right; each slot is
    checked to hold its kind (None: not used in this fit). Keras calls callbacks in list order,
    and each relies on the ones before it at the same hook:

    1. ``replica_statistics`` (``ReplicaStatistics``): averages the replicas' BN statistics
       when the epoch's training ends, before validation and before the checkpoint;
    2. ``restore_metrics`` (``RestoreMetrics``): puts an epoch resumed inside's running metric
       totals back at its start, after ``fit`` reset them and before any step;
    3. ``lr`` (the stage's lr policy: ``ScheduleCallback``, ``ReduceLROnPlateau``): sets the
       learning rate before ``EpochEnd`` records it, and updates its state at an epoch's end
       before ``EpochEnd`` checkpoints that state;
    4. ``progress`` (``tinynet.training.progress.EpochProgress``): a progress bar ends its line
       before the epoch's own line is logged;
    5. ``epoch_end`` (``EpochEnd``): the history row, the checkpoint and the run's files;
    6. ``checkpoint`` (``InEpochCheckpoint``): in-epoch checkpoints and the stop after SIGTERM,
       which at an epoch's end must come after that epoch's checkpoint.
    """
    from tinynet.training.progress import EpochProgress

    slots = (("replica_statistics", replica_statistics, (ReplicaStatistics,)),
             ("restore_metrics", restore_metrics, (RestoreMetrics,)),
             ("lr", lr, (ScheduleCallback, keras.callbacks.ReduceLROnPlateau,
                         keras.callbacks.LearningRateScheduler)),
             ("progress", progress, (EpochProgress,)),
             ("epoch_end", epoch_end, (EpochEnd,)),
             ("checkpoint", checkpoint, (InEpochCheckpoint,)))
    callbacks = []
    for name, callback, kinds in slots:
        if callback is None:
            continue
        if not isinstance(callback, kinds):
            raise TypeError(f"ordered_callbacks: {name} must be one of "
                            f"{[k.__name__ for k in kinds]}, got {type(callback).__name__}")
        callbacks.append(callback)
    check_lr_callbacks(callbacks)
    return callbacks
