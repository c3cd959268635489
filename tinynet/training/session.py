"""The per-stage training session: what one stage of a protocol trains with.

A stage fixes its trainable set (``Stage.freeze``: named layers frozen, their BatchNorm in
inference mode), its optimizer (the previous stage's, state included, unless it names a new
one), its learning-rate policy's callback, its loss and metrics (sparse labels, or mixup's
paired targets), and its input pipeline (recipe through an augmentation backend, then the
dataset's normalisation, then a batch transform such as mixup). ``StageSession`` turns a
``Stage`` into those objects; the runner (``tinynet.training.runner``) owns the run: identity,
run directory, restore, the loop over epochs.

Optimizers are built over every variable that is trainable when the model is built, before any
stage freezes a part of it: Keras 3 refuses to update variables an optimizer was not built
with, so a later stage can unfreeze what an earlier one froze with the same optimizer, and
every checkpoint of that optimizer has the same variables.
"""
import fnmatch

import keras

from tinynet.augment import get_augmenter
from tinynet.data.pipeline import train_dataset
from tinynet.errors import TinynetError
from tinynet.training.callbacks import EpochEnd
from tinynet.training.optimizers import make_optimizer
from tinynet.training.precision import wrap_optimizer


def apply_freeze(model, patterns):
    """Sets ``trainable`` on every layer: False where its name starts with (or matches, as a
    shell pattern) one of ``patterns``, True elsewhere. Returns the frozen layer names."""
    frozen = []
    for layer in model.layers:
        hit = any(layer.name.startswith(p) or fnmatch.fnmatch(layer.name, p) for p in patterns)
        if layer.trainable == hit:  # flip only what needs it
            layer.trainable = not hit
        if hit:
            frozen.append(layer.name)
    unmatched = [p for p in patterns if not any(n.startswith(p) or fnmatch.fnmatch(n, p)
                                                for n in frozen)]
    if unmatched:
        raise TinynetError(f"no layer of {model.name} matches {unmatched} (freeze); layer names "
                           f"start like {sorted({l.name.split('_')[0] for l in model.layers})}")
    return frozen


def build_optimizer(spec, model):
    """The optimizer ``spec`` names, built over every variable of ``model`` that any stage may
    train (the stage's own freeze is applied after, by ``StageSession.compile``)."""
    optimizer = wrap_optimizer(make_optimizer(spec))
    apply_freeze(model, ())
    optimizer.build(model.trainable_variables)
    return optimizer


def loss_and_metrics(stage):
    """The compiled loss and metrics of ``stage`` (history columns: accuracy, top5)."""
    if stage.mixup is not None:
        from tinynet.training.losses import (MixedTargetAccuracy, MixedTargetCrossentropy,
                                             MixedTargetTopK)
        return MixedTargetCrossentropy(), [MixedTargetAccuracy(name="accuracy"),
                                           MixedTargetTopK(5, name="top5")]
    return keras.losses.SparseCategoricalCrossentropy(), [
        "accuracy", keras.metrics.SparseTopKCategoricalAccuracy(5, name="top5")]


class StageSession:
    """One stage's training set-up for a segment of epochs ``[first, end)`` of a run."""

    def __init__(self, run, stage_index):
        self.run = run
        self.index = stage_index
        self.stage = run.protocol.stages[stage_index]
        self.start = run.protocol.stage_start(stage_index)
        self.steps = run.protocol.steps_of(self.stage, len(run.data.train))

    def mixup(self):
        if self.stage.mixup is None:
            return None
        from tinynet.augment.mixup import Mixup
        return Mixup(alpha=self.stage.mixup.alpha, num_classes=self.run.data.num_classes,
                     per=self.stage.mixup.per)

    def label_transform(self):
        if self.stage.mixup is None:
            return None
        from tinynet.augment.mixup import paired_targets
        n = self.run.data.num_classes
        return lambda labels: paired_targets(labels, n)

    def compile(self, model, optimizer):
        apply_freeze(model, self.stage.freeze)
        loss, metrics = loss_and_metrics(self.stage)
        model.compile(optimizer=optimizer, loss=loss, metrics=metrics,
                      jit_compile=self.run.jit_compile)
        # A fresh trace per stage: tf.function would otherwise relax a trace that has seen
        # several stage shapes to unknown dimensions, and a run resumed mid-stage (which
        # traces the static shape) would then compute in a different order than the
        # uninterrupted one and drift in the last bits.
        model.make_train_function(force=True)

    def datasets(self, first, end, first_step=0):
        """Training batches of epochs ``[first, end)`` (less the first ``first_step`` of epoch
        ``first``, already trained) and the validation set."""
        run, stage, p = self.run, self.stage, self.run.plan[first]
        augment = get_augmenter(stage.augment, run.augment_backend) if stage.augment else None
        self.device_input = None
        if run.augment_on == "device" or run.data_on_device:
            from tinynet.data.device_input import DeviceInput
            self.device_input = DeviceInput(
                run.data.train, resolution=stage.resolution, interpolation=run.interpolation,
                augment=augment, mean=run.mean, std=run.std, batch_transform=self.mixup(),
                data_on_device=run.data_on_device)
        train = train_dataset(run.data.train, seed=run.seed, first_epoch=first,
                              num_epochs=end - first, steps_per_epoch=p.steps,
                              batch_size=stage.batch_size, sample_offset=p.sample_offset,
                              resolution=stage.resolution, augment=augment,
                              interpolation=run.interpolation, mean=run.mean, std=run.std,
                              batch_transform=self.mixup(), first_step=first_step,
                              device_input=self.device_input)
        return train, run.val_dataset(self.label_transform())

    def prepare_model(self, model, train):
        """Installs (or removes) the stage's in-step input work; returns the spec of the
        batches the model itself sees (``model._symbolic_build`` reads it)."""
        from tinynet.data.device_input import DeviceInput

        DeviceInput.remove(model)
        spec = train.element_spec
        if self.device_input is not None:
            self.device_input.install(model)
            spec = self.device_input.output_spec(spec)
            model._symbolic_build(data_batch=spec)
        model.make_train_function(force=True)  # Keras binds train_step when it makes it
        return spec

    def lr_callback(self):
        """The stage's lr policy as a callback with its saved state restored (None: the policy
        leaves the learning rate as it is)."""
        run, policy = self.run, self.stage.lr
        n = len(run.data.train)
        callback = policy.callback(self.start,
                                   run.protocol.optimizer_iterations_before(self.index, n),
                                   self.steps)
        if callback is not None:
            saved = run.state.callback_states.get(getattr(callback, "state_key", None))
            if saved and saved["stage"] == self.index:
                callback.set_state(saved["state"])
        return callback

    def progress(self, steps_done=0):
        """The in-epoch progress report (every ``run.progress_every`` seconds without a
        terminal, ``tinynet.training.progress``); ``steps_done``: steps of the first epoch
        trained before this fit."""
        from tinynet.training.progress import EpochProgress

        run = self.run
        return EpochProgress(run.protocol, len(run.data.train), steps_done,
                             every=run.progress_every, log=run.log,
                             measured=lambda: (run.state.seconds, run.state.units))

    def epoch_end(self, first, on_epoch, steps_done=0, progress=None):
        """The per-epoch recorder of a fit starting at epoch ``first``; ``steps_done`` /
        ``progress``: that epoch resumes after that many of its steps, with its record."""
        run, policy = self.run, self.stage.lr
        n = len(run.data.train)
        stage_first_iteration = run.protocol.iterations_before(self.start, n)
        lr_at = None
        if policy.per_iteration:
            lr_at = lambda it: policy.value(0, it - stage_first_iteration, self.steps)  # noqa: E731
        return EpochEnd(on_epoch, run.protocol.iterations_before(first, n) + steps_done, lr_at,
                        progress=progress if steps_done else None)
