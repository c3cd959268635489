"""Epoch checkpoints: every model variable, every optimizer variable and the run's state, in
one ``.npz`` file written atomically.

A checkpoint holds (as arrays) ``model.variables`` -- weights, BatchNormalization moving
statistics and any SeedGenerator state -- and ``optimizer.variables`` -- iteration count,
learning rate, moments -- plus a JSON ``meta`` record: the number of completed epochs, every
callback's state, the best metric so far, the data-order seed and the history rows. Arrays are
float32 copies of the variables, so restoring is bit-exact.

Files are ``checkpoints/ckpt-<completed epochs>.npz`` at the end of an epoch and
``ckpt-<completed epochs>-s<steps>.npz`` inside one (``--checkpoint-every``, or on SIGTERM:
``steps`` batches of the next epoch done; ``meta["epoch_progress"]`` then holds what that
epoch's end needs, and the arrays ``metric_*`` its running metric totals). The newest ``keep``
are kept, ordered by (epochs, steps). A kill while writing leaves only a temporary file
(ignored), and a checkpoint that cannot be read is skipped in favour of the one before it.
"""
import io
import json
import re
import zipfile

import numpy as np
import tensorflow as tf

from tinynet import io as tio
from tinynet.errors import TinynetError

FOLDER = "checkpoints"
# stage-<k>-best.npz files are not checkpoints
_NAME = re.compile(r"^ckpt-(\d{5,})(?:-s(\d{6,}))?\.npz$")


def checkpoint_path(run_dir, completed_epochs, completed_steps=0):
    """``ckpt-00003.npz`` after 3 epochs; ``ckpt-00003-s000120.npz`` 120 steps into the 4th."""
    step = f"-s{completed_steps:06d}" if completed_steps else ""
    return tio.join(run_dir, FOLDER, f"ckpt-{completed_epochs:05d}{step}.npz")


def _position(name):
    m = _NAME.match(name)
    return int(m.group(1)), int(m.group(2) or 0)


def list_checkpoints(run_dir):
    """Checkpoint paths, newest first (temporary files from interrupted writes are ignored)."""
    names = [n for n in tio.listdir(tio.join(run_dir, FOLDER)) if _NAME.match(n)]
    names.sort(key=_position, reverse=True)
    return [tio.join(run_dir, FOLDER, n) for n in names]


def _variable_arrays(prefix, variables):
    return {f"{prefix}_{i:05d}": np.asarray(v.numpy() if hasattr(v, "numpy") else v)
            for i, v in enumerate(variables)}


def _write_npz(path, arrays):
    def write(local):
        with open(local, "wb") as f:
            np.savez(f, **arrays)

    tio.atomic_write(path, write, size_hint=sum(int(np.asarray(a).nbytes)
                                                 for a in arrays.values()))


def save_checkpoint(run_dir, model, optimizer, meta, keep=2, metric_variables=()):
    """Writes the checkpoint ``meta`` places (``completed_epochs``, ``completed_steps``);
    ``metric_variables``: the running metric totals of an unfinished epoch (variables, or
    their values as arrays)."""
    meta = dict(meta,
                model_variables=[v.path for v in model.variables],
                optimizer_variables=[v.path for v in optimizer.variables])
    arrays = dict(_variable_arrays("model", model.variables),
                  **_variable_arrays("optimizer", optimizer.variables),
                  **_variable_arrays("metric", metric_variables),
                  meta=np.asarray(json.dumps(meta)))
    path = checkpoint_path(run_dir, meta["completed_epochs"], meta.get("completed_steps", 0))
    _write_npz(path, arrays)
    for old in list_checkpoints(run_dir)[keep:]:
        tio.remove(old)
    return path


def read_checkpoint(path):
    """``(meta, arrays)`` of one checkpoint; raises ``ValueError`` if it is unreadable."""
    meta, arrays = read_checkpoint_arrays(path, "meta")
    try:
        return json.loads(str(meta)), arrays
    except ValueError as e:
        raise ValueError(f"{path} is unreadable (meta: {e})") from None


def load_latest_checkpoint(run_dir, log=print):
    """The newest readable checkpoint as ``(path, meta, arrays)``, or ``None`` if there is none."""
    for path in list_checkpoints(run_dir):
        try:
            meta, arrays = read_checkpoint(path)
        except ValueError as e:
            log(f"warning: skipping checkpoint: {e}")
            continue
        return path, meta, arrays
    return None


def _canonical(path):
    # Keras numbers a second object of the same kind in one session ("adam_1/iteration"); a
    # checkpoint must restore into a notebook's second model just as into a fresh process.
    return re.sub(r"^([^/]+?)_\d+/", r"\1/", path)


def restore_variables(model, optimizer, meta, arrays, path="checkpoint"):
    """Assigns a checkpoint's arrays to ``model`` and ``optimizer`` (which must be built)."""
    for prefix, variables, key in (("model", model.variables, "model_variables"),
                                   ("optimizer", optimizer.variables, "optimizer_variables")):
        saved = meta[key]
        if [_canonical(v.path) for v in variables] != [_canonical(p) for p in saved]:
            raise TinynetError(f"{path} does not match this {prefix}: it holds {len(saved)} "
                               f"variables ({saved[:2]}...), the {prefix} has {len(variables)}; "
                               f"pass --restart to start over or use another --run-dir")
        for i, v in enumerate(variables):
            value = arrays[f"{prefix}_{i:05d}"]
            if tuple(value.shape) != tuple(v.shape):
                raise TinynetError(f"{path}: variable {v.path} has shape {value.shape}, the "
                                   f"{prefix} expects {tuple(v.shape)}; pass --restart")
            v.assign(value)


def stage_best_path(run_dir, stage_index):
    return tio.join(run_dir, FOLDER, f"stage-{stage_index + 1}-best.npz")


def save_stage_best(run_dir, model, stage_index):
    """The model's variables (not the optimizer's) as the best of stage ``stage_index``."""
    _write_npz(stage_best_path(run_dir, stage_index), stage_best_arrays(model))


def stage_best_arrays(model):
    """What a stage-best file holds: the model's variables and their paths."""
    return dict(_variable_arrays("model", model.variables),
                paths=np.asarray(json.dumps([v.path for v in model.variables])))


def load_stage_best(run_dir, model, stage_index):
    """Assigns the best weights of stage ``stage_index`` to ``model``; returns the file's path."""
    path = stage_best_path(run_dir, stage_index)
    try:
        meta, arrays = read_checkpoint_arrays(path)
    except ValueError as e:
        raise TinynetError(f"cannot restart from the best weights of stage {stage_index + 1}: "
                           f"{e}; pass --restart to run the protocol again") from None
    assign_stage_best(model, meta, arrays, path)
    return path


def assign_stage_best(model, meta, arrays, path):
    paths = json.loads(str(meta))
    if [_canonical(v.path) for v in model.variables] != [_canonical(p) for p in paths]:
        raise TinynetError(f"{path} does not match this model; pass --restart")
    for i, v in enumerate(model.variables):
        if "seed_generator" not in v.path:  # keep the random stream going, do not rewind it
            v.assign(arrays[f"model_{i:05d}"])


def read_checkpoint_arrays(path, meta_key="paths"):
    try:
        with tio.gfile.GFile(path, "rb") as f:
            blob = f.read()
        with np.load(io.BytesIO(blob), allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
        return arrays.pop(meta_key), arrays
    except (OSError, tf.errors.OpError, zipfile.BadZipFile, EOFError, KeyError,
            ValueError) as e:
        if isinstance(e, ValueError) and "allow_pickle" in str(e):
            # NumPy's reason for bytes that are not an .npz: "... unsafely using
            # allow_pickle=True", advice a damaged checkpoint must not repeat
            reason = "not a NumPy .npz archive: damaged, or not a checkpoint tinynet wrote"
        else:
            reason = f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        raise ValueError(f"{path} is unreadable ({reason})") from None
