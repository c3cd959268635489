"""The one reader of a run directory, without TensorFlow.

A run directory is the only thing that passes from training to everything after it
(evaluation, reports, ensembles, tuning, the tests); they all read it through ``RunReader``.
Local paths (a disk, a Drive mount) are read with the standard library, so a report or a
tuner does not start TensorFlow; ``gs://`` and other URLs go through ``tinynet.io`` (TensorFlow's
file system). The writer, ``tinynet.training.rundir.RunDirectory``, is a ``RunReader`` too.

    config.json      what was run: model, protocol, seed, data, versions, git commit, command
    state.json       where the run stands: epochs done, stage, best val_accuracy, status
    history.csv      one row per epoch (HISTORY_COLUMNS)
    lr.csv           the learning rate of every training iteration (LR_COLUMNS)
    checkpoints/     ckpt-<epochs done>[-s<steps done>].npz (tinynet.training.checkpoint)
    best_model.keras, final_model.keras, plots/, tensorboard/, and what a paper evaluates after
    training (test_metrics.json, test_errors.json, evaluation.json)

A file that exists but cannot be read (binary junk, a truncated JSON, not an object) is a
``TinynetError`` naming it; a missing optional file reads as None or empty.
"""
import csv
import io as _io
import json
import math
import os

from tinynet.errors import TinynetError

CONFIG = "config.json"
STATE = "state.json"
HISTORY = "history.csv"
LR = "lr.csv"
BEST_MODEL = "best_model.keras"
FINAL_MODEL = "final_model.keras"
LR_COLUMNS = ["iteration", "global_epoch", "lr"]
HISTORY_COLUMNS = ["stage", "resolution", "epoch", "global_epoch", "lr", "loss", "accuracy",
                   "top5", "val_loss", "val_accuracy", "val_top5", "seconds"]
WHAT = {CONFIG: "the run's record", STATE: "where the run stands", HISTORY: "the epochs' history",
        LR: "the learning rates"}


def is_remote(path):
    return "://" in str(path)


class RunReader:
    """Reads the files of the run directory ``path``."""

    # what to do about a damaged file, in the reader's context (the writer says more)
    damage_hint = "the run directory is damaged"

    def __init__(self, path):
        self.path = str(path)

    def file(self, name):
        return os.path.join(self.path, name)

    def exists(self, name):
        path = self.file(name)
        if is_remote(path):
            from tinynet import io as tio
            return tio.exists(path)
        return os.path.exists(path)

    def _unreadable(self, name, e):
        reason = str(e).splitlines()[0] if str(e) else ""
        return TinynetError(f"{self.file(name)} ({WHAT.get(name, name)}) is unreadable "
                            f"({type(e).__name__}: {reason}); {self.damage_hint}")

    def read_text(self, name):
        """A file's text; ``FileNotFoundError`` when it is missing, ``TinynetError`` when it is
        not text (a damaged file)."""
        try:
            return self._read_text(name)
        except UnicodeDecodeError as e:
            raise self._unreadable(name, e) from None

    def _read_text(self, name):
        path = self.file(name)
        try:
            if is_remote(path):
                from tinynet import io as tio
                if not tio.exists(path):
                    raise FileNotFoundError(path)
                return tio.read_text(path)
            with open(path, encoding="utf-8") as f:
                return f.read()
        except UnicodeDecodeError as e:
            raise self._unreadable(name, e) from None

    def read_json(self, name, required=True):
        """A JSON object file as a dict; None when it is missing and not ``required``."""
        if not required and not self.exists(name):
            return None
        try:
            value = json.loads(self.read_text(name))
        except TinynetError:
            raise
        except Exception as e:  # JSONDecodeError, OSError, TensorFlow's OpError (gs://)
            if not self.exists(name):
                raise
            raise self._unreadable(name, e) from None
        if not isinstance(value, dict):
            raise self._unreadable(name, ValueError(f"holds a {type(value).__name__}, not a "
                                                    f"JSON object"))
        return value

    def has_config(self):
        return self.exists(CONFIG)

    def read_config(self):
        return self.read_json(CONFIG)

    def read_state(self):
        return self.read_json(STATE)

    def history_rows(self):
        """history.csv as a list of dicts of floats (None where the runner wrote nothing, the
        text where a cell is not a number); [] when there is none."""
        if not self.exists(HISTORY):
            return []
        rows = []
        for row in csv.DictReader(_io.StringIO(self.read_text(HISTORY))):
            parsed = {}
            for key, value in row.items():
                try:
                    parsed[key] = float(value) if value not in (None, "") else None
                except (TypeError, ValueError):
                    parsed[key] = value
            rows.append(parsed)
        return rows

    def read_history(self):
        """history.csv as a pandas DataFrame."""
        import pandas as pd

        try:
            return pd.read_csv(_io.StringIO(self.read_text(HISTORY)))
        except (ValueError, pd.errors.ParserError) as e:
            raise self._unreadable(HISTORY, e) from None

    def read_lr(self):
        """lr.csv as ``(iteration, global epoch, lr)`` rows; [] when there is none."""
        if not self.exists(LR):
            return []
        lines = self.read_text(LR).split("\n")[1:]
        try:
            return [(int(a), int(b), float(c)) for a, b, c in (l.split(",") for l in lines if l)]
        except ValueError as e:
            raise self._unreadable(LR, e) from None

    def parameter_count(self):
        """``(count, file)``: the parameters of the run's saved model (best, else final),
        summed from the weight shapes in its .keras file without building it; ``(None,
        None)`` when there is no saved model or it cannot be read."""
        import zipfile

        for name in (BEST_MODEL, FINAL_MODEL):
            path = self.file(name)
            if is_remote(path) or not os.path.exists(path):
                continue
            try:
                import h5py

                shapes = []
                with zipfile.ZipFile(path) as z, z.open("model.weights.h5") as f, \
                        h5py.File(f, "r") as h5:
                    h5.visititems(lambda key, obj: shapes.append(obj.shape) if (
                        isinstance(obj, h5py.Dataset) and not key.startswith("optimizer"))
                        else None)
                return sum(math.prod(s) for s in shapes), name
            except Exception:  # noqa: BLE001 (a report leaves the count out rather than fail)
                continue
        return None, None
