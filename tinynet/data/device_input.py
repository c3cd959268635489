"""The per-batch input work inside the training step, on the accelerator.

On a GPU the host's input pipeline, not the model, sets the pace of the small models these
papers train (``docs/benchmarks.md``). Two options move the work to the device:

- ``--augment-on device``: tf.data still gathers the stored uint8 batch (and sends it, 4x
  smaller than float32), and the training step resizes, augments (the native backend's
  TensorFlow ops), normalises and mixes (mixup) it as its first step.
- ``--data-on-device`` (in-memory datasets: CIFAR's 150 MB, Tiny ImageNet's 1.2 GB of uint8):
  the decoded training set is one tensor on the accelerator; the host sends only each batch's
  indices and key, and the step gathers the batch there. The host does no per-batch work.

Both compute the very function of ``tinynet.data.pipeline.prepare_batch`` on the same indices
and ``(seed, epoch, step)`` keys as the host pipeline, so data order, augmentation and resume
are unchanged. Bits may differ: TensorFlow optimises the training step's graph differently
from tf.data's, and a float32 rounding can move an interpolated pixel to the next grey level
(tested: at most one level, on under 1% of the values); a run resumed in the same mode is
bit-identical to an uninterrupted one. ``DeviceInput.install(model)`` wraps the model's ``train_step`` for one stage
(an instance attribute that ``remove`` takes away again); validation stays on the host.

Limits, each refused with a message: the imgaug backend cannot run in a training step (it is
Python), so ``--augment-on device`` needs ``--augment-backend native``; the step must be a
TensorFlow graph, so both need Keras' TensorFlow backend; and the one device-resident copy of
the data serves one replica (``--strategy default``).
"""
import tensorflow as tf

from tinynet.data.pipeline import prepare_batch
from tinynet.errors import TinynetError

AUGMENT_ON = ("cpu", "device")


def accelerator():
    """The device the step runs on: the first GPU or TPU TensorFlow sees, else the CPU."""
    for kind in ("GPU", "TPU"):
        found = tf.config.list_logical_devices(kind)
        if found:
            return found[0].name
    return "/device:CPU:0"


def check_device_input(augment_on, data_on_device, augment_backend, replicas=1):
    """``TinynetError`` for a combination that cannot run (see the module docstring)."""
    import keras

    if augment_on not in AUGMENT_ON:
        raise TinynetError(f"--augment-on must be one of {', '.join(AUGMENT_ON)}, "
                           f"not {augment_on!r}")
    if augment_on == "cpu" and not data_on_device:
        return
    flag = "--data-on-device" if data_on_device else "--augment-on device"
    if keras.backend.backend() != "tensorflow":
        raise TinynetError(f"{flag} runs TensorFlow ops inside the training step, which needs "
                           f"Keras' TensorFlow backend (this is {keras.backend.backend()}); "
                           f"use --backend tensorflow, or keep the input work on the CPU")
    if augment_backend != "native":
        raise TinynetError(f"{flag} augments inside the training step, which the "
                           f"{augment_backend} backend cannot (it runs Python); add "
                           f"--augment-backend native")
    check_one_replica(augment_on, data_on_device, replicas)


def check_one_replica(augment_on, data_on_device, replicas):
    """``TinynetError`` where input work on the device would serve several replicas."""
    if replicas > 1 and (augment_on == "device" or data_on_device):
        flag = "--data-on-device" if data_on_device else "--augment-on device"
        raise TinynetError(f"{flag} keeps one copy of the input on one device; it serves one "
                           f"replica, not {replicas}: use --strategy default")


class DeviceInput:
    """What the training step does to a batch before the model sees it (one stage)."""

    def __init__(self, image_set, *, resolution, interpolation="nearest", augment=None,
                 mean=None, std=None, batch_transform=None, data_on_device=False, device=None):
        self.options = dict(resolution=resolution, interpolation=interpolation,
                            augment=augment, mean=mean, std=std,
                            batch_transform=batch_transform)
        self.data_on_device = data_on_device
        self._train_step = None
        if data_on_device:
            if not image_set.in_memory:
                raise TinynetError("--data-on-device needs the decoded training set in memory; "
                                   "add --cache memory (or drop --data-on-device)")
            with tf.device(device or accelerator()):
                self.images = tf.constant(image_set.images)
                self.labels = tf.constant(image_set.labels)

    def __call__(self, x, y=None):
        if self.data_on_device:
            images = tf.gather(self.images, x["index"])
            y = tf.gather(self.labels, x["index"])
        else:
            images = x["images"]
        return prepare_batch(images, y, x["key"], **self.options)

    def output_spec(self, element_spec):
        """The ``(x, y)`` TensorSpecs of the model's batches from the dataset's spec."""
        args = element_spec if isinstance(element_spec, tuple) else (element_spec,)
        traced = tf.function(self.__call__).get_concrete_function(*args)
        return tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype),
                                     traced.structured_outputs)

    def install(self, model):
        """Makes ``model``'s training step call this first."""
        original = type(model).train_step.__get__(model)

        def train_step(*args):
            # (data) on TensorFlow; the batch is always the last argument
            data = args[-1]
            x, y = (data[0], data[1]) if isinstance(data, (tuple, list)) else (data, None)
            return original(*args[:-1], self(x, y))

        model.train_step = train_step
        return model

    @staticmethod
    def remove(model):
        model.__dict__.pop("train_step", None)
