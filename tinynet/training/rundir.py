"""The run directory as training writes it (its files: ``tinynet.run_reader``, which reads it).

    checkpoints/     ckpt-<epochs done>[-s<steps done>].npz, the newest two (checkpoint.py)
    best_model.keras the model with the best val_accuracy so far
    final_model.keras the model after the last epoch
    plots/training_curves.png
    tensorboard/     TensorBoard logs: per-epoch metrics, lr per iteration, stage boundaries

Every file is replaced atomically (tinynet.io.atomic_write), so a run killed at any moment
leaves each file either in its previous or in its new complete version.
"""
import io as _io
import math
import os
import tempfile
import time
import uuid

import numpy as np
import pandas as pd

from tinynet import io as tio
from tinynet.errors import TinynetError
from tinynet.run_reader import (BEST_MODEL, CONFIG, FINAL_MODEL, HISTORY,  # noqa: F401
                                HISTORY_COLUMNS, LR, LR_COLUMNS, STATE, RunReader)
from tinynet.training import checkpoint

PLOT = "plots/training_curves.png"
PREVIOUS_RUN = "previous-run-"  # --restart keeps a finished run in previous-run-<date>-<time>/
TENSORBOARD = "tensorboard"
_OWNED = [CONFIG, STATE, HISTORY, LR, BEST_MODEL, FINAL_MODEL, "plots", checkpoint.FOLDER,
          TENSORBOARD]


class RunDirectory(RunReader):
    """The run directory as training writes it; it reads through ``RunReader``."""

    writable = True
    damage_hint = ("restore it, or pass --restart to start the run over (an unfinished run is "
                   "discarded)")

    def has_run(self):
        """Whether a run was started here: config.json, or (config.json lost) checkpoints or
        history of one."""
        return (tio.exists(self.file(CONFIG)) or bool(checkpoint.list_checkpoints(self.path))
                or tio.exists(self.file(HISTORY)))

    def check_writable(self):
        """Checks that files can be written here, without creating anything (a refusal that
        comes later, e.g. of the model's arguments, leaves no empty folder behind): a write
        probe in the folder, or in its nearest existing parent when it does not exist yet,
        since permission bits say nothing for root, read-only mounts or remote buckets.
        Returns False where the folder exists but cannot be written (the caller decides: a
        finished run can still be reported); raises ``TinynetError`` where it is a file or
        cannot be created."""
        path = self.path
        local = tio.is_local(path)
        if local and os.path.exists(path) and not os.path.isdir(path):
            raise TinynetError(f"the run directory {path} is a file, not a folder; give "
                               f"--run-dir a folder path (it is created if missing)")
        exists = os.path.isdir(path) if local else tio.exists(path)
        target = path
        if not exists and local:
            target = os.path.dirname(os.path.abspath(path))
            while not os.path.exists(target):
                target = os.path.dirname(target)
            if not os.path.isdir(target):
                raise TinynetError(f"cannot create the run directory {path}: {target} is a "
                                   f"file, not a folder; choose another --run-dir")
        probe = tio.join(target, f".tmp-probe-{uuid.uuid4().hex}")
        try:
            if not local:
                tio.makedirs(path)  # (buckets have no folders to leave behind)
            with (open(probe, "w") if local else tio.gfile.GFile(probe, "w")) as f:
                f.write("probe")
            os.remove(probe) if local else tio.remove(probe)
        except Exception as e:  # OSError locally, tf.errors.OpError through gfile
            if exists:
                return False
            raise TinynetError(f"cannot create the run directory {path} ({_reason(e)} in "
                               f"{target}); choose another --run-dir or fix the "
                               f"permissions") from None
        return True

    def finished(self):
        """``(meta of the final checkpoint)`` when the run here is complete, else None."""
        try:
            state = self.read_state() if tio.exists(self.file(STATE)) else {}
        except TinynetError:
            return None
        if state.get("status") != "complete":
            return None
        found = checkpoint.load_latest_checkpoint(self.path, log=lambda line: None)
        if (found is None or found[1].get("completed_steps")
                or found[1]["completed_epochs"] != state.get("total_epochs")):
            return None
        return found[1]

    def clear(self):
        """Removes the files a run writes (and nothing else the folder may hold)."""
        for name in _OWNED:
            target = self.file(name)
            if tio.exists(target):
                if tio.gfile.isdir(target):
                    tio.rmtree(target)
                else:
                    tio.remove(target)

    def move_aside(self):
        """Moves the files of the run here into a new ``previous-run-<date>-<time>`` folder
        inside it (what ``--restart`` does to a finished run); returns that folder's path."""
        target = self.file(time.strftime(f"{PREVIOUS_RUN}%Y%m%d-%H%M%S"))
        while tio.exists(target):  # (two restarts within a second)
            target += "-1"
        tio.makedirs(target)
        for name in _OWNED:
            source = self.file(name)
            if tio.exists(source):
                tio.move(source, tio.join(target, os.path.basename(name)))
        return target

    def remove_temporary_files(self):
        """Deletes what writes killed midway left (``.tmp-*``, see tinynet.io.atomic_write)."""
        for folder in (self.path, self.file(checkpoint.FOLDER), self.file(os.path.dirname(PLOT))):
            for name in tio.listdir(folder):
                if name.startswith(".tmp-"):
                    tio.remove(tio.join(folder, name))

    def write_config(self, config):
        tio.write_json_atomic(self.file(CONFIG), config)

    def write_state(self, state):
        tio.write_json_atomic(self.file(STATE), state)

    def write_history(self, rows):
        buf = _io.StringIO()
        pd.DataFrame(rows, columns=HISTORY_COLUMNS).to_csv(buf, index=False)
        tio.write_text_atomic(self.file(HISTORY), buf.getvalue())

    def write_lr(self, rows):
        tio.write_text_atomic(self.file(LR), "\n".join(
            [",".join(LR_COLUMNS)] + [f"{it},{epoch},{lr!r}" for it, epoch, lr in rows]) + "\n")

    def save_model(self, model, name):
        tio.atomic_write(self.file(name), model.save, size_hint=model_bytes(model))

    # -- checkpoints (the file format is tinynet.training.checkpoint's) ----------------------
    def checkpoint_name(self, completed_epochs, completed_steps=0):
        return os.path.basename(checkpoint.checkpoint_path(self.path, completed_epochs,
                                                           completed_steps))

    def save_checkpoint(self, model, optimizer, meta, keep=2, metric_variables=()):
        return checkpoint.save_checkpoint(self.path, model, optimizer, meta, keep,
                                          metric_variables)

    def latest_checkpoint(self, log=print):
        """The newest readable checkpoint as ``(path, meta, arrays)``, or None."""
        return checkpoint.load_latest_checkpoint(self.path, log)

    def save_stage_best(self, model, stage_index):
        checkpoint.save_stage_best(self.path, model, stage_index)

    def load_stage_best(self, model, stage_index):
        return checkpoint.load_stage_best(self.path, model, stage_index)


def variable_bytes(variables):
    """The bytes of ``variables`` from their shapes and dtypes (no copy off the device)."""
    return sum(math.prod(v.shape) * np.dtype(v.dtype).itemsize for v in variables)


def model_bytes(model):
    """The bytes of a model's variables: about what its .keras file and each checkpoint hold."""
    return variable_bytes(model.variables)


def _reason(e):
    return getattr(e, "strerror", None) or getattr(e, "message", None) or str(e)


class ReaderRunDirectory(RunDirectory):
    """The run directory as a multi-worker member other than the chief sees it: it reads the
    chief's files (to resume from the same checkpoint) and writes nothing there. Saving a model
    still runs, into a temporary folder that is then deleted: it takes part in collective ops
    the chief runs at the same time, and a worker that skipped it would leave the chief
    waiting (TensorFlow's multi-worker rule: every worker saves, only the chief keeps it).
    The best weights of a stage that a later stage restarts from are kept in memory: the chief
    may not have written its file yet when the next stage starts (nothing synchronises the
    workers between the end of one ``fit`` and the next); a file from an earlier session is
    read as written."""

    writable = False

    def __init__(self, path):
        super().__init__(path)
        self._stage_best = {}

    def _no_write(self, *args, **kwargs):
        return None

    clear = remove_temporary_files = write_config = write_state = write_history = _no_write
    write_lr = save_checkpoint = _no_write

    def save_model(self, model, name):
        with tempfile.TemporaryDirectory(prefix="tinynet-worker-") as scratch:
            model.save(os.path.join(scratch, os.path.basename(name)))

    def save_stage_best(self, model, stage_index):
        self._stage_best[stage_index] = checkpoint.stage_best_arrays(model)

    def load_stage_best(self, model, stage_index):
        if stage_index not in self._stage_best:
            return super().load_stage_best(model, stage_index)
        arrays = dict(self._stage_best[stage_index])
        path = f"the best weights of stage {stage_index + 1} (in memory)"
        checkpoint.assign_stage_best(model, arrays.pop("paths"), arrays, path)
        return path
