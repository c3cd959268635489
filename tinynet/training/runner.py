"""Runs a ``Protocol`` on one model, resumable from the run directory after any interruption.

After every epoch the runner writes (in this order) the best model if val_accuracy improved,
an atomic checkpoint of all model and optimizer variables with every callback's state and the
history, then ``history.csv`` and ``state.json``. Re-running on the same run directory loads the
newest readable checkpoint and continues with the next epoch; data order and augmentation
depend only on ``(seed, epoch, step)``, so with ``deterministic=True`` (TensorFlow op
determinism) a run killed anywhere -- mid-epoch included -- and resumed ends with weights
bit-identical to an uninterrupted run.

Inside an epoch, a checkpoint is also written every ``checkpoint_every`` (minutes or steps;
``ckpt-<epochs>-s<steps>.npz``) and when SIGTERM arrives (a preemptible VM's or Colab's
shutdown notice): the step in flight finishes, the checkpoint is written, and ``Preempted`` is
raised (command lines exit 143). A run resumed from such a checkpoint continues at the next step
with the very batches it would have had, its running training metrics and the epoch's lr log
restored, so it too ends bit-identical (one replica; under several replicas only epoch
checkpoints are written, and SIGTERM stops at once).
"""
import json
import os
import platform
import subprocess
import time

import keras
import numpy as np
import tensorflow as tf

import tinynet
from tinynet import io as tio
from tinynet.experiment import command_line
from tinynet.data.datasets import LOCATION_ARGS, TrainData  # noqa: F401  (TrainData: the input)
from tinynet.data.pipeline import eval_dataset
from tinynet.errors import Preempted, TinynetError
from tinynet.models import get_model
from tinynet.plots import plot_history, stage_labels
from tinynet.training import checkpoint
from tinynet.training.callbacks import (EpochEnd, InEpochCheckpoint, PreemptionFlag,
                                        ReplicaStatistics, RestoreMetrics, format_duration)
from tinynet.training.determinism import configure_determinism
from tinynet.training.distribute import (distribute_input, is_chief, is_multiworker,
                                         prepare_model, synchronize_batch_norm)
from tinynet.training.optimizers import make_optimizer
from tinynet.training.precision import float32_classifier, inner_optimizer, precision_policy
from tinynet.training.progress import progress_seconds
from tinynet.training.protocol import Protocol
from tinynet.training.rundir import (BEST_MODEL, FINAL_MODEL, PLOT, ReaderRunDirectory,
                                     RunDirectory)
from tinynet.training.session import StageSession, build_optimizer
from tinynet.training.tensorboard_log import TensorBoardLog


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
            "git_commit": git_commit(), "command": command_line(), "host": platform.node(),
            "devices": [d.name for d in tf.config.list_physical_devices()],
            "created": time.strftime("%Y-%m-%d %H:%M:%S %Z")}


# identity keys added after runs were made: a run directory without one was made with this value
IDENTITY_DEFAULTS = {"precision": "float32", "jit_compile": "auto"}


def _check_same_run(stored, identity, run_dir, where="config.json"):
    """Refuses to resume a run whose identity (as recorded in ``where``) differs from this
    command's. The data's fingerprint is compared where the record has one (older runs have
    none) and the difference described."""
    from tinynet.data.datasets import describe_fingerprint_difference

    for key, value in identity.items():
        if key == "data_fingerprint":
            difference = describe_fingerprint_difference(stored.get(key),
                                                         json.loads(json.dumps(value)))
            if difference:
                raise TinynetError(
                    f"{run_dir} was trained on other data: {difference} (recorded in "
                    f"{where}); pass the dataset it was trained on, or --restart / another "
                    f"--run-dir")
            continue
        if json.loads(json.dumps(value)) != stored.get(key, IDENTITY_DEFAULTS.get(key)):
            raise TinynetError(
                f"{run_dir} holds a run with a different {key} ({stored.get(key)!r} in "
                f"{where}, {value!r} now); pass --restart to start over there, or another "
                f"--run-dir")


def _check_checkpoint_identity(meta, identity, protocol, seed, path, run_dir):
    """The run's identity from its checkpoint (config.json may be lost): the record itself in
    checkpoints written since it was added, else the seed and protocol they always held."""
    where = os.path.basename(path)
    if meta.get("identity"):
        _check_same_run(meta["identity"], identity, run_dir, where)
        return
    for key, theirs, ours in (("seed", meta.get("seed"), seed),
                              ("protocol", meta.get("fingerprint"), protocol.fingerprint())):
        if theirs is not None and theirs != ours:
            raise TinynetError(f"{run_dir} holds a run with a different {key} (its checkpoint "
                               f"{where} says so); pass --restart to start over there, or "
                               f"another --run-dir")


class _Run:
    """The state of one protocol run as it progresses; ``on_epoch`` is the per-epoch hook."""

    def __init__(self, protocol, model, data, run_dir, seed, log, interpolation="nearest",
                 mean=None, std=None, augment_backend="imgaug", augment_on="cpu",
                 data_on_device=False, jit_compile="auto", identity=None):
        self.protocol, self.model, self.data, self.seed, self.log = (
            protocol, model, data, seed, log)
        self.identity = identity  # recorded in every checkpoint: config.json may be lost
        self.rd = run_dir
        self.interpolation, self.mean, self.std = interpolation, mean, std
        self.augment_backend = augment_backend
        self.augment_on, self.data_on_device = augment_on, data_on_device
        self.jit_compile = jit_compile
        self._val = {}  # paired labels (mixup) or not -> validation dataset
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
        # resumed inside an epoch: steps of epoch ``completed`` done, its EpochEnd progress and
        # its running metric totals
        self.steps_done, self.progress, self.metric_arrays = 0, None, None
        self.saved_steps = 0  # steps into the next epoch of the newest checkpoint
        self._seconds = 0.0
        self._units = 0
        self.progress_every = None  # seconds between in-epoch progress lines (StageSession)
        self.tensorboard = None  # TensorBoardLog of the run directory

    def val_dataset(self, label_transform=None):
        """The validation set as every stage sees it; built once per label form, not per stage
        (an in-memory split is one constant of the whole set)."""
        key = label_transform is not None
        if key not in self._val:
            self._val[key] = eval_dataset(
                self.data.val, self.protocol.eval_batch_size, self.protocol.val_resolution,
                self.interpolation, self.mean, self.std, label_transform=label_transform)
        return self._val[key]

    @property
    def completed(self):
        return len(self.history)

    def restore(self, meta, arrays=None):
        self.steps_done = meta.get("completed_steps", 0)
        self.progress = meta.get("epoch_progress")
        if self.steps_done:
            names = sorted(k for k in arrays if k.startswith("metric_"))
            self.metric_arrays = [arrays[k] for k in names]
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
                self.rd.save_stage_best(self.model, stage_index)

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
        meta = self.meta(epoch + 1)
        # what a later fit of this stage (after an epoch resumed inside) restores its lr
        # callback from: the state at this epoch's end, not the resumed checkpoint's
        self.callback_states = meta["callbacks"]
        self.rd.save_checkpoint(self.model, self.model.optimizer, meta)
        self.saved_steps = 0
        # The best weights are written after the checkpoint that records them: a kill in
        # between is repaired on resume (write_best_files), so they always belong to an epoch
        # the history keeps.
        self.write_best_files(epoch + 1)
        self.rd.write_history(self.history)
        self.write_state("running")
        if self.tensorboard is not None:
            self.tensorboard.write_epoch(row, lrs)
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

    def meta(self, completed):
        """The checkpoint record after ``completed`` epochs."""
        stage = self.plan[min(completed, len(self.plan)) - 1].stage_index if completed else 0
        states = {cb.state_key: {"stage": stage, "state": cb.get_state()}
                  for cb in self.callbacks if hasattr(cb, "get_state")}
        return {"completed_epochs": completed, "seed": self.seed, "best": self.best,
                "callbacks": states, "history": self.history, "stage_best": self.stage_best,
                "fingerprint": self.protocol.fingerprint(),
                "identity": json.loads(json.dumps(self.identity))}

    def save_in_epoch(self, epoch, steps, progress):
        """An in-epoch checkpoint: ``steps`` batches of global epoch ``epoch`` (0-based) done."""
        meta = dict(self.meta(epoch), completed_steps=steps, epoch_progress=progress)
        self.rd.save_checkpoint(self.model, self.model.optimizer, meta,
                                metric_variables=self.model.metrics_variables)
        self.saved_steps = steps
        self.write_state("running", steps)
        return self.rd.checkpoint_name(epoch, steps)

    def write_state(self, status, steps=0):
        last = self.plan[self.completed - 1] if self.completed else None
        self.rd.write_state({
            "status": status, "completed_epochs": self.completed,
            "total_epochs": self.protocol.total_epochs,
            "stage": None if last is None else last.stage_index + 1,
            "stage_epoch": None if last is None else last.stage_epoch + 1,
            "best_val_accuracy": None if self.best is None else self.best[0],
            "best_epoch": None if self.best is None else self.best[1],
            "steps_into_next_epoch": steps,
            "checkpoint": (self.rd.checkpoint_name(self.completed, steps)
                           if self.completed or steps else None),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S %Z")})

    def plot(self):
        if self.history and self.rd.writable:
            plot_history(self.rd.read_history(), self.rd.file(PLOT),
                         title=f"{self.model.name}: {self.protocol.name}",
                         stages=stage_labels(self.protocol))


def _absolute(path):
    return os.path.abspath(str(path)) if tio.is_local(path) else str(path)


def _initialise_from(parent_dir, model, optimizer, identity, spec, log):
    """Loads the final checkpoint of the finished run ``parent_dir`` (same model, data and
    optimizer) into a fresh run: all model variables and the optimizer's state, with its
    iteration count restarted so that the new protocol's lr policies start at their
    beginning. Returns the provenance record."""
    parent = RunDirectory(parent_dir)
    if not parent.has_config():
        raise TinynetError(f"{parent_dir} holds no run to continue from (config.json missing)")
    stored = parent.read_config()
    for key in ("model", "model_kwargs", "dataset_spec"):
        if json.loads(json.dumps(identity[key])) != stored.get(key):
            raise TinynetError(f"cannot continue from {parent_dir}: its {key} is "
                               f"{stored.get(key)!r}, this run's is {identity[key]!r}")
    state = parent.read_state() if tio.exists(parent.file("state.json")) else {}
    if state.get("status") != "complete":
        raise TinynetError(f"cannot continue from {parent_dir}: that run is not finished "
                           f"({state.get('completed_epochs', 0)} of "
                           f"{state.get('total_epochs', '?')} epochs); finish it first")
    parent_protocol = Protocol.from_dict(stored["protocol"])
    last_spec = parent_protocol.optimizer_spec(len(parent_protocol.stages) - 1)
    if make_optimizer(last_spec).__class__ is not inner_optimizer(optimizer).__class__:
        raise TinynetError(f"cannot continue from {parent_dir}: it trained with {last_spec}, "
                           f"this run starts with {spec}; continue with the same optimizer")
    path = checkpoint.checkpoint_path(parent.path, state["completed_epochs"])
    try:
        meta, arrays = checkpoint.read_checkpoint(path)
    except ValueError as e:
        raise TinynetError(f"cannot continue from {parent_dir}: its final checkpoint {e}") from None
    checkpoint.restore_variables(model, optimizer, meta, arrays, path)
    optimizer.iterations.assign(0)
    log(f"initialised from {path} ({meta['completed_epochs']} epochs of {parent_dir})")
    return {"run_dir": _absolute(parent_dir), "checkpoint": os.path.basename(path),
            "completed_epochs": meta["completed_epochs"],
            "protocol": stored.get("protocol", {}).get("name")}


def _check_free_space(rd, model, run_dir):
    """Refuses to start where the disk cannot hold the next epoch's files: a new checkpoint
    (written beside the two kept) and the best and final models. A disk that fills later is
    reported by the write that meets it (``tinynet.io.DiskFull``), the previous files intact."""
    from tinynet.training.rundir import model_bytes, variable_bytes

    free = tio.free_bytes(rd.path)
    if free is None:
        return
    weights = model_bytes(model)
    ckpt = weights + variable_bytes(model.optimizer.variables)
    need = ckpt + 2 * weights
    if free < need:
        raise TinynetError(f"not enough space for {run_dir}: {tio.format_bytes(free)} free, a "
                           f"checkpoint of this run takes about {tio.format_bytes(ckpt)} and "
                           f"each saved model {tio.format_bytes(weights)} (about "
                           f"{tio.format_bytes(need)} in all); free some space and re-run")


def _refuse_starting_over(rd, run_dir):
    """No checkpoint could be read: starting from epoch 1 would overwrite the history and best
    model of the epochs done. Refused, saying what was found, unless there is nothing to lose
    (a run stopped before its first checkpoint)."""
    found = []
    unreadable = checkpoint.list_checkpoints(rd.path)
    if unreadable:
        found.append(f"{len(unreadable)} unreadable checkpoint(s) "
                     f"({', '.join(os.path.basename(p) for p in unreadable)})")
    if tio.exists(rd.file("history.csv")):
        try:
            found.append(f"history.csv with {len(rd.read_history())} epochs")
        except Exception:
            found.append("history.csv")
    for name in (BEST_MODEL, FINAL_MODEL):
        if tio.exists(rd.file(name)):
            found.append(name)
    if found:
        raise TinynetError(f"{run_dir} holds a run that cannot be resumed: no checkpoint can be "
                           f"read, and it has {', '.join(found)}; pass --restart to start over "
                           f"(this discards them), or restore its checkpoints/ folder")


def describe_strategy(strategy):
    """What config.json records of where a run trained (not part of its identity: a run may
    resume under another strategy; the protocol's batch size is global either way)."""
    try:
        devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy: wherever TensorFlow places ops
        devices = []
    return {"strategy": type(strategy).__name__, "replicas": strategy.num_replicas_in_sync,
            "devices": devices}


def run_protocol(protocol, *, model_name, data, run_dir, model_kwargs=None, seed=0,
                 deterministic=False, restart=False, interpolation="nearest",
                 augment_backend="imgaug", strategy=None, sync_batch_norm=False,
                 model_parallel=None, init_from=None, checkpoint_every=None, paper=None,
                 precision="float32", jit_compile="auto", augment_on="cpu",
                 data_on_device=False, progress_every=None, log=print):
    """Trains ``model_name`` through ``protocol`` in ``run_dir``, resuming if it holds the run.

    ``data`` is a ``tinynet.data.datasets.TrainData``. ``strategy``: a ``tf.distribute``
    strategy (``tinynet.training.distribute.make_strategy``) whose scope builds the model,
    optimizers and metrics and runs ``fit``; each stage's batch size is the global batch, split
    across its replicas. ``sync_batch_norm``: BatchNormalization statistics over the global
    batch. Under multi-worker only the chief writes ``run_dir``; every worker resumes from it.
    ``model_parallel``: devices a model with parallel branches splits them over (its
    ``devices`` argument); like the strategy, not part of the run's identity, so a run may
    resume on other devices.
    ``init_from``: a finished run directory whose final checkpoint (same model) starts this
    run, recorded as its parent in config.json. ``checkpoint_every``: ``("seconds", n)`` or
    ``("steps", n)`` (``tinynet.experiment.parse_interval``) between in-epoch
    checkpoints, or None (epoch checkpoints, and one on SIGTERM). ``paper``: the figures the
    paper reports for this experiment, recorded in config.json for ``tools/report.py``.
    ``precision``: a Keras dtype policy of ``tinynet.training.precision`` (float32,
    mixed_bfloat16, mixed_float16); ``jit_compile``: Keras' ``compile(jit_compile=)`` ("auto":
    XLA where Keras chooses it, i.e. on a GPU); both belong to the run's identity.
    ``augment_on="device"`` / ``data_on_device``: the per-batch input work inside the training
    step (``tinynet.data.device_input``), recorded but not part of the identity (the batches
    are the same function of ``(seed, epoch, step)``).
    ``progress_every``: seconds between in-epoch progress lines without a terminal (None:
    $TINYNET_PROGRESS_SECONDS, else 30; 0: none; a terminal shows a bar).
    ``<run_dir>/tensorboard/`` holds TensorBoard logs (per-epoch metrics, lr per iteration,
    stage boundaries); a resumed run appends to the same timeline.
    Returns the finished model; raises ``Preempted`` after SIGTERM's checkpoint. Raises
    ``TinynetError`` if ``run_dir`` holds a different run (unless ``restart``, which clears
    it first).
    """
    with precision_policy(precision):
        return _run_protocol(
            protocol, model_name=model_name, data=data, run_dir=run_dir,
            model_kwargs=model_kwargs, seed=seed, deterministic=deterministic, restart=restart,
            interpolation=interpolation, augment_backend=augment_backend, strategy=strategy,
            sync_batch_norm=sync_batch_norm, model_parallel=model_parallel, init_from=init_from,
            checkpoint_every=checkpoint_every, paper=paper, precision=precision,
            jit_compile=jit_compile, augment_on=augment_on, data_on_device=data_on_device,
            progress_every=progress_every, log=log)


def _run_protocol(protocol, *, model_name, data, run_dir, model_kwargs, seed, deterministic,
                  restart, interpolation, augment_backend, strategy, sync_batch_norm,
                  model_parallel, init_from, checkpoint_every, paper, precision, jit_compile,
                  augment_on, data_on_device, progress_every, log):
    from tinynet.data.device_input import check_device_input

    model_kwargs = dict(model_kwargs or {})
    progress_every = progress_seconds(progress_every)  # a bad $TINYNET_PROGRESS_SECONDS: now
    configure_determinism(seed, deterministic, log)
    strategy = strategy or tf.distribute.get_strategy()
    check_device_input(augment_on, data_on_device, augment_backend,
                       strategy.num_replicas_in_sync)
    chief = is_chief(strategy)
    rd = RunDirectory(run_dir) if chief else ReaderRunDirectory(run_dir)
    # what must match for a run directory to be resumed: the dataset by its registry name and
    # the arguments that choose the data (not where it is read from), e.g. CIFAR's split
    identity = {"model": model_name, "model_kwargs": model_kwargs, "protocol": protocol.to_dict(),
                "seed": seed, "interpolation": interpolation,
                "data": {"num_train": len(data.train), "num_val": len(data.val),
                         "num_classes": data.num_classes},
                "dataset_spec": {"name": data.spec.get("name"), "args": {
                    k: v for k, v in data.spec.get("args", {}).items()
                    if k not in LOCATION_ARGS}},
                "augment_backend": augment_backend,
                "init_from": _absolute(init_from) if init_from else None,
                "precision": precision, "jit_compile": jit_compile,
                "data_fingerprint": data.fingerprint()}
    for i, stage in enumerate(protocol.stages):  # a bad optimizer fails now, not hours in
        if i == 0 or stage.optimizer:
            make_optimizer(protocol.optimizer_spec(i))
    if chief and not rd.check_writable():
        if not restart and rd.finished():
            # a finished run stays readable where it can no longer be written (an archive, a
            # read-only mount): it is reported and its model returned, nothing written
            log(f"note: {run_dir} is read-only; it holds the finished run, which is reported "
                f"as it is (nothing is written)")
            rd = ReaderRunDirectory(run_dir)
        else:
            raise TinynetError(f"cannot write the run directory {run_dir} (read-only or no "
                               f"permission); make it writable or choose another --run-dir")
    if restart and rd.has_run():
        log(f"--restart: removing the previous run in {run_dir}")
        rd.clear()
    mean, std = data.normalization(protocol.normalize)
    # a worker does not wait for the chief to clear the folder: --restart means a fresh start
    resuming = rd.has_run() and not (restart and not chief)
    stored = rd.read_config() if resuming and rd.has_config() else {}
    if stored:
        _check_same_run(stored, identity, run_dir)

    replicas = strategy.num_replicas_in_sync
    for stage in protocol.stages:
        if stage.batch_size % replicas:
            raise TinynetError(
                f"stage {stage.name!r}: batch {stage.batch_size} does not split evenly over "
                f"{replicas} replicas (Keras would average unequal shares' means, not the "
                f"batch's); use a number of devices that divides it")
    with strategy.scope():
        model = get_model(model_name, num_classes=data.num_classes, **model_kwargs,
                          **({"devices": list(model_parallel)} if model_parallel else {}))
        model = float32_classifier(model)
    if sync_batch_norm:
        count = synchronize_batch_norm(model)
        log(f"--sync-bn: {count} BatchNormalization layers use the global batch's statistics"
            if replicas > 1 else "--sync-bn: one replica, so nothing to synchronise")
    prepare_model(model, strategy)
    placement = dict(describe_strategy(strategy),
                     model_parallel=list(model_parallel) if model_parallel else None,
                     keras_backend=keras.backend.backend(), augment_on=augment_on,
                     data_on_device=bool(data_on_device))
    before = dict({"keras_backend": "tensorflow", "augment_on": "cpu", "data_on_device": False},
                  **stored.get("distribution", placement))
    if before != placement:
        log(f"note: {run_dir} trained so far with {stored['distribution']}; it continues "
            f"with {placement}")
    run = _Run(protocol, model, data, rd, seed, log, interpolation, mean, std, augment_backend,
               augment_on, data_on_device, jit_compile, identity)
    run.progress_every = progress_every
    run.tensorboard = TensorBoardLog(rd.path, protocol, writable=rd.writable)
    owner = None  # the stage whose optimizer the model holds

    def use_optimizer_of(stage_index):
        nonlocal owner
        if protocol.optimizer_stage(stage_index) != owner:
            owner = protocol.optimizer_stage(stage_index)
            with strategy.scope():
                optimizer = build_optimizer(protocol.optimizer_spec(stage_index), model)
            model.optimizer = optimizer
        return model.optimizer

    found = None if restart and not chief else rd.latest_checkpoint(log)
    parent = None  # (a run resumed without its config.json no longer knows its parent)
    # decided before training, so that every multi-worker member saves (or not) alike
    save_final = not (found and tio.exists(rd.file(FINAL_MODEL)))
    if found:
        path, meta, arrays = found
        _check_checkpoint_identity(meta, identity, protocol, seed, path, run_dir)
        done = meta["completed_epochs"]
        # the optimizer of the epoch the checkpoint is inside of, or of the last one it finished
        in_epoch = meta.get("completed_steps", 0) and done < protocol.total_epochs
        stage_index = run.plan[done if in_epoch else min(done, protocol.total_epochs) - 1
                               ].stage_index
        checkpoint.restore_variables(model, use_optimizer_of(stage_index), meta, arrays, path)
        run.restore(meta, arrays)
        run.saved_steps = run.steps_done
        # history.csv may be ahead of (a fallback) or behind (a kill between the two writes)
        # the checkpoint; the checkpoint's rows are the truth.
        rd.write_history(run.history)
        rd.write_lr(run.lrs)
        if not run.steps_done:  # (inside an epoch the model is past the epoch that set them)
            run.write_best_files(run.completed)
        rd.remove_temporary_files()
        log(f"resuming {run_dir} from {os.path.basename(path)}: "
            f"{run.completed}/{protocol.total_epochs} epochs done"
            + (f", {run.steps_done}/{run.plan[run.completed].steps} steps of the next"
               if run.steps_done else ""))
    else:
        if resuming and chief:
            _refuse_starting_over(rd, run_dir)
        optimizer = use_optimizer_of(0)
        parent = (_initialise_from(init_from, model, optimizer, identity,
                                   protocol.optimizer_spec(0), log) if init_from else None)
    if rd.writable and not rd.has_config():
        if resuming:
            log(f"note: {run_dir} had lost its config.json; it is written again from this "
                f"command (its checkpoint recorded the same run)")
        # input_mean/std: what evaluation must apply to x / 255 before the model
        rd.write_config(dict(
            identity, deterministic=deterministic, dataset=dict(data.description, **data.spec),
            input_mean=None if mean is None else [float(m) for m in mean],
            input_std=None if std is None else [float(v) for v in std],
            parent=parent, distribution=placement, paper=paper, **provenance()))

    if rd.writable and run.completed < protocol.total_epochs:
        _check_free_space(rd, model, run_dir)
    in_epoch = replicas == 1 and chief  # in-epoch checkpoints need one replica's state
    if checkpoint_every and not in_epoch:
        log("note: --checkpoint-every writes epoch checkpoints only under several replicas "
            "(their running statistics are per replica)")
    # Under multi-worker each worker would stop at its own next step and leave the others
    # waiting in an all-reduce: SIGTERM keeps its default there (TensorFlow's
    # PreemptionCheckpointHandler is the way to agree on a step across workers).
    with PreemptionFlag(signals=() if is_multiworker(strategy) else None) as preemption:
        try:
            _train(run, protocol, model, strategy, rd, use_optimizer_of, preemption,
                   checkpoint_every if in_epoch else None, in_epoch, log)
        except Preempted:
            run.write_state("preempted", run.saved_steps)
            raise
        finally:
            run.tensorboard.close()

    if save_final:
        rd.save_model(model, FINAL_MODEL)
    run.write_state("complete")
    run.plot()
    best = run.best
    log(f"done: {protocol.total_epochs} epochs; best val_accuracy {best[0]:.4f} at epoch "
        f"{best[1]}; run dir {run_dir}")
    return model


def _train(run, protocol, model, strategy, rd, use_optimizer_of, preemption, every, in_epoch,
           log):
    """The epochs left, stage by stage (an epoch resumed inside first, on its own)."""
    while run.completed < protocol.total_epochs:
        if preemption.received:  # arrived between fits: the last checkpoint is the newest
            log(f"SIGTERM: stopped before epoch {run.completed + 1}; the last checkpoint "
                f"{rd.checkpoint_name(run.completed, run.saved_steps)} holds everything done; "
                f"re-run the same command to resume there")
            raise Preempted("between epochs")
        first, steps_done = run.completed, run.steps_done
        p = run.plan[first]
        session = StageSession(run, p.stage_index)
        # an epoch resumed inside runs alone, then the stage goes on from the next epoch
        end = first + 1 if steps_done else session.start + session.stage.epochs
        if first == session.start and not steps_done and session.stage.restart_from_best:
            path = rd.load_stage_best(model, p.stage_index - 1)
            log(f"stage {p.stage_index + 1} starts from the best weights of stage "
                f"{p.stage_index} ({os.path.basename(path)}, val_accuracy "
                f"{run.stage_best[p.stage_index - 1][0]:.4f})")
        with strategy.scope():
            session.compile(model, use_optimizer_of(p.stage_index))
        train, val = session.datasets(first, end, first_step=steps_done)
        with strategy.scope():
            spec = session.prepare_model(model, train)
        callbacks = session.callbacks(first, run.on_epoch, steps_done, run.progress)
        epoch_end = next(cb for cb in callbacks if isinstance(cb, EpochEnd))
        def save(epoch, steps):
            return run.save_in_epoch(epoch, steps, epoch_end.progress())

        guard = InEpochCheckpoint(save if in_epoch else None, p.steps, every, preemption,
                                  steps_done, log, rd.checkpoint_name)
        restore = []
        if steps_done:
            # the compiled metrics' totals exist once the model is built symbolically
            with strategy.scope():
                model._symbolic_build(data_batch=spec)
            restore = [RestoreMetrics(run.metric_arrays)]
        # the replicas' BN statistics agree before validation and the checkpoint
        run.callbacks = ([ReplicaStatistics(strategy)] if strategy.num_replicas_in_sync > 1
                         else []) + restore + callbacks + [guard]
        with strategy.scope():
            model.fit(distribute_input(train, strategy), epochs=end, initial_epoch=first,
                      steps_per_epoch=p.steps - steps_done,
                      validation_data=distribute_input(val, strategy),
                      callbacks=run.callbacks, shuffle=False, verbose=0)
        run.steps_done, run.progress, run.metric_arrays = 0, None, None
        if run.completed != end:
            raise RuntimeError(f"stage {session.stage.name} stopped after {run.completed} of "
                               f"{end} epochs")
        run.plot()
