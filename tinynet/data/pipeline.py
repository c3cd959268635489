"""The tf.data input pipeline: decode once, then per batch gather -> resize -> augment -> scale.

Data order is a pure function of ``(seed, sample position)``: the training stream is an endless
sequence of permutations of the training set, permutation ``p`` drawn from
``numpy.random.default_rng([seed, p])``, and epoch ``e`` reads the ``steps * batch`` positions
after everything epochs ``0..e-1`` consumed. A run resumed at any epoch therefore sees exactly
the batches an uninterrupted run would, and a pass over the data is still a pass (the original
notebook's "epoch" is 200 batches of a ``flow_from_directory`` stream, not a pass).

All work after decoding is per batch (one gather, one resize, one augmentation call), never per
image in Python. Resizing defaults to nearest neighbour, as ``flow_from_directory`` did.
"""
import dataclasses
import os

import numpy as np
import tensorflow as tf

from tinynet.data.images import decode_file, decode_images, host_tensor
from tinynet.errors import TinynetError

AUTOTUNE = tf.data.AUTOTUNE
INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "area", "lanczos3")


@dataclasses.dataclass
class ImageSet:
    """One split: labels plus either the decoded images (``images``) or the file ``paths``."""

    labels: np.ndarray
    image_size: int
    images: np.ndarray | None = None
    paths: list | None = None

    def __len__(self):
        return len(self.labels)

    @property
    def in_memory(self):
        return self.images is not None

    def channel_mean(self):
        """Per-channel mean of the images scaled to [0, 1] (float32 [3]), for mean subtraction."""
        # Exact integer sums of the uint8 pixels, so both cache modes give the same bits.
        total, count = np.zeros(3, np.int64), 0
        if self.in_memory:
            chunks = (self.images[s:s + 4096] for s in range(0, len(self), 4096))
        else:  # x = u / 255 in float32, from which round(x * 255) recovers u exactly
            chunks = (np.rint(np.asarray(x) * 255).astype(np.uint8)
                      for x, _ in eval_dataset(self, 256))
        for chunk in chunks:
            total += chunk.reshape(-1, 3).sum(axis=0, dtype=np.int64)
            count += chunk.shape[0] * chunk.shape[1] * chunk.shape[2]
        return (total / max(count, 1) / 255).astype(np.float32)


def _available_memory_bytes():
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def load_split(split, image_size=64, cache="auto", skip_corrupt=False):
    """Builds an ``ImageSet`` from a ``tiny_imagenet.Split``.

    ``cache="memory"`` decodes every image once into RAM (uint8); ``"none"`` reads and decodes
    files every epoch (after one pass that checks every file decodes); ``"auto"`` caches when
    the decoded split takes under half of the available memory.
    """
    if cache not in ("auto", "memory", "none"):
        raise TinynetError(f"--cache must be auto, memory or none, not {cache!r}")
    if split.labels is None:
        raise TinynetError("this split has no labels; only train and val can be loaded for training")
    if cache == "auto":
        need = len(split) * image_size * image_size * 3
        free = _available_memory_bytes()
        cache = "memory" if free is None or need < free // 2 else "none"
    images, kept = decode_images(split.paths, image_size, skip_corrupt, keep=cache == "memory")
    labels = np.asarray(split.labels, np.int32)[kept]
    paths = [split.paths[i] for i in kept]
    return ImageSet(labels=labels, image_size=image_size, images=images,
                    paths=None if cache == "memory" else paths)


def sample_indices(n, seed, start, count):
    """Positions ``[start, start + count)`` of the stream of seeded permutations of ``range(n)``."""
    if count <= 0:
        return np.zeros(0, np.int64)
    first, last = start // n, (start + count - 1) // n
    stream = np.concatenate([np.random.default_rng([seed, p]).permutation(n)
                             for p in range(first, last + 1)])
    offset = start - first * n
    return stream[offset:offset + count]


def _batch_source(image_set):
    """A graph function ``indices -> (uint8 images, int32 labels)`` for one batch."""
    labels = tf.constant(image_set.labels)
    size = image_set.image_size
    if image_set.in_memory:
        images = host_tensor(image_set.images)
        return lambda idx: (tf.gather(images, idx), tf.gather(labels, idx))
    paths = tf.constant(np.asarray(image_set.paths, dtype=object).astype(str))

    def from_files(idx):
        batch = tf.map_fn(lambda p: decode_file(p, size), tf.gather(paths, idx),
                          fn_output_signature=tf.TensorSpec([size, size, 3], tf.uint8))
        return batch, tf.gather(labels, idx)

    return from_files


def resize_batch(images, resolution, interpolation="nearest"):
    """uint8 batch -> uint8 batch at ``resolution`` (identity when the size already matches)."""
    if interpolation not in INTERPOLATIONS:
        raise TinynetError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, "
                           f"not {interpolation!r}")
    if images.shape[1] == resolution and images.shape[2] == resolution:
        return images
    resized = tf.image.resize(images, [resolution, resolution], method=interpolation)
    if interpolation != "nearest":
        resized = tf.cast(tf.clip_by_value(tf.round(resized), 0, 255), tf.uint8)
    return resized


def train_dataset(image_set, *, seed, first_epoch, num_epochs, steps_per_epoch, batch_size,
                  sample_offset, resolution, augment=None, interpolation="nearest",
                  mean=None, std=None, batch_transform=None, num_parallel_calls=AUTOTUNE,
                  first_step=0, device_input=None):
    """Exactly ``num_epochs * steps_per_epoch - first_step`` batches of ``(x float32, y)``:
    ``x`` in [0, 1], or ``(x - mean) / std`` with a per-channel ``mean`` (and ``std``) given.

    ``sample_offset`` is the stream position where ``first_epoch`` starts; ``first_step``
    batches of it are left out (a run resumed inside an epoch gets the very batches it would
    have had, without computing the ones it already trained on). The augmentation
    contract: ``augment`` (a recipe on uint8 images, or on the normalised float images when it
    says ``on_normalized``) and ``batch_transform`` (on the normalised float images, e.g.
    mixup) are each called once per batch as ``fn(images, labels, key)``
    with ``key`` = int64 ``[seed, epoch, step]`` and return ``(images, labels)``; images keep
    their shape, labels may change form (mixup's soft targets).

    ``device_input`` (``tinynet.data.device_input.DeviceInput``) moves that per-batch work
    into the training step: the batches are then ``({"images": uint8, "key": key}, labels)``
    (augmentation on the accelerator) or ``{"index": indices, "key": key}`` (the decoded
    images live on the accelerator; the host sends only the indices), and
    ``device_input(x, y)`` makes the model's batch inside the step.
    """
    if not 0 <= first_step < steps_per_epoch:
        raise ValueError(f"first_step must be in [0, {steps_per_epoch}), got {first_step}")
    total = num_epochs * steps_per_epoch - first_step
    idx = sample_indices(len(image_set), seed, sample_offset + first_step * batch_size,
                         total * batch_size)
    idx = idx.reshape(total, batch_size)
    epochs = np.repeat(np.arange(first_epoch, first_epoch + num_epochs),
                       steps_per_epoch)[first_step:]
    steps = np.tile(np.arange(steps_per_epoch), num_epochs)[first_step:]
    keys = np.stack([np.full(total, seed), epochs, steps], axis=1).astype(np.int64)
    ds = tf.data.Dataset.from_tensor_slices((idx, keys))
    if device_input is not None and device_input.data_on_device:
        ds = ds.map(lambda batch_idx, key: {"index": batch_idx, "key": key})
        return _with_private_threads(ds.prefetch(AUTOTUNE))
    source = _batch_source(image_set)

    def load(batch_idx, key):
        images, labels = source(batch_idx)
        if device_input is not None:  # the step resizes, augments and normalises
            return {"images": images, "key": key}, labels
        return prepare_batch(images, labels, key, resolution=resolution,
                             interpolation=interpolation, augment=augment, mean=mean, std=std,
                             batch_transform=batch_transform)

    ds = ds.map(load, num_parallel_calls=num_parallel_calls, deterministic=True)
    return _with_private_threads(ds.prefetch(AUTOTUNE))


def _with_private_threads(ds):
    # tf.data borrows TensorFlow's inter-op pool by default; --deterministic shrinks that pool
    # to one thread, and the input pipeline must not be serialised with it.
    options = tf.data.Options()
    options.threading.private_threadpool_size = max(2, os.cpu_count() or 2)
    return ds.with_options(options)


def prepare_batch(images, labels, key, *, resolution, interpolation="nearest", augment=None,
                  mean=None, std=None, batch_transform=None):
    """A stored uint8 batch -> the model's batch: resize, augment (before or after the
    normalisation, as the recipe says), normalise, batch transform (mixup)."""
    images = resize_batch(images, resolution, interpolation)
    if augment is not None and getattr(augment, "on_normalized", False):
        x, labels = augment(normalize(images, mean, std), labels, key)
    else:
        if augment is not None:
            images, labels = augment(images, labels, key)
        x = normalize(images, mean, std)
    if batch_transform is not None:
        x, labels = batch_transform(x, labels, key)
    return x, labels


def normalize(images, mean=None, std=None):
    """uint8 images -> float32 ``x / 255``, minus a per-channel ``mean``, over ``std``
    (both in the [0, 1] scale; either may be None)."""
    x = tf.cast(images, tf.float32) / 255.0
    if mean is not None:
        x = x - tf.constant(mean, tf.float32)
    if std is not None:
        x = x / tf.constant(std, tf.float32)
    return x


def eval_dataset(image_set, batch_size, resolution=None, interpolation="nearest", mean=None,
                 std=None, label_transform=None, views=None):
    """The whole split in order, once, as ``(x float32, y int32)`` batches, normalised as
    ``train_dataset``; ``label_transform(labels)`` reshapes labels for a loss that needs
    another form (mixup's paired targets); ``views(images)`` turns a batch of stored uint8
    images into the images the model sees before the resize (10-crop's crops)."""
    resolution = resolution or image_set.image_size
    n = len(image_set)
    idx = np.arange(n)
    source = _batch_source(image_set)

    def load(batch_idx):
        images, labels = source(batch_idx)
        if views is not None:
            images = views(images)
        images = resize_batch(images, resolution, interpolation)
        if label_transform is not None:
            labels = label_transform(labels)
        return normalize(images, mean, std), labels

    ds = tf.data.Dataset.from_tensor_slices(idx).batch(batch_size)
    return _with_private_threads(
        ds.map(load, num_parallel_calls=AUTOTUNE, deterministic=True).prefetch(AUTOTUNE))
