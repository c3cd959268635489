"""mixup (Zhang et al. 2018, "mixup: Beyond Empirical Risk Minimization") as a tf.data batch
transform, with stateless randomness seeded by the batch's ``(seed, epoch, step)`` key.

``Mixup(alpha, num_classes, per)(images, labels, key) -> (images, targets)``, called once per
batch inside ``tf.data.Dataset.map`` (pure TensorFlow ops, no Python per batch):

- ``images`` float32 [B, H, W, C], already scaled/normalised (mixup is linear, so mixing after
  an affine normalisation equals mixing before it); ``labels`` int [B] class indices;
  ``key`` int64 [3] = (seed, epoch, step). The mixing weights and the permutation are a pure
  function of ``key``: a resumed run sees the same mixed batches as an uninterrupted one.
- ``x = lam * x + (1 - lam) * x[index]`` with ``index`` a random permutation of the batch
  (it may map a sample to itself, as ``torch.randperm`` does) and ``lam ~ Beta(alpha, alpha)``:
  one ``lam`` for the whole batch (``per="batch"``) or one per sample (``per="sample"``).
- ``targets`` float32 [B, 2K] (the *paired-target format*)::

      concat([lam * onehot(y) + (1 - lam) * onehot(y[index]),   # mixed target, K columns
              onehot(y)], axis=-1)                                # unmixed label, K columns

  Cross-entropy against the first half is exactly ``lam * CE(y) + (1 - lam) * CE(y[index])``
  (CE is linear in the target), i.e. the mixup loss of the NYU / Zhang et al. code; the second
  half lets training accuracy be measured against the original labels, as NYU logged it
  (``predicted.eq(labels)``). ``tinynet.training.losses`` has the matching Keras loss and
  metrics; ``paired_targets`` puts plain labels (validation/test) into the same format.
"""
import math
import numbers

import tensorflow as tf

PER_CHOICES = ("batch", "sample")

# Folded into every key first, so mixup's random stream differs from that of any other
# stateless transform seeded by the same (seed, epoch, step). b"mixup" as an integer.
_SALT = tf.constant([0x6D69787570, 0], tf.int64)


def paired_targets(labels, num_classes):
    """int labels [B] -> float32 [B, 2K] ``concat([onehot(y), onehot(y)])``: the paired-target
    format of ``Mixup`` without mixing, for the validation/test data of a run whose loss and
    metrics read that format (``tinynet.training.losses``)."""
    onehot = tf.one_hot(tf.cast(labels, tf.int32), num_classes, dtype=tf.float32)
    return tf.concat([onehot, onehot], axis=-1)


class Mixup:
    """mixup as a batch transform: ``Mixup(alpha, num_classes, per)(images, labels, key)``.

    Args:
        alpha: Beta(alpha, alpha) concentration of the mixing weight ``lam``. ``alpha <= 0``
            means no mixing (``lam = 1``: images are returned untouched and the targets are
            ``paired_targets(labels)``), as ``lam = np.random.beta(alpha, alpha) if alpha > 0
            else 1`` in the NYU code. 1.0 (``lam`` uniform in [0, 1]) is the CIFAR setting of
            Zhang et al. and of the NYU code.
        num_classes: K, the number of classes; the targets have 2K columns.
        per: ``"batch"``: ONE ``lam`` for the whole batch and one permutation, as the NYU code
            (``lam = np.random.beta(alpha, alpha)``; ``index = torch.randperm(batch_size)``) and
            the authors' released CIFAR code do; the project's default for that paper.
            ``"sample"``: one ``lam`` per sample (the paper's Eq. 1 draws ``lam`` per virtual
            example), still one permutation per batch.

    Relation to ``keras.layers.MixUp`` (keras/src/layers/preprocessing/image_preprocessing/
    mix_up.py): that layer is ``per="sample"``: one permutation per batch (argsort of uniform
    noise, the same distribution as ours), one ``lam_i ~ Beta(alpha, alpha)`` per sample, images
    and (already one-hot, float) labels both mixed as ``lam_i * v_i + (1 - lam_i) * v[perm_i]``.
    ``per="sample"`` draws from the same distribution and mixes the same way; the random
    streams differ (different seeds and Beta sampler), so outputs are not bit-identical. We do
    not use that layer because it cannot serve this contract:

    - its randomness comes from a stateful ``SeedGenerator`` (a variable advanced on each call),
      so the mixing of a batch depends on how many batches the layer has seen in this process,
      not on the batch's key: a resumed run would see different batches; and its seed argument
      only accepts a Python int or a ``SeedGenerator`` (``keras.random`` rejects a seed tensor
      such as one derived from ``key`` inside ``Dataset.map``);
    - it has no ``alpha <= 0`` off switch: ``alpha = 0`` gives ``lam = 0.5`` for every sample
      (TF's gamma sampler returns its smallest normal float for both Beta halves), i.e. the
      strongest mixing, not none; it does not validate ``alpha`` either;
    - it returns only the mixed labels, losing the unmixed ones that NYU's training accuracy uses.
    """

    def __init__(self, alpha=1.0, num_classes=None, per="batch"):
        if (isinstance(alpha, bool) or not isinstance(alpha, numbers.Real)
                or not math.isfinite(alpha)):
            raise ValueError("Invalid value received for argument `alpha`. Expected a finite "
                             f"real number (<= 0 for no mixing). Received: alpha={alpha!r}")
        if (isinstance(num_classes, bool) or not isinstance(num_classes, numbers.Integral)
                or num_classes < 1):
            raise ValueError("Invalid value received for argument `num_classes`. Expected a "
                             f"positive integer. Received: num_classes={num_classes!r}")
        if per not in PER_CHOICES:
            raise ValueError("Invalid value received for argument `per`. Expected one of "
                             f"{PER_CHOICES}. Received: per={per!r}")
        self.alpha = float(alpha)
        self.num_classes = int(num_classes)
        self.per = per

    @property
    def enabled(self):
        return self.alpha > 0

    def get_config(self):
        return {"alpha": self.alpha, "num_classes": self.num_classes, "per": self.per}

    @classmethod
    def from_config(cls, config):
        return cls(**config)

    def describe(self):
        if not self.enabled:
            return f"no mixup (alpha {self.alpha:g})"
        return f"mixup alpha {self.alpha:g} (one lambda per {self.per})"

    def __repr__(self):
        return (f"Mixup(alpha={self.alpha:g}, num_classes={self.num_classes}, "
                f"per={self.per!r})")

    def sample(self, key, batch_size):
        """The mixing of a batch of ``batch_size`` with ``key``: ``(lam float32 [B], index
        int32 [B])``; with ``per="batch"`` all ``lam`` are equal. ``lam = 1`` and the identity
        when ``alpha <= 0``."""
        if not self.enabled:
            return tf.ones([batch_size], tf.float32), tf.range(batch_size, dtype=tf.int32)
        seed = _SALT
        key = tf.cast(tf.reshape(key, [-1]), tf.int64)
        for i in range(3):
            seed = tf.random.experimental.stateless_fold_in(seed, key[i])
        seeds = tf.random.experimental.stateless_split(seed, num=3)
        # A uniformly random permutation (as torch.randperm, and keras.random.shuffle on TF).
        index = tf.argsort(tf.random.stateless_uniform([batch_size], seed=seeds[0]))
        index = tf.cast(index, tf.int32)
        n = batch_size if self.per == "sample" else 1
        lam = _beta_symmetric([n], self.alpha, seeds[1], seeds[2])
        lam = tf.broadcast_to(tf.cast(lam, tf.float32), [batch_size])
        return lam, index

    def __call__(self, images, labels, key):
        images = tf.convert_to_tensor(images)
        if not images.dtype.is_floating:
            raise ValueError("Mixup expects float images (already scaled/normalised). "
                             f"Received: images.dtype={images.dtype.name}")
        labels = tf.convert_to_tensor(labels)
        if labels.shape.rank is not None and labels.shape.rank != 1:
            raise ValueError("Mixup expects labels of shape [batch] (class indices). "
                             f"Received: labels.shape={labels.shape}")
        labels = tf.cast(labels, tf.int32)
        k = self.num_classes
        with tf.control_dependencies([
                tf.debugging.assert_non_negative(labels, message="Mixup: negative label"),
                tf.debugging.assert_less(labels, k, message=f"Mixup: label >= num_classes {k}")]):
            onehot = tf.one_hot(labels, k, dtype=tf.float32)
        if not self.enabled:
            return images, tf.concat([onehot, onehot], axis=-1)
        lam, index = self.sample(key, tf.shape(images)[0])
        ones = tf.ones([tf.rank(images) - 1], tf.int32)  # lam as [B, 1, 1, 1]
        lam_x = tf.reshape(tf.cast(lam, images.dtype), tf.concat([[-1], ones], 0))
        mixed_images = lam_x * images + (1 - lam_x) * tf.gather(images, index)
        mixed_images.set_shape(images.shape)
        lam_y = lam[:, None]
        mixed = lam_y * onehot + (1 - lam_y) * tf.gather(onehot, index)
        return mixed_images, tf.concat([mixed, onehot], axis=-1)


def _beta_symmetric(shape, alpha, seed_a, seed_b):
    """float64 samples of Beta(alpha, alpha) as sigmoid(log Ga - log Gb), Ga, Gb ~ Gamma(alpha).

    ``log G`` for ``G ~ Gamma(alpha)`` is drawn as ``log Gamma(alpha + 1) + log(U) / alpha``
    (U uniform in (0, 1]), which never underflows: TF's gamma sampler clamps tiny draws to the
    smallest normal float, so the textbook ``Ga / (Ga + Gb)`` returns exactly 0.5 whenever both
    draws are clamped instead of ~0 or ~1 (in float32, as keras.random.beta samples: 18% of
    the draws for alpha = 0.01, all of them as alpha -> 0).
    """
    log_g = []
    for seed in (seed_a, seed_b):
        seeds = tf.random.experimental.stateless_split(seed, num=2)
        g1 = tf.random.stateless_gamma(shape, seed=seeds[0], alpha=alpha + 1.0, dtype=tf.float64)
        u = 1.0 - tf.random.stateless_uniform(shape, seed=seeds[1], dtype=tf.float64)  # (0, 1]
        log_g.append(tf.math.log(g1) + tf.math.log(u) / alpha)
    return tf.math.sigmoid(log_g[0] - log_g[1])
