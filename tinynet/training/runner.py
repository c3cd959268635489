"""Runs a ``Protocol`` on one model, resumable from the run directory after any interruption.

After every epoch the runner writes (in this order) the best model if val_accuracy improved,
an atomic checkpoint of all model and optimizer variables with every callback's state and the
history, then ``history.csv`` and ``state.json``. Re-running on the same run directory loads the
newest readable checkpoint and continues with the next epoch; data order and augmentation
depend only on ``(seed, epoch, step)``, so with ``deterministic=True`` (TensorFlow op
determinism) a run killed anywhere -- mid-epoch included -- and resumed ends with weights
bit-identical to an uninterrupted run.
"""
import dataclasses
import json
import os
import platform
import subprocess
import sys
import time

import keras
import numpy as np
import tensorflow as tf

import tinynet
from tinynet import io as tio
from tinynet.augment import ImgaugAugment, get_recipe
from tinynet.data.pipeline import eval_dataset, train_dataset
from tinynet.errors import TinynetError
from tinynet.models import get_model
from tinynet.plots import plot_history
from tinynet.training import checkpoint
from tinynet.training.callbacks import (CyclicLR, EpochEnd, PlateauWindow, check_lr_callbacks,
                                        format_duration)
from tinynet.training.rundir import BEST_MODEL, FINAL_MODEL, PLOT, RunDirectory


@dataclasses.dataclass
class TrainData:
    """Decoded training and validation sets plus what a report needs to name the classes."""

    train: object  # tinynet.data.pipeline.ImageSet
    val: object
    class_names: list
    description: dict  # dataset kind, root, sizes: recorded in config.json

    @property
    def num_classes(self):
        return len(self.class_names)


def configure_determinism(seed, deterministic, log=print):
    """Seeds Python, NumPy and TensorFlow; ``deterministic`` also turns on op determinism.

    Bit-identical runs also need ``tinynet.experiment.DETERMINISTIC_ENV`` (one inter-op
    thread, a fixed hash seed) in the environment before Python starts; the experiment scripts re-exec
    themselves with it (``reexec_for_determinism``).
    """
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()
        from tinynet.experiment import DETERMINISTIC_ENV
        unset = [f"{k}={v}" for k, v in DETERMINISTIC_ENV.items() if os.environ.get(k) != v]
        if unset:
            log(f"warning: {' '.join(unset)} not set before start; runs may differ in the "
                f"last bits (see tinynet.experiment.reexec_for_determinism)")


def make_optimizer(config):
    config = dict(config)
    name = config.pop("name")
    return keras.optimizers.get({"class_name": name, "config": config})


def provenance():
    def git_commit():
        try:
            out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                                 cwd=os.path.dirname(os.path.abspath(tinynet.__file__)), timeout=5)
            return out.stdout.strip() or None
        except (OSError, subprocess.SubprocessError):
            return None

    return {"versions": {"tinynet": tinynet.__version__, "tensorflow": tf.__version__,
                         "keras": keras.__version__, "numpy": np.__version__,
                         "python": platform.python_version()},
            "git_commit": git_commit(), "command": sys.argv, "host": platform.node(),
            "devices": [d.name for d in tf.config.list_physical_devices()],
            "created": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


def _check_same_run(stored, identity, run_dir):
    for key, value in identity.items():
        if json.loads(json.dumps(value)) != stored.get(key):
            raise TinynetError(
                f"{run_dir} holds a run with a different {key} ({stored.get(key)!r} there, "
                f"{value!r} now); pass --restart to start over there, or another --run-dir")


class _Run:
    """The state of one protocol run as it progresses; ``on_epoch`` is the per-epoch hook."""

    def __init__(self, protocol, model, data, run_dir, seed, log):
        self.protocol, self.model, self.data, self.seed, self.log = (
            protocol, model, data, seed, log)
        self.rd = run_dir
        self.plan = protocol.epoch_plan(len(data.train))
        self.costs = protocol.cost_units(len(data.train))
        self.history = []
        self.best = None  # (val_accuracy, global epoch)
        self.stage_best = {}  # stage index -> best val_accuracy within that stage
        self.lrs = []  # (iteration, global epoch, lr) of every training batch
        # stages whose best weights a later stage restarts from
        self.keep_stage_best = {i - 1 for i, s in enumerate(protocol.stages) if s.restart_from_best}
        self.callback_states = {}
        self.callbacks = []
        self._seconds = 0.0
        self._units = 0

    @property
    def completed(self):
        return len(self.history)

    def restore(self, meta):
        self.history = meta["history"]
        self.best = tuple(meta["best"]) if meta["best"] else None
        self.callback_states = meta["callbacks"]
        self.stage_best = {int(k): tuple(v) for k, v in meta.get("stage_best", {}).items()}
        self.lrs = [r for r in self.rd.read_lr() if r[1] <= self.completed]

    def write_best_files(self, completed):
        """Saves the best model and stage-best weights that epoch ``completed`` set (the model
        holds that epoch's weights)."""
        if self.best is not None and self.best[1] == completed:
            self.rd.save_model(self.model, BEST_MODEL)
        for stage_index, (_, epoch) in self.stage_best.items():
            if epoch == completed:
                checkpoint.save_stage_best(self.rd.path, self.model, stage_index)

    def on_epoch(self, epoch, logs, lr, seconds, lrs=()):
        p = self.plan[epoch]
        stage = self.protocol.stages[p.stage_index]
        row = {"stage": p.stage_index + 1, "resolution": stage.resolution,
               "epoch": p.stage_epoch + 1, "global_epoch": epoch + 1, "lr": lr,
               "loss": logs.get("loss"), "accuracy": logs.get("accuracy"),
               "top5": logs.get("top5"), "val_loss": logs.get("val_loss"),
               "val_accuracy": logs.get("val_accuracy"), "val_top5": logs.get("val_top5"),
               "seconds": round(seconds, 3)}
        self.history.append(row)
        if self.best is None or row["val_accuracy"] > self.best[0]:
            self.best = (row["val_accuracy"], epoch + 1)
        if p.stage_index in self.keep_stage_best and (
                row["val_accuracy"] > self.stage_best.get(p.stage_index, (-1.0, 0))[0]):
            self.stage_best[p.stage_index] = (row["val_accuracy"], epoch + 1)
        # lr.csv may run ahead of the checkpoint (a resume drops the extra rows), never behind
        self.lrs.extend((it, epoch + 1, value) for it, value in lrs)
        self.rd.write_lr(self.lrs)
        states = {cb.state_key: {"stage": p.stage_index, "state": cb.get_state()}
                  for cb in self.callbacks if hasattr(cb, "get_state")}
        meta = {"completed_epochs": epoch + 1, "seed": self.seed, "best": self.best,
                "callbacks": states, "history": self.history, "stage_best": self.stage_best,
                "fingerprint": self.protocol.fingerprint()}
        checkpoint.save_checkpoint(self.rd.path, self.model, self.model.optimizer, meta)
        # The best weights are written after the checkpoint that records them: a kill in
        # between is repaired on resume (write_best_files), so they always belong to an epoch
        # the history keeps.
        self.write_best_files(epoch + 1)
        self.rd.write_history(self.history)
        self.write_state("running")
        self._seconds += seconds
        self._units += self.costs[epoch]
        eta = self._seconds / self._units * sum(self.costs[epoch + 1:])
        n = len(self.protocol.stages)
        self.log(f"stage {p.stage_index + 1}/{n} {stage.resolution}px "
                 f"epoch {p.stage_epoch + 1}/{stage.epochs} "
                 f"global {epoch + 1}/{self.protocol.total_epochs} lr {lr:.3g} "
                 f"loss {row['loss']:.4f} acc {row['accuracy']:.4f} top5 {row['top5']:.4f} "
                 f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} "
                 f"val_top5 {row['val_top5']:.4f} {seconds:.1f}s ETA {format_duration(eta)}")

    def write_state(self, status):
        last = self.plan[self.completed - 1] if self.completed else None
        self.rd.write_state({
            "status": status, "completed_epochs": self.completed,
            "total_epochs": self.protocol.total_epochs,
            "stage": None if last is None else last.stage_index + 1,
            "stage_epoch": None if last is None else last.stage_epoch + 1,
            "best_val_accuracy": None if self.best is None else self.best[0],
            "best_epoch": None if self.best is None else self.best[1],
            "checkpoint": (os.path.basename(checkpoint.checkpoint_path(self.rd.path, self.completed))
                           if self.completed else None),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S %Z")})

    def plot(self):
        if self.history:
            plot_history(self.rd.read_history(), self.rd.file(PLOT),
                         title=f"{self.model.name}: {self.protocol.name}")


def run_protocol(protocol, *, model_name, data, run_dir, model_kwargs=None, seed=0,
                 deterministic=False, restart=False, interpolation="nearest", log=print):
    """Trains ``model_name`` through ``protocol`` in ``run_dir``, resuming if it holds the run.

    Returns the finished model. Raises ``TinynetError`` if ``run_dir`` holds a different run
    (unless ``restart``, which clears it first).
    """
    model_kwargs = dict(model_kwargs or {})
    configure_determinism(seed, deterministic, log)
    rd = RunDirectory(run_dir)
    identity = {"model": model_name, "model_kwargs": model_kwargs, "protocol": protocol.to_dict(),
                "seed": seed, "interpolation": interpolation,
                "data": {"num_train": len(data.train), "num_val": len(data.val),
                         "num_classes": data.num_classes}}
    if restart and rd.has_run():
        log(f"--restart: removing the previous run in {run_dir}")
        rd.clear()
    mean = None
    if any(s.augment and get_recipe(s.augment).subtract_mean for s in protocol.stages):
        mean = data.train.channel_mean()  # seed 001's global mean subtraction, every stage
    if rd.has_run():
        _check_same_run(rd.read_config(), identity, run_dir)
    else:
        # input_mean: what evaluation tools must subtract from x / 255 before the model
        rd.write_config(dict(identity, deterministic=deterministic, dataset=data.description,
                             input_mean=None if mean is None else [float(m) for m in mean],
                             **provenance()))

    model = get_model(model_name, num_classes=data.num_classes, **model_kwargs)
    model.compile(optimizer=make_optimizer(protocol.optimizer),
                  loss=keras.losses.SparseCategoricalCrossentropy(),
                  metrics=["accuracy", keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")])
    model.optimizer.build(model.trainable_variables)
    run = _Run(protocol, model, data, rd, seed, log)

    found = checkpoint.load_latest_checkpoint(run_dir, log)
    if found:
        path, meta, arrays = found
        checkpoint.restore_variables(model, model.optimizer, meta, arrays, path)
        run.restore(meta)
        # history.csv may be ahead of (a fallback) or behind (a kill between the two writes)
        # the checkpoint; the checkpoint's rows are the truth.
        rd.write_history(run.history)
        rd.write_lr(run.lrs)
        run.write_best_files(run.completed)
        rd.remove_temporary_files()
        log(f"resuming {run_dir} from {os.path.basename(path)}: "
            f"{run.completed}/{protocol.total_epochs} epochs done")
    elif rd.has_run() and tio.exists(rd.file("history.csv")):
        log(f"warning: {run_dir} has no readable checkpoint; starting from epoch 1")

    val = eval_dataset(data.val, protocol.eval_batch_size, protocol.val_resolution,
                       interpolation, mean)
    while run.completed < protocol.total_epochs:
        first = run.completed
        p = run.plan[first]
        stage = protocol.stages[p.stage_index]
        start = protocol.stage_start(p.stage_index)
        end = start + stage.epochs
        if first == start and stage.restart_from_best:
            path = checkpoint.load_stage_best(run_dir, model, p.stage_index - 1)
            log(f"stage {p.stage_index + 1} starts from the best weights of stage "
                f"{p.stage_index} ({os.path.basename(path)}, val_accuracy "
                f"{run.stage_best[p.stage_index - 1][0]:.4f})")
        if first == start and stage.learning_rate is not None:
            model.optimizer.learning_rate = stage.learning_rate
        augment = ImgaugAugment(stage.augment) if stage.augment else None
        train = train_dataset(data.train, seed=seed, first_epoch=first, num_epochs=end - first,
                              steps_per_epoch=p.steps, batch_size=stage.batch_size,
                              sample_offset=p.sample_offset, resolution=stage.resolution,
                              augment=augment, interpolation=interpolation, mean=mean)
        run.callbacks = []
        if stage.plateau:
            plateau = PlateauWindow(stage.plateau, start)
            saved = run.callback_states.get(plateau.state_key)
            if saved and saved["stage"] == p.stage_index:
                plateau.set_state(saved["state"])
            run.callbacks.append(plateau)
        cyclic = None
        if stage.cyclic:
            c = stage.cyclic
            cyclic = CyclicLR(
                c.base_lr, c.max_lr, protocol.cyclic_step_size(stage, len(data.train)), c.mode,
                c.gamma, phase_start=protocol.iterations_before(start, len(data.train)))
            run.callbacks.append(cyclic)
        check_lr_callbacks(run.callbacks)
        run.callbacks.append(EpochEnd(run.on_epoch, cyclic))
        # A fresh trace per stage: tf.function would otherwise relax a trace that has seen
        # several stage shapes to unknown dimensions, and a run resumed mid-stage (which
        # traces the static shape) would then compute in a different order than the
        # uninterrupted one and drift in the last bits.
        model.make_train_function(force=True)
        model.fit(train, epochs=end, initial_epoch=first, steps_per_epoch=p.steps,
                  validation_data=val, callbacks=run.callbacks, shuffle=False, verbose=0)
        if run.completed != end:
            raise RuntimeError(f"stage {stage.name} stopped after {run.completed} of {end} epochs")
        run.plot()

    if not tio.exists(rd.file(FINAL_MODEL)):
        rd.save_model(model, FINAL_MODEL)
    run.write_state("complete")
    run.plot()
    best = run.best
    log(f"done: {protocol.total_epochs} epochs; best val_accuracy {best[0]:.4f} at epoch "
        f"{best[1]}; run dir {run_dir}")
    return model

