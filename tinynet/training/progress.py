"""Where a long run is inside an epoch: a progress bar on a terminal, a line every N seconds in
a log file.

The runner logs one line per finished epoch; an epoch of ImageNet-sized data takes an hour, so
``EpochProgress`` also reports inside it: on a terminal (``sys.stdout.isatty()``) a bar redrawn
in place at most 10 times a second, otherwise (a log file, ``nohup``, a notebook cell's captured
output) one line every ``every`` seconds -- and nothing for an epoch shorter than that, so short
runs and the tests stay quiet. Both show stage/epoch, step k/n (counting the steps an epoch
resumed inside had done before), images per second, the epoch's and the protocol's ETA, and the
running loss/accuracy.

Per step it reads the clock and compares; the metric values it prints are the Python floats
Keras already made of the batch's logs (``pythonify_logs``), so it adds no device read.
"""
import os
import shutil
import sys
import time

import keras

from tinynet.errors import TinynetError
from tinynet.training.callbacks import format_duration

ENV = "TINYNET_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0


def progress_seconds(every=None):
    """The seconds between two progress lines: ``every`` (``--progress-every``), else
    $TINYNET_PROGRESS_SECONDS, else 30. 0 turns the in-epoch progress off (bar included)."""
    if every is None:
        text = os.environ.get(ENV)
        if text is None or text.strip() == "":
            return DEFAULT_SECONDS
        try:
            every = float(text)
        except ValueError:
            every = None
        if every is None or not every >= 0 or every == float("inf"):
            raise TinynetError(f"{ENV}={text!r} is not a number of seconds; set it to a number "
                               f">= 0 (0: no progress inside epochs) or unset it (30)")
    if not every >= 0 or every == float("inf"):
        raise TinynetError(f"progress every {every!r} seconds: give a finite number >= 0 "
                           f"(0: no progress inside epochs)")
    return float(every)


class EpochProgress(keras.callbacks.Callback):
    """Reports the position inside each epoch of a ``fit`` over epochs of ``protocol``.

    ``num_train``: the training set size (the protocol's plan of steps and its cost units,
    ``Protocol.cost_units``, follow from it). ``steps_done``: steps of the first epoch of this
    ``fit`` trained before it (a run resumed inside an epoch). ``measured()`` -> ``(seconds,
    units)``: time and cost units of the epochs finished earlier in this process (the
    runner's own ETA figures), preferred for the protocol's ETA since they include validation;
    without them the epoch's step rate is scaled by cost. ``every``: seconds between lines
    without a terminal (``progress_seconds``); ``tty``: None asks ``sys.stdout.isatty()``.
    """

    def __init__(self, protocol, num_train, steps_done=0, every=None, log=print, measured=None,
                 tty=None, stream=None):
        super().__init__()
        self.protocol = protocol
        self.plan = protocol.epoch_plan(num_train)
        self.costs = protocol.cost_units(num_train)
        self.every = progress_seconds(every)
        self.log = log
        self.measured = measured
        self.tty = tty
        self.stream = stream
        self._skip = steps_done  # of the first epoch only
        self._epoch = None
        self._drawn = False  # a bar is on the screen without its newline

    def on_train_begin(self, logs=None):
        self._stream = self.stream or sys.stdout
        if self.tty is None:
            isatty = getattr(self._stream, "isatty", None)
            self._tty = bool(isatty and isatty())
        else:
            self._tty = self.tty

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch
        self._step = self._skip
        self._skip = 0
        self._start = time.monotonic()
        self._after_first = None  # (time, step) once the first batch (tracing) is done
        self._next = self._start + (0.1 if self._tty else self.every)
        self._steps = self.plan[epoch].steps

    def on_train_batch_end(self, batch, logs=None):
        self._step += 1
        now = time.monotonic()
        if self._after_first is None:
            self._after_first = (now, self._step)
        if not self.every or (now < self._next
                               and not (self._tty and self._step == self._steps)):
            return
        self._next = now + (0.1 if self._tty else self.every)
        self._report(now, logs or {})

    def on_test_begin(self, logs=None):  # fit's validation: the bar is complete, end its line
        self._end_line()

    def on_epoch_end(self, epoch, logs=None):
        self._end_line()

    def on_train_end(self, logs=None):
        self._end_line()

    def _end_line(self):
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False

    def line(self, now, logs, compact=False):
        """The progress text at ``now`` (``time.monotonic()``) with the batch's ``logs``;
        ``compact``: the bar's order, counts and ETAs first."""
        p = self.plan[self._epoch]
        stage = self.protocol.stages[p.stage_index]
        rate = self._step_seconds(now)
        left = p.steps - self._step
        epoch_eta = None if rate is None else rate * left
        unit_seconds = self._unit_seconds(rate, p.steps)
        later = sum(self.costs[self._epoch + 1:])
        total_eta = (None if epoch_eta is None or unit_seconds is None
                     else epoch_eta + later * unit_seconds)
        speed = "" if rate is None else f" {_number(stage.batch_size / rate)} img/s"
        metrics = "".join(f" {short} {logs[name]:.4f}" for name, short in
                          (("loss", "loss"), ("accuracy", "acc")) if isinstance(
                              logs.get(name), (int, float)))
        where = (f"stage {p.stage_index + 1}/{len(self.protocol.stages)} "
                 f"epoch {p.stage_epoch + 1}/{stage.epochs} "
                 f"(global {self._epoch + 1}/{self.protocol.total_epochs})")
        etas = f"epoch ETA {format_duration(epoch_eta)} ETA {format_duration(total_eta)}"
        if compact:  # the bar: what a narrow terminal must not cut off first
            return f"{self._step}/{p.steps}{speed} {etas}{metrics} | {where}"
        return f"{where} step {self._step}/{p.steps}{speed}{metrics} {etas}"

    def _step_seconds(self, now):
        """Seconds per step of this epoch after its first step (whose time is mostly tracing
        the step function or filling the input pipeline); None until a second step ends."""
        if self._after_first is not None and self._step > self._after_first[1]:
            then, step = self._after_first
            return (now - then) / (self._step - step)
        return None

    def _unit_seconds(self, step_seconds, steps):
        if self.measured is not None:
            seconds, units = self.measured()
            if units:
                return seconds / units
        if step_seconds is None:
            return None
        return step_seconds * steps / self.costs[self._epoch]

    def _report(self, now, logs):
        if not self._tty:
            self.log(self.line(now, logs))
            return
        text = self.line(now, logs, compact=True)
        p = self.plan[self._epoch]
        width = 20
        filled = width * self._step // p.steps
        bar = "[" + "=" * filled + (">" if filled < width else "") + "." * (width - filled - 1) + "]"
        columns = shutil.get_terminal_size((100, 20)).columns
        self._stream.write("\r" + f"{bar} {text}"[:max(columns - 1, 20)] + "\x1b[K")
        self._stream.flush()
        self._drawn = True


def _number(x):
    return f"{x:.0f}" if x >= 10 else f"{x:.2g}"
