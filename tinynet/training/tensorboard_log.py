"""TensorBoard event files in the run directory: ``tensorboard --logdir <run_dir>/tensorboard``.

Laid out as Keras' own ``TensorBoard`` callback lays them out, so training and validation curves
share a chart::

    tensorboard/train/       epoch_loss, epoch_accuracy, epoch_top5, epoch_learning_rate,
                             epoch_stage, epoch_resolution, epoch_seconds (step: global epoch),
                             batch_learning_rate (step: global iteration),
                             stage (text, at each stage's first epoch: what the stage is)
    tensorboard/validation/  epoch_loss, epoch_accuracy, epoch_top5 (step: global epoch)

The steps are the run's global epoch (1-based, as history.csv) and global iteration (as lr.csv),
so a resumed run -- which opens a new events file in the same folders -- continues the same
timeline. ``write_epoch`` is called once per finished epoch after its checkpoint, with the
epoch's history row and its ``(iteration, lr)`` rows (an epoch resumed inside included whole),
so each epoch is written once; a kill between the checkpoint and this write leaves that one
epoch out of the curves (history.csv has it). The files go through TensorFlow's file systems
(``tf.summary.create_file_writer``): local paths, ``gs://``, ``ram://``. A multi-worker member
other than the chief (``writable=False``) writes nothing.

The summaries are written with TensorFlow's own ``tf.summary.write`` and the metadata of
TensorBoard's scalar and text plugins, so training does not need the ``tensorboard`` package
(``tf.summary.scalar`` does); only the machine that views the logs does.
"""
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from tinynet import io as tio

FOLDER = "tensorboard"
TRAIN_METRICS = ("loss", "accuracy", "top5")
STAGE_SCALARS = ("stage", "resolution", "seconds")


class TensorBoardLog:
    """The run's TensorBoard writer; ``protocol`` (optional) names each stage in its text."""

    def __init__(self, run_dir, protocol=None, writable=True):
        self.folder = tio.join(str(run_dir), FOLDER)
        self.protocol = protocol
        self.writable = writable
        self._writers = {}
        self._lr_series = None

    def _series(self, iterations, lrs):
        """``batch_learning_rate`` at every iteration of an epoch, in one graph call (an eager
        write per row costs ~0.5 ms: seconds per epoch of thousands of steps). The function
        holds the writer it was traced with, so it belongs to this object's train writer."""
        if self._lr_series is None:
            def series(iterations, lrs):
                def body(i):
                    tf.summary.write("batch_learning_rate", lrs[i], step=iterations[i],
                                     metadata=_SCALAR)
                    return (i + 1,)
                tf.while_loop(lambda i: i < tf.shape(iterations)[0], body, (tf.constant(0),))

            self._lr_series = tf.function(series, autograph=False, input_signature=[
                tf.TensorSpec([None], tf.int64), tf.TensorSpec([None], tf.float32)])
        self._lr_series(iterations, lrs)

    def _writer(self, name):
        if name not in self._writers:
            self._writers[name] = tf.summary.create_file_writer(tio.join(self.folder, name))
        return self._writers[name]

    def write_epoch(self, row, lrs=()):
        """Writes one finished epoch: ``row`` as ``_Run.on_epoch`` builds it (stage, resolution,
        epoch, global_epoch, lr, loss, accuracy, top5, val_*, seconds) and ``lrs``, the
        ``(iteration, lr)`` of each of its batches."""
        if not self.writable:
            return
        step = int(row["global_epoch"])
        train, validation = self._writer("train"), self._writer("validation")
        with train.as_default(step=step):
            for key in TRAIN_METRICS:
                _scalar(f"epoch_{key}", row.get(key))
            _scalar("epoch_learning_rate", row.get("lr"))
            for key in STAGE_SCALARS:
                _scalar(f"epoch_{key}", row.get(key))
            if row.get("epoch") == 1:
                _text("stage", self._describe_stage(row))
            if len(lrs):
                self._series(tf.constant([int(it) for it, _ in lrs], tf.int64),
                             tf.constant([float(lr) for _, lr in lrs], tf.float32))
        with validation.as_default(step=step):
            for key in TRAIN_METRICS:
                _scalar(f"epoch_{key}", row.get(f"val_{key}"))
        train.flush()
        validation.flush()

    def _describe_stage(self, row):
        text = f"stage {row['stage']} starts at global epoch {row['global_epoch']}"
        if self.protocol is None:
            return text + f" ({row['resolution']}px)"
        stage = self.protocol.stages[row["stage"] - 1]
        return (f"stage {row['stage']}/{len(self.protocol.stages)} {stage.name!r} starts at "
                f"global epoch {row['global_epoch']}: {stage.resolution}px, batch "
                f"{stage.batch_size}, {stage.epochs} epochs")

    def close(self):
        for writer in self._writers.values():
            writer.close()
        self._writers, self._lr_series = {}, None


def _metadata(plugin, data_class):
    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = plugin
    metadata.data_class = data_class
    return metadata


# what tensorboard.summary.v2's scalar() and text() write
_SCALAR = _metadata("scalars", summary_pb2.DATA_CLASS_SCALAR)
_TEXT = _metadata("text", summary_pb2.DATA_CLASS_TENSOR)


def _scalar(tag, value):
    if value is not None:  # (a column the run does not have, e.g. val_* without validation)
        tf.summary.write(tag, tf.constant(float(value), tf.float32), metadata=_SCALAR)


def _text(tag, text):
    tf.summary.write(tag, tf.constant(text), metadata=_TEXT)
