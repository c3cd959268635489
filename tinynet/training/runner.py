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
import contextlib
import dataclasses
import os
import platform
import subprocess
import time

import keras
import numpy as np
import tensorflow as tf

import tinynet
from tinynet import io as tio
from tinynet.data.pipeline import eval_dataset
from tinynet.errors import Preempted, TinynetError
from tinynet.experiment import command_line
from tinynet.models import get_model
from tinynet.plots import plot_history, stage_labels
from tinynet.training import checkpoint
from tinynet.training import lock as run_lock
from tinynet.training.callbacks import (InEpochCheckpoint, PreemptionFlag,
                                        ReplicaStatistics, RestoreMetrics, format_duration,
                                        ordered_callbacks)
from tinynet.training.determinism import configure_determinism
from tinynet.training.distribute import (distribute_input, is_chief, is_multiworker,
                                         prepare_model, synchronize_batch_norm)
from tinynet.training.conventions import keep_recorded_rules
from tinynet.training.identity import (absolute, check_checkpoint_identity, check_same_run,
                                       run_identity, same_value)
from tinynet.training.optimizers import make_optimizer
from tinynet.training.precision import float32_classifier, inner_optimizer, precision_policy
from tinynet.training.progress import progress_seconds
from tinynet.training.protocol import Protocol
from tinynet.training.rundir import (BEST_MODEL, FINAL_MODEL, PLOT, ReaderRunDirectory,
                                     RunDirectory)
from tinynet.training.session import StageSession, build_optimizer
from tinynet.training.state import TrainingState
from tinynet.training.tensorboard_log import TensorBoardLog


@dataclasses.dataclass(frozen=True)
class RunSettings:
    """How a protocol is run: everything but the protocol, the model and the data.

    ``run_dir``: the run directory (a path, a Drive mount, ``gs://...``). ``seed``: weights,
    data order and augmentation. ``deterministic``: TensorFlow op determinism (bit-identical
    resume). ``restart``: clear the run in ``run_dir`` first. ``interpolation``: resizing to a
    stage's resolution. ``augment_backend``: the library that runs the recipes.
    ``sync_batch_norm``: BatchNormalization statistics over the global batch.
    ``model_parallel``: devices a model with parallel branches splits them over (its
    ``devices`` argument); like the strategy, not part of the run's identity, so a run may
    resume on other devices. ``init_from``: a finished run directory whose final checkpoint
    (same model) starts this run, recorded as its parent in config.json.
    ``checkpoint_every``: ``("seconds", n)`` or ``("steps", n)``
    (``tinynet.experiment.parse_interval``) between in-epoch checkpoints, or None (epoch
    checkpoints, and one on SIGTERM). ``paper``: the figures the paper reports for this
    experiment (``tinynet.evaluation.reports.paper_record``), recorded for ``tools/report.py``.
    ``precision``: a Keras dtype policy of ``tinynet.training.precision``; ``jit_compile``:
    Keras' ``compile(jit_compile=)`` ("auto": XLA where Keras chooses it, i.e. on a GPU); both
    belong to the run's identity. ``augment_on="device"`` / ``data_on_device``: the per-batch
    input work inside the training step (``tinynet.data.device_input``), recorded but not
    part of the identity (the batches are the same function of ``(seed, epoch, step)``).
    ``progress_every``: seconds between in-epoch progress lines without a terminal (None:
    $TINYNET_PROGRESS_SECONDS, else 30; 0: none; a terminal shows a bar)."""

    run_dir: str
    seed: int = 0
    deterministic: bool = False
    restart: bool = False
    interpolation: str = "nearest"
    augment_backend: str = "imgaug"
    sync_batch_norm: bool = False
    model_parallel: tuple | None = None
    init_from: str | None = None
    checkpoint_every: tuple | None = None
    paper: dict | None = None
    precision: str = "float32"
    jit_compile: object = "auto"
    augment_on: str = "cpu"
    data_on_device: bool = False
    progress_every: float | None = None

    def __post_init__(self):
        # whoever makes the settings (a command line before it loads data, or run_protocol)
        # learns at once of a combination that cannot run; the replica count is prepare's
        from tinynet.data.device_input import check_device_input

        check_device_input(self.augment_on, self.data_on_device, self.augment_backend)


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


class RunContext:
    """One protocol run as it progresses: what it was given (protocol, model, data, run
    directory, settings), what follows from them (the epoch plan, normalisation, identity),
    and its ``TrainingState``; ``on_epoch`` is the per-epoch hook."""

    def __init__(self, protocol, model, data, rd, settings, strategy, identity, mean, std,
                 log, *, placement, resuming, chief):
        self.protocol, self.model, self.data, self.rd = protocol, model, data, rd
        self.settings, self.strategy, self.identity, self.log = settings, strategy, identity, log
        self.mean, self.std = mean, std
        self.placement = placement  # where it trains (config.json's "distribution")
        self.resuming = resuming  # the run directory held a run when this command started
        self.chief = chief  # the member that writes the run directory
        self.state = TrainingState()
        self._val = {}  # paired labels (mixup) or not -> validation dataset
        self.plan = protocol.epoch_plan(len(data.train))
        self.costs = protocol.cost_units(len(data.train))
        # stages whose best weights a later stage restarts from
        self.keep_stage_best = {i - 1 for i, s in enumerate(protocol.stages) if s.restart_from_best}
        self.callbacks = []  # the callbacks of the fit in progress
        self.progress_every = progress_seconds(settings.progress_every)
        self.tensorboard = None  # TensorBoardLog of the run directory
        self.optimizer_owner = None  # the stage whose optimizer the model holds
        self.save_final = True
        self.parent = None  # the run --continue-epochs started from (provenance)

    # the settings StageSession reads
    seed = property(lambda self: self.settings.seed)
    interpolation = property(lambda self: self.settings.interpolation)
    augment_backend = property(lambda self: self.settings.augment_backend)
    augment_on = property(lambda self: self.settings.augment_on)
    data_on_device = property(lambda self: self.settings.data_on_device)
    jit_compile = property(lambda self: self.settings.jit_compile)

    @property
    def completed(self):
        return self.state.completed

    def val_dataset(self, label_transform=None):
        """The validation set as every stage sees it; built once per label form, not per stage
        (an in-memory split is one constant of the whole set)."""
        key = label_transform is not None
        if key not in self._val:
            self._val[key] = eval_dataset(
                self.data.val, self.protocol.eval_batch_size, self.protocol.val_resolution,
                self.interpolation, self.mean, self.std, label_transform=label_transform)
        return self._val[key]

    def use_optimizer_of(self, stage_index):
        """The optimizer stage ``stage_index`` trains with, built (over every variable any
        stage trains) when that stage is the first to name it."""
        owner = self.protocol.optimizer_stage(stage_index)
        if owner != self.optimizer_owner:
            self.optimizer_owner = owner
            with self.strategy.scope():
                optimizer = build_optimizer(self.protocol.optimizer_spec(stage_index),
                                            self.model)
            self.model.optimizer = optimizer
        return self.model.optimizer

    def write_best_files(self, completed):
        """Saves the best model and stage-best weights that epoch ``completed`` set (the model
        holds that epoch's weights)."""
        best = self.state.best
        if best is not None and best[1] == completed:
            self.rd.save_model(self.model, BEST_MODEL)
        for stage_index, (_, epoch) in self.state.stage_best.items():
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
        state = self.state
        state.record_epoch(row, p.stage_index, p.stage_index in self.keep_stage_best, lrs)
        # lr.csv may run ahead of the checkpoint (a resume drops the extra rows), never behind
        self.rd.write_lr(state.lrs)
        meta = self.meta(epoch + 1)
        # what a later fit of this stage (after an epoch resumed inside) restores its lr
        # callback from: the state at this epoch's end, not the resumed checkpoint's
        state.callback_states = meta["callbacks"]
        self.rd.save_checkpoint(self.model, self.model.optimizer, meta)
        state.saved_steps = 0
        # The best weights are written after the checkpoint that records them: a kill in
        # between is repaired on resume (write_best_files), so they always belong to an epoch
        # the history keeps.
        self.write_best_files(epoch + 1)
        self.rd.write_history(state.history)
        self.write_state("running")
        if self.tensorboard is not None:
            self.tensorboard.write_epoch(row, lrs)
        state.seconds += seconds
        state.units += self.costs[epoch]
        eta = state.seconds / state.units * sum(self.costs[epoch + 1:])
        n = len(self.protocol.stages)
        self.log(f"stage {p.stage_index + 1}/{n} {stage.resolution}px "
                 f"epoch {p.stage_epoch + 1}/{stage.epochs} "
                 f"global {epoch + 1}/{self.protocol.total_epochs} lr {lr:.3g} "
                 f"loss {row['loss']:.4f} acc {row['accuracy']:.4f} top5 {row['top5']:.4f} "
                 f"val_loss {row['val_loss']:.4f} val_acc {row['val_accuracy']:.4f} "
                 f"val_top5 {row['val_top5']:.4f} {seconds:.1f}s ETA {format_duration(eta)}")

    def meta(self, completed, steps=0, epoch_progress=None):
        """The checkpoint record after ``completed`` epochs (and ``steps`` of the next)."""
        stage = self.plan[min(completed, len(self.plan)) - 1].stage_index if completed else 0
        return self.state.dump(completed, TrainingState.callback_records(self.callbacks, stage),
                               self.settings.seed, self.protocol.fingerprint(), self.identity,
                               steps, epoch_progress)

    def save_in_epoch(self, epoch, steps, progress, metric_arrays=None):
        """An in-epoch checkpoint: ``steps`` batches of global epoch ``epoch`` (0-based) done
        (all of them: its validation is what is left); ``metric_arrays``: the running metric
        totals to record, if not the model's current ones."""
        self.rd.save_checkpoint(self.model, self.model.optimizer,
                                self.meta(epoch, steps, progress),
                                metric_variables=(self.model.metrics_variables
                                                  if metric_arrays is None else metric_arrays))
        self.state.saved_steps = steps
        self.write_state("running", steps)
        return self.rd.checkpoint_name(epoch, steps)

    def write_state(self, status, steps=0):
        completed, best = self.completed, self.state.best
        last = self.plan[completed - 1] if completed else None
        self.rd.write_state({
            "status": status, "completed_epochs": completed,
            "total_epochs": self.protocol.total_epochs,
            "stage": None if last is None else last.stage_index + 1,
            "stage_epoch": None if last is None else last.stage_epoch + 1,
            "best_val_accuracy": None if best is None else best[0],
            "best_epoch": None if best is None else best[1],
            "steps_into_next_epoch": steps,
            "checkpoint": (self.rd.checkpoint_name(completed, steps)
                           if completed or steps else None),
            "updated": time.strftime("%Y-%m-%d %H:%M:%S %Z")})

    def plot(self):
        if self.state.history and self.rd.writable:
            plot_history(self.rd.read_history(), self.rd.file(PLOT),
                         title=f"{self.model.name}: {self.protocol.name}",
                         stages=stage_labels(self.protocol))


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
        if not same_value(key, stored.get(key), identity[key]):
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
        raise TinynetError(f"cannot continue from {parent_dir}: its final checkpoint {e}; "
                           f"restore that file, or continue another finished run") from None
    checkpoint.restore_variables(model, optimizer, meta, arrays, path)
    optimizer.iterations.assign(0)
    log(f"initialised from {path} ({meta['completed_epochs']} epochs of {parent_dir})")
    return {"run_dir": absolute(parent_dir), "checkpoint": os.path.basename(path),
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


def run_protocol(protocol, *, model_name, data, run_dir=None, model_kwargs=None, strategy=None,
                 log=print, settings=None, **options):
    """Trains ``model_name`` through ``protocol`` in ``run_dir``, resuming if it holds the run.

    ``data`` is a ``tinynet.data.datasets.TrainData``; ``settings`` a ``RunSettings``, or the
    keyword ``options`` make one with ``run_dir`` (seed, deterministic, restart, ...).
    ``strategy``: a ``tf.distribute`` strategy (``tinynet.training.distribute.make_strategy``)
    whose scope builds the model, optimizers and metrics and runs ``fit``; each stage's batch
    size is the global batch, split across its replicas. Under multi-worker only the chief writes ``run_dir``; every worker
    resumes from it. ``<run_dir>/tensorboard/`` holds TensorBoard logs (per-epoch metrics, lr
    per iteration, stage boundaries); a resumed run appends to the same timeline.

    The run goes in four steps, each a function of the one before: ``prepare`` (checks, run
    directory, identity, model), ``resume_or_start`` (the newest checkpoint, a parent run, or
    nothing; config.json), ``train`` (the epochs left, stage by stage) and ``finish`` (final
    model, state, plot). Returns the finished model; raises ``Preempted`` after SIGTERM's
    checkpoint. Raises ``TinynetError`` if ``run_dir`` holds a different run (unless
    ``restart``, which clears it first), and ``RunDirectoryInUse`` while another process
    trains there (``tinynet.training.lock``: the lock is held from before anything is
    written until the run ends).
    """
    if settings is None:
        settings = RunSettings(run_dir=str(run_dir), **options)
    elif run_dir is not None or options:
        raise TypeError("run_protocol takes settings or run_dir and options, not both")
    with precision_policy(settings.precision), contextlib.ExitStack() as held:
        if (is_chief(strategy or tf.distribute.get_strategy())
                and RunDirectory(settings.run_dir).check_writable()):
            held.enter_context(run_lock.holding(settings.run_dir, log))
        run = prepare(protocol, model_name, model_kwargs, data, settings, strategy, log)
        resume_or_start(run)
        train(run)
        return finish(run)


def prepare(protocol, model_name, model_kwargs, data, settings, strategy, log):
    """Everything checked that can be checked before training, the run directory opened (and
    cleared under ``restart``), the identity compared with a recorded one, the model built
    and placed: a ``RunContext`` with an empty ``TrainingState``."""
    from tinynet.data.device_input import check_one_replica

    model_kwargs = dict(model_kwargs or {})
    progress_seconds(settings.progress_every)  # a bad $TINYNET_PROGRESS_SECONDS: now
    configure_determinism(settings.seed, settings.deterministic, log)
    strategy = strategy or tf.distribute.get_strategy()
    check_one_replica(settings.augment_on, settings.data_on_device,
                      strategy.num_replicas_in_sync)
    chief, run_dir, restart = is_chief(strategy), settings.run_dir, settings.restart
    rd = RunDirectory(run_dir) if chief else ReaderRunDirectory(run_dir)
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
    if restart and rd.has_run() and chief:
        if rd.finished():  # a result: kept, never deleted by a flag
            kept = rd.move_aside()
            log(f"--restart: the finished run in {run_dir} is kept in {kept}; starting over")
        else:
            log(f"--restart: removing the unfinished run in {run_dir}")
            rd.clear()
    mean, std = data.normalization(protocol.normalize)
    # a worker does not wait for the chief to clear the folder: --restart means a fresh start
    resuming = rd.has_run() and not (restart and not chief)
    stored = rd.read_config() if resuming and rd.has_config() else {}
    protocol, model_kwargs = _keep_recorded_rules(stored, protocol, model_kwargs, settings, log)
    identity = run_identity(protocol, model_name, model_kwargs, data, settings)
    if stored:
        check_same_run(stored, identity, run_dir)

    replicas = strategy.num_replicas_in_sync
    for stage in protocol.stages:
        if stage.batch_size % replicas:
            raise TinynetError(
                f"stage {stage.name!r}: batch {stage.batch_size} does not split evenly over "
                f"{replicas} replicas (Keras would average unequal shares' means, not the "
                f"batch's); use a number of devices that divides it")
    split = settings.model_parallel
    with strategy.scope():
        model = get_model(model_name, num_classes=data.num_classes, **model_kwargs,
                          **({"devices": list(split)} if split else {}))
        model = float32_classifier(model)
    if settings.sync_batch_norm:
        count = synchronize_batch_norm(model)
        log(f"--sync-bn: {count} BatchNormalization layers use the global batch's statistics"
            if replicas > 1 else "--sync-bn: one replica, so nothing to synchronise")
    prepare_model(model, strategy)
    placement = dict(describe_strategy(strategy), model_parallel=list(split) if split else None,
                     keras_backend=keras.backend.backend(), augment_on=settings.augment_on,
                     data_on_device=bool(settings.data_on_device))
    before = dict({"keras_backend": "tensorflow", "augment_on": "cpu", "data_on_device": False},
                  **stored.get("distribution", placement))
    if before != placement:
        log(f"note: {run_dir} trained so far with {stored['distribution']}; it continues "
            f"with {placement}")
    run = RunContext(protocol, model, data, rd, settings, strategy, identity, mean, std, log,
                     placement=placement, resuming=resuming, chief=chief)
    run.tensorboard = TensorBoardLog(rd.path, protocol, writable=rd.writable)
    return run


def _keep_recorded_rules(stored, protocol, model_kwargs, settings, log):
    """The protocol and model arguments of a run directory (or ``--continue-epochs`` parent)
    made before the originals' training rules: as it was trained
    (``tinynet.training.conventions``)."""
    recorded, what = stored, "resumes"
    if not stored and settings.init_from:
        parent = RunDirectory(settings.init_from)
        recorded = parent.read_config() if parent.has_config() else {}
        what = "continues from it"
    protocol, model_kwargs, kept = keep_recorded_rules(recorded, protocol, model_kwargs)
    if kept:
        where = settings.init_from if recorded is not stored else settings.run_dir
        log(f"note: {where} was made before tinynet followed the original code in "
            f"{' and '.join(kept)}; this run {what} as it was trained, so that it stays one "
            f"computation; a new --run-dir trains as the original")
    return protocol, model_kwargs


def resume_or_start(run):
    """Restores the newest readable checkpoint into the model, its optimizer and the
    ``TrainingState`` (repairing the files a kill left behind it), or starts: from a parent
    run's final checkpoint under ``init_from``, else from the built model; a run directory
    whose every checkpoint is unreadable is refused. Either way the ``.tmp-*`` files of writes
    a kill interrupted are removed. Then writes config.json if missing and checks the disk can
    hold the next epoch's files."""
    rd, protocol, log, settings = run.rd, run.protocol, run.log, run.settings
    run_dir = settings.run_dir
    found = None if settings.restart and not run.chief else rd.latest_checkpoint(log)
    # decided before training, so that every multi-worker member saves (or not) alike
    run.save_final = not (found and tio.exists(rd.file(FINAL_MODEL)))
    if found:
        path, meta, arrays = found
        check_checkpoint_identity(meta, run.identity, protocol, settings.seed, path, run_dir)
        done = meta["completed_epochs"]
        # the optimizer of the epoch the checkpoint is inside of, or of the last one it finished
        in_epoch = meta.get("completed_steps", 0) and done < protocol.total_epochs
        stage_index = run.plan[done if in_epoch else min(done, protocol.total_epochs) - 1
                               ].stage_index
        checkpoint.restore_variables(run.model, run.use_optimizer_of(stage_index), meta, arrays,
                                     path)
        run.state = TrainingState.restore(meta, arrays, rd.read_lr())
        # history.csv may be ahead of (a fallback) or behind (a kill between the two writes)
        # the checkpoint; the checkpoint's rows are the truth.
        rd.write_history(run.state.history)
        rd.write_lr(run.state.lrs)
        if not run.state.steps_done:  # (inside an epoch the model is past the epoch that set them)
            run.write_best_files(run.completed)
        steps = run.state.steps_done
        log(f"resuming {run_dir} from {os.path.basename(path)}: "
            f"{run.completed}/{protocol.total_epochs} epochs done"
            + ("" if not steps else
               f", and the training of the next; its validation is left"
               if steps >= run.plan[run.completed].steps else
               f", {steps}/{run.plan[run.completed].steps} steps of the next"))
    else:
        if run.resuming and run.chief:
            _refuse_starting_over(rd, run_dir)
        optimizer = run.use_optimizer_of(0)
        if settings.init_from:
            run.parent = _initialise_from(settings.init_from, run.model, optimizer, run.identity,
                                          protocol.optimizer_spec(0), log)
    # what writes a kill interrupted left, whether or not a checkpoint followed them (after
    # the refusals above, which leave the folder as it was)
    rd.remove_temporary_files()
    if rd.writable and not rd.has_config():
        if run.resuming:
            log(f"note: {run_dir} had lost its config.json; it is written again from this "
                f"command (its checkpoint recorded the same run)")
        # input_mean/std: what evaluation must apply to x / 255 before the model
        data, mean, std = run.data, run.mean, run.std
        rd.write_config(dict(
            run.identity, deterministic=settings.deterministic,
            dataset=dict(data.description, **data.spec),
            input_mean=None if mean is None else [float(m) for m in mean],
            input_std=None if std is None else [float(v) for v in std],
            parent=run.parent, distribution=run.placement, paper=settings.paper,
            **provenance()))
    if rd.writable and run.completed < protocol.total_epochs:
        _check_free_space(rd, run.model, run_dir)


def train(run):
    """The epochs left, stage by stage, with SIGTERM as a flag that checkpoints and stops."""
    one_replica = run.strategy.num_replicas_in_sync == 1 and run.chief
    every = run.settings.checkpoint_every
    if every and not one_replica:
        run.log("note: --checkpoint-every writes epoch checkpoints only under several replicas "
                "(their running statistics are per replica)")
    # Under multi-worker each worker would stop at its own next step and leave the others
    # waiting in an all-reduce: SIGTERM keeps its default there (TensorFlow's
    # PreemptionCheckpointHandler is the way to agree on a step across workers).
    with PreemptionFlag(signals=() if is_multiworker(run.strategy) else None) as preemption:
        try:
            while run.completed < run.protocol.total_epochs:
                _fit_segment(run, preemption, every if one_replica else None, one_replica)
        except Preempted:
            run.write_state("preempted", run.state.saved_steps)
            raise
        finally:
            run.tensorboard.close()


def _fit_segment(run, preemption, every, in_epoch):
    """One ``fit``: the rest of a stage, or (resumed inside) the one epoch in progress."""
    rd, model, strategy, state = run.rd, run.model, run.strategy, run.state
    if preemption.received:  # arrived between fits: the last checkpoint is the newest
        run.log(f"SIGTERM: stopped before epoch {run.completed + 1}; the last checkpoint "
                f"{rd.checkpoint_name(run.completed, state.saved_steps)} holds everything done; "
                f"re-run the same command to resume there")
        raise Preempted("between epochs")
    first, steps_done = run.completed, state.steps_done
    p = run.plan[first]
    session = StageSession(run, p.stage_index)
    if steps_done >= p.steps:  # SIGTERM came during this epoch's validation
        return _validate_saved_epoch(run, session, preemption)
    # an epoch resumed inside runs alone, then the stage goes on from the next epoch
    end = first + 1 if steps_done else session.start + session.stage.epochs
    if first == session.start and not steps_done and session.stage.restart_from_best:
        path = rd.load_stage_best(model, p.stage_index - 1)
        run.log(f"stage {p.stage_index + 1} starts from the best weights of stage "
                f"{p.stage_index} ({os.path.basename(path)}, val_accuracy "
                f"{state.stage_best[p.stage_index - 1][0]:.4f})")
    with strategy.scope():
        session.compile(model, run.use_optimizer_of(p.stage_index))
    train_data, val = session.datasets(first, end, first_step=steps_done)
    with strategy.scope():
        spec = session.prepare_model(model, train_data)
    epoch_end = session.epoch_end(first, run.on_epoch, steps_done, state.epoch_progress)

    def save(epoch, steps, metric_arrays=None):
        return run.save_in_epoch(epoch, steps, epoch_end.progress(), metric_arrays)

    restore = None
    if steps_done:
        # the compiled metrics' totals exist once the model is built symbolically
        with strategy.scope():
            model._symbolic_build(data_batch=spec)
        restore = RestoreMetrics(state.metric_arrays)
    run.callbacks = ordered_callbacks(
        replica_statistics=(ReplicaStatistics(strategy)
                            if strategy.num_replicas_in_sync > 1 else None),
        restore_metrics=restore, lr=session.lr_callback(),
        progress=session.progress(steps_done), epoch_end=epoch_end,
        checkpoint=InEpochCheckpoint(save if in_epoch else None, p.steps, every, preemption,
                                     steps_done, run.log, rd.checkpoint_name))
    with strategy.scope():
        model.fit(distribute_input(train_data, strategy), epochs=end, initial_epoch=first,
                  steps_per_epoch=p.steps - steps_done,
                  validation_data=distribute_input(val, strategy),
                  callbacks=run.callbacks, shuffle=False, verbose=0)
    state.left_epoch()
    if run.completed != end:
        raise RuntimeError(f"stage {session.stage.name} stopped after {run.completed} of "
                           f"{end} epochs")
    run.plot()


def _validate_saved_epoch(run, session, preemption):
    """The epoch whose training a SIGTERM during its validation saved (every step done): its
    validation runs now, and the epoch ends as ``fit`` would have ended it -- the training
    metrics as they stood when its training ended, ``val_`` + the validation's, handed to the
    same callbacks' epoch-end hooks in the same order (the lr policy, then ``EpochEnd``'s row
    and checkpoint, then the stop on a further SIGTERM)."""
    from tinynet.data.device_input import DeviceInput

    model, strategy, state = run.model, run.strategy, run.state
    epoch = run.completed
    with strategy.scope():
        session.compile(model, run.use_optimizer_of(session.index))
    DeviceInput.remove(model)  # (validation never runs the device input)
    val = run.val_dataset(session.label_transform())
    with strategy.scope():
        model._symbolic_build(data_batch=val.element_spec)  # the metrics' variables
    variables = model.metrics_variables
    if len(variables) != len(state.metric_arrays or ()):
        raise TinynetError(f"the checkpoint holds {len(state.metric_arrays or ())} metric "
                           f"totals, the compiled model has {len(variables)}; pass --restart")
    for variable, value in zip(variables, state.metric_arrays):
        variable.assign(value)
    logs = dict(model.get_metrics_result())  # what fit's epoch logs were before validation
    epoch_end = session.epoch_end(epoch, run.on_epoch, state.steps_done, state.epoch_progress)
    lr = session.lr_callback()
    stop = InEpochCheckpoint(None, run.plan[epoch].steps, None, preemption, state.steps_done,
                             run.log, run.rd.checkpoint_name, validation_saved=True)
    run.callbacks = [c for c in (lr, epoch_end, stop) if c is not None]
    for callback in run.callbacks:
        callback.set_model(model)
    epoch_end.on_epoch_begin(epoch)  # (the saved progress: its batches' lrs and seconds)
    stop.on_epoch_begin(epoch)
    run.log(f"validating epoch {epoch + 1}, whose training "
            f"{run.rd.checkpoint_name(epoch, state.steps_done)} holds")
    with strategy.scope():
        val_logs = model.evaluate(distribute_input(val, strategy), callbacks=[stop],
                                  return_dict=True, verbose=0)
    logs.update({"val_" + name: value for name, value in val_logs.items()})
    for callback in run.callbacks:
        callback.on_epoch_end(epoch, logs)
    state.left_epoch()
    run.plot()


def finish(run):
    """The final model (unless an earlier session saved it), state.json complete, the plot."""
    if run.save_final:
        run.rd.save_model(run.model, FINAL_MODEL)
    run.write_state("complete")
    run.plot()
    best = run.state.best
    run.log(f"done: {run.protocol.total_epochs} epochs; best val_accuracy {best[0]:.4f} at "
            f"epoch {best[1]}; run dir {run.settings.run_dir}")
    return run.model
