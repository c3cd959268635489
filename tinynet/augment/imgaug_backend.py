"""The imgaug backend: runs a recipe inside tf.data through ``tf.numpy_function``, once per batch.

- One Python call per batch (imgaug augments the whole batch); the output gets the input's
  static shape back, since ``numpy_function`` loses it.
- Randomness is seeded from ``(seed, epoch, step)`` of the batch, so the same batch is
  augmented identically in an uninterrupted and a resumed run, whatever the thread timing.
- tf.data may run several batches at once (``num_parallel_calls``): each thread gets its own
  augmenter (reseeding a shared one would race), and OpenCV's own thread pool is switched off
  (``cv2.setNumThreads(0)``) so parallel calls do not oversubscribe or deadlock it.
"""
import threading

import cv2
import numpy as np
import tensorflow as tf

from tinynet.augment.recipes import build_recipe, get_recipe


class ImgaugAugment:
    """``ImgaugAugment(recipe)(images, labels, key_int64[3]) -> (images, labels)`` for tf.data
    (the augmentation contract; imgaug recipes leave labels as they are). Images are uint8,
    or the normalised float32 batch for a recipe that runs ``on_normalized``; the output keeps
    the input's dtype."""

    def __init__(self, recipe):
        self.recipe = recipe
        build_recipe(recipe)  # fail now, not inside tf.data, on an unknown name
        self.on_normalized = get_recipe(recipe).on_normalized
        self._local = threading.local()
        self._lock = threading.Lock()
        self.calls = 0  # Python calls made (one per batch); read by tests and benchmarks
        cv2.setNumThreads(0)

    def _augmenter(self):
        aug = getattr(self._local, "augmenter", None)
        if aug is None:
            aug = self._local.augmenter = build_recipe(self.recipe)
        return aug

    def augment_numpy(self, images, key):
        """Augments an NHWC batch with randomness seeded by ``key`` (e.g. seed, epoch, step)."""
        with self._lock:
            self.calls += 1
        aug = self._augmenter()
        entropy = np.random.SeedSequence([int(k) for k in np.asarray(key).ravel()])
        aug.seed_(int(entropy.generate_state(1, np.uint32)[0]))
        images = np.asarray(images)
        out = aug(images=images)
        return np.ascontiguousarray(np.asarray(out, dtype=images.dtype))

    def __call__(self, images, labels, key):
        out = tf.numpy_function(self.augment_numpy, [images, key], images.dtype, stateful=False)
        out.set_shape(images.shape)
        return out, labels
