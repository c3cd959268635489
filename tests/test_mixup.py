"""mixup batch transform (tinynet.augment.mixup) and its loss/metrics (tinynet.training.losses)."""
import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tinynet.augment.mixup import Mixup, paired_targets
from tinynet.training.losses import (MixedTargetAccuracy, MixedTargetCrossentropy,
                                     MixedTargetTopK)

K = 10


def _batch(batch=8, num_classes=K, seed=0):
    """Random images and DISTINCT labels, so a target row tells which sample was mixed in."""
    rng = np.random.default_rng(seed)
    images = rng.normal(size=(batch, 4, 5, 3)).astype(np.float32)
    labels = rng.permutation(num_classes)[:batch].astype(np.int32)
    return images, labels


def _key(seed=1, epoch=0, step=0):
    return tf.constant([seed, epoch, step], tf.int64)


def _recover(images, labels, out_images, targets, num_classes=K):
    """Checks one mixed batch against its targets; returns (lam per row or None where the row
    was mixed with itself, the permutation), both read from the targets alone."""
    mixed, unmixed = targets[:, :num_classes], targets[:, num_classes:]
    np.testing.assert_array_equal(unmixed, np.eye(num_classes, dtype=np.float32)[labels])
    np.testing.assert_allclose(mixed.sum(1), 1.0, atol=1e-6)
    position = {int(c): i for i, c in enumerate(labels)}
    lams, perm = [], []
    for i, y in enumerate(labels):
        others = [c for c in np.flatnonzero(mixed[i]) if c != y]
        assert len(others) <= 1
        if not others:  # mixed with itself (index[i] == i): lam * x + (1 - lam) * x == x
            assert mixed[i, y] == 1.0
            lams.append(None)
            perm.append(i)
            np.testing.assert_allclose(out_images[i], images[i], rtol=1e-6, atol=1e-6)
            continue
        j = position[int(others[0])]
        lam = mixed[i, y]
        np.testing.assert_allclose(mixed[i, others[0]], 1 - lam, atol=1e-6)
        np.testing.assert_allclose(out_images[i], lam * images[i] + (1 - lam) * images[j],
                                   rtol=1e-5, atol=1e-5)
        lams.append(float(lam))
        perm.append(j)
    assert sorted(perm) == list(range(len(labels)))  # one permutation for images and labels
    return lams, perm


def test_per_batch_one_lambda_and_permutation_for_images_and_labels():
    mix = Mixup(alpha=1.0, num_classes=K, per="batch")
    images, labels = _batch()
    recovered = 0
    for step in range(5):
        out, targets = mix(images, labels, _key(step=step))
        assert out.dtype == tf.float32 and out.shape == images.shape
        assert targets.dtype == tf.float32 and targets.shape == (8, 2 * K)
        lams, perm = _recover(images, labels, out.numpy(), targets.numpy())
        seen = [lam for lam in lams if lam is not None]
        assert seen, "every sample mixed with itself: the test checked nothing"
        np.testing.assert_allclose(seen, seen[0], atol=1e-7)  # ONE lambda per batch
        recovered += len(seen)
        lam, index = mix.sample(_key(step=step), 8)
        np.testing.assert_allclose(seen[0], lam.numpy()[0], atol=1e-7)
        assert perm == index.numpy().tolist()
    assert recovered >= 20


def test_per_sample_lambdas_differ_and_match_images_and_labels():
    mix = Mixup(alpha=1.0, num_classes=K, per="sample")
    images, labels = _batch()
    out, targets = mix(images, labels, _key(seed=5))
    lams, _ = _recover(images, labels, out.numpy(), targets.numpy())
    seen = [lam for lam in lams if lam is not None]
    assert len(seen) >= 4 and len(set(np.round(seen, 5))) == len(seen)
    lam = mix.sample(_key(seed=5), 8)[0].numpy()
    np.testing.assert_allclose([x for x in lams if x is not None],
                               [lam[i] for i, x in enumerate(lams) if x is not None], atol=1e-7)


@pytest.mark.parametrize("per", ["batch", "sample"])
def test_pure_function_of_key(per):
    mix = Mixup(alpha=1.0, num_classes=K, per=per)
    images, labels = _batch()
    first = mix(images, labels, _key(3, 4, 5))
    again = Mixup(alpha=1.0, num_classes=K, per=per)(images, labels, _key(3, 4, 5))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    for other in (_key(4, 4, 5), _key(3, 5, 5), _key(3, 4, 6)):
        out, _ = mix(images, labels, other)
        assert not np.array_equal(out.numpy(), first[0].numpy())


@pytest.mark.parametrize("alpha", [0.0, -1.0])
def test_alpha_zero_is_identity_with_one_hot_targets(alpha):
    mix = Mixup(alpha=alpha, num_classes=K)
    images, labels = _batch()
    out, targets = mix(images, labels, _key())
    np.testing.assert_array_equal(out.numpy(), images)
    onehot = np.eye(K, dtype=np.float32)[labels]
    np.testing.assert_array_equal(targets.numpy(), np.concatenate([onehot, onehot], 1))
    np.testing.assert_array_equal(paired_targets(labels, K).numpy(), targets.numpy())
    assert mix.describe() == f"no mixup (alpha {alpha:g})"


@pytest.mark.parametrize("alpha", [1.0, 0.2])
def test_lambda_distribution_is_beta(alpha):
    lam = Mixup(alpha, K, per="sample").sample(_key(seed=11), 4000)[0].numpy().astype(np.float64)
    assert np.all((lam >= 0) & (lam <= 1))
    var = 1 / (4 * (2 * alpha + 1))  # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1))
    assert abs(lam.mean() - 0.5) < 0.03
    assert abs(lam.var() - var) < 0.1 * var
    # Kolmogorov-Smirnov distance to the Beta(alpha, alpha) CDF (0.031: the 0.1% level)
    x = np.sort(lam)
    cdf = tf.math.betainc(alpha, alpha, tf.constant(x)).numpy()
    n = len(x)
    ks = max(np.max(np.arange(1, n + 1) / n - cdf), np.max(cdf - np.arange(n) / n))
    assert ks < 0.031
    # per batch: one lambda per key, the same distribution across batches
    mix = Mixup(alpha, K, per="batch")
    per_batch = np.array([mix.sample(_key(step=s), 4)[0].numpy() for s in range(300)])
    assert np.all(per_batch == per_batch[:, :1])
    assert abs(per_batch[:, 0].mean() - 0.5) < 0.06


def test_tiny_alpha_gives_lambdas_near_0_or_1_not_half():
    # TF's gamma sampler clamps tiny draws, which would make Ga / (Ga + Gb) exactly 0.5
    lam = Mixup(0.01, K, per="sample").sample(_key(seed=2), 4000)[0].numpy()
    assert np.all(np.isfinite(lam)) and np.all((lam >= 0) & (lam <= 1))
    assert np.mean(np.minimum(lam, 1 - lam) < 0.01) > 0.9
    assert np.sum(lam == 0.5) == 0


@pytest.mark.parametrize("per", ["batch", "sample"])
def test_runs_in_tf_data_map_same_as_eager(per):
    mix = Mixup(alpha=1.0, num_classes=K, per=per)
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 6, 4, 5, 3)).astype(np.float32)
    labels = rng.integers(0, K, size=(4, 6)).astype(np.int32)
    keys = np.array([[7, 0, s] for s in range(4)], np.int64)

    def fn(x, y, key):
        assert not tf.executing_eagerly()
        return mix(x, y, key)

    ds = tf.data.Dataset.from_tensor_slices((images, labels, keys))
    ds = ds.map(fn, num_parallel_calls=2, deterministic=True)
    assert ds.element_spec[1].shape.as_list() == [6, 2 * K]
    for s, (x, t) in enumerate(ds):
        ex, et = mix(images[s], labels[s], tf.constant(keys[s]))
        np.testing.assert_array_equal(x.numpy(), ex.numpy())
        np.testing.assert_array_equal(t.numpy(), et.numpy())


def test_out_of_range_label_fails():
    images, labels = _batch()
    labels[0] = K
    with pytest.raises(tf.errors.InvalidArgumentError):
        Mixup(1.0, K)(images, labels, _key())


def _ce(p, y):
    return -np.log(np.clip(p[np.arange(len(y)), y], keras.config.epsilon(), 1.0))


def test_loss_is_lam_weighted_crossentropy_of_both_labels():
    rng = np.random.default_rng(1)
    b = 16
    logits = rng.normal(size=(b, K)) * 2
    probs = (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)
    y_a, y_b = rng.integers(0, K, b), rng.integers(0, K, b)
    lam = rng.uniform(size=b)
    eye = np.eye(K)
    y_true = np.concatenate([lam[:, None] * eye[y_a] + (1 - lam[:, None]) * eye[y_b], eye[y_a]],
                            1).astype(np.float32)
    expected = lam * _ce(probs.astype(np.float64), y_a) + (1 - lam) * _ce(probs, y_b)
    loss = MixedTargetCrossentropy(reduction=None)(y_true, probs).numpy()
    np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6)
    mean = MixedTargetCrossentropy()(y_true, probs).numpy()
    np.testing.assert_allclose(mean, expected.mean(), rtol=1e-5)
    assert mean == keras.losses.CategoricalCrossentropy()(y_true[:, :K], probs).numpy()
    from_logits = MixedTargetCrossentropy(from_logits=True)(y_true, logits.astype(np.float32))
    np.testing.assert_allclose(from_logits.numpy(), expected.mean(), rtol=1e-4)


def test_accuracy_uses_the_unmixed_labels():
    eye = np.eye(K, dtype=np.float32)
    # row 0: unmixed label 1, mixed target 0.3 * 1 + 0.7 * 2 (argmax 2), prediction 2 -> wrong
    # row 1: unmixed label 3, mixed target 0.4 * 3 + 0.6 * 4 (argmax 4), prediction 3 -> right
    y_true = np.stack([np.concatenate([0.3 * eye[1] + 0.7 * eye[2], eye[1]]),
                       np.concatenate([0.4 * eye[3] + 0.6 * eye[4], eye[3]])])
    y_pred = np.full((2, K), 0.01, np.float32)
    y_pred[0, [2, 1]] = [0.6, 0.3]
    y_pred[1, [3, 4]] = [0.6, 0.3]
    acc = MixedTargetAccuracy()
    acc.update_state(y_true, y_pred)
    assert acc.result().numpy() == 0.5
    assert keras.metrics.categorical_accuracy(y_true[:, :K], y_pred).numpy().tolist() == [1, 0]
    top1, top2 = MixedTargetTopK(k=1), MixedTargetTopK(k=2)
    top1.update_state(y_true, y_pred)
    top2.update_state(y_true, y_pred)
    assert top1.result().numpy() == 0.5 and top2.result().numpy() == 1.0
    assert MixedTargetTopK().name == "top5" and MixedTargetAccuracy().name == "accuracy"


def test_wrong_target_width_raises():
    with pytest.raises(ValueError, match="2 \\* 10 = 20 columns"):
        MixedTargetCrossentropy()(np.zeros((2, K), np.float32), np.full((2, K), 0.1, np.float32))
    with pytest.raises(ValueError, match="20 columns"):
        MixedTargetAccuracy().update_state(np.zeros((2, K + 1), np.float32),
                                           np.full((2, K), 0.1, np.float32))


def test_fit_with_mixed_batches_then_save_and_load(tmp_path):
    num_classes, batch = 6, 8
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4, 4, 3)).astype(np.float32)
    y = rng.integers(0, num_classes, 32).astype(np.int32)
    mix = Mixup(alpha=1.0, num_classes=num_classes)

    def mixed(step, images_labels):  # key (seed 3, epoch 0, step)
        key = tf.stack([tf.constant(3, tf.int64), tf.constant(0, tf.int64), step])
        return mix(*images_labels, key)

    train = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).enumerate().map(mixed)
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(batch).map(
        lambda images, labels: (images, paired_targets(labels, num_classes)))
    model = keras.Sequential([keras.Input((4, 4, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(num_classes, activation="softmax")])
    model.compile(optimizer="sgd", loss=MixedTargetCrossentropy(),
                  metrics=[MixedTargetAccuracy(), MixedTargetTopK(5)])
    history = model.fit(train, validation_data=val, epochs=1, verbose=0, shuffle=False).history
    assert set(history) == {"loss", "accuracy", "top5", "val_loss", "val_accuracy", "val_top5"}
    assert all(math.isfinite(v[0]) for v in history.values())

    # validation numbers are those of plain sparse labels
    probs = model.predict(x, verbose=0)
    expected = keras.losses.SparseCategoricalCrossentropy()(y, probs).numpy()
    evaluated = model.evaluate(val, verbose=0, return_dict=True)
    np.testing.assert_allclose(evaluated["loss"], expected, rtol=1e-5)
    np.testing.assert_allclose(evaluated["accuracy"], np.mean(probs.argmax(1) == y), atol=1e-6)

    path = str(tmp_path / "model.keras")
    model.save(path)
    loaded = keras.models.load_model(path)
    assert isinstance(loaded.loss, MixedTargetCrossentropy)
    reloaded = loaded.evaluate(val, verbose=0, return_dict=True)
    assert set(reloaded) == {"loss", "accuracy", "top5"}
    for name in reloaded:
        np.testing.assert_allclose(reloaded[name], evaluated[name], rtol=1e-6)


def test_config_and_describe():
    mix = Mixup(1, 200)
    assert mix.describe() == "mixup alpha 1 (one lambda per batch)"
    assert Mixup(0.2, 200, per="sample").describe() == "mixup alpha 0.2 (one lambda per sample)"
    assert mix.get_config() == {"alpha": 1.0, "num_classes": 200, "per": "batch"}
    assert Mixup.from_config(mix.get_config()).get_config() == mix.get_config()
    loss = MixedTargetCrossentropy(from_logits=True)
    assert MixedTargetCrossentropy.from_config(loss.get_config()).from_logits is True
    assert MixedTargetTopK.from_config(MixedTargetTopK(3).get_config()).k == 3


@pytest.mark.parametrize("kwargs, match", [
    (dict(alpha="1", num_classes=K), "Received: alpha='1'"),
    (dict(alpha=None, num_classes=K), "Received: alpha=None"),
    (dict(alpha=float("nan"), num_classes=K), "Received: alpha=nan"),
    (dict(alpha=float("inf"), num_classes=K), "Received: alpha=inf"),
    (dict(alpha=True, num_classes=K), "Received: alpha=True"),
    (dict(alpha=1.0), "Received: num_classes=None"),
    (dict(alpha=1.0, num_classes=0), "Received: num_classes=0"),
    (dict(alpha=1.0, num_classes=2.5), "Received: num_classes=2.5"),
    (dict(alpha=1.0, num_classes=K, per="pixel"), "Received: per='pixel'"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Mixup(**kwargs)


def test_bad_inputs_raise():
    images, labels = _batch()
    with pytest.raises(ValueError, match="float images"):
        Mixup(1.0, K)(images.astype(np.uint8), labels, _key())
    with pytest.raises(ValueError, match="labels of shape"):
        Mixup(1.0, K)(images, np.eye(K, dtype=np.int32)[labels], _key())
    with pytest.raises(ValueError, match="Received: k=0"):
        MixedTargetTopK(k=0)
