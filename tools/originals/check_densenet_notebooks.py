"""Checks tinynet's DenseNet Model 1 and Model 2 (``tinynet/models/densenet.py``, seed 002)
against the transliteration of the authors' notebooks (``densenet_notebooks.py``: github.com/
ZohebAbai/Tiny-ImageNet-Challenge at cc39f57, ``TinyImageNet_Network_1.ipynb`` cells[5],
``TinyImageNet_Network_2.ipynb`` cells[16]), in float64 on the TensorFlow backend:

    python tools/originals/check_densenet_notebooks.py [--size 16] [--batch 2]

Both models are built at the notebooks' widths and 200 classes (the filter counts are literals
in the notebooks), on ``--size`` x ``--size`` inputs (Model 1 is fully convolutional; Model 2's
notebook takes ``img_height``/``img_width``). tinynet's weights are randomised (biases and
BatchNormalization's gamma, beta and moving statistics too, so that differences there show) and
copied into the transliteration with ``copy_weights``. Reported, as max |a - b| / max |b| with
``b`` the transliteration's: the inference and training-mode outputs on one fixed random batch;
the loss (Keras 2.2.4's categorical cross-entropy, ``keras224_categorical_crossentropy``, plus
``sum(model.losses)``, the notebook's regularisers); the gradient of that loss with respect to
every trainable weight (by kind: kernel, bias, gamma, beta; the worst variable named); the
moving statistics after that one training-mode forward. Also the parameter counts (against the
notebooks' printed ``model.summary()``) and the configuration differences of matched layers.

Then the same with ``keras2_bn=True`` (Keras 2.2.4's moving-statistics update,
``Keras224BatchNormalization``), whose outputs and gradients must still agree, and whose moving
statistics show how far Keras 3's update is from the one the notebooks ran; before it, a unit
check of that layer against TensorFlow's ``FusedBatchNormV3`` (the kernel Keras 2.2.4 called)
and a numpy zero-debiased average over two steps.

Exit status 1 when tinynet and the Keras 3 transliteration differ anywhere beyond ``TOL``
(parameters, outputs, losses, gradients, moving statistics).
"""
import argparse
import os
import sys

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

keras.config.set_floatx("float64")

from tinynet.models.densenet import densenet_model1, densenet_model2  # noqa: E402
from tools.originals.densenet_notebooks import (  # noqa: E402
    MODEL1_SUMMARY, MODEL2_SUMMARY, Keras224BatchNormalization, copy_weights, model1_original,
    model2_original)

TOL = 1e-9
EPSILON = 1e-7  # Keras 2.2.4's K.epsilon(), the clip of its categorical cross-entropy
CONFIG_IGNORED = {"name", "trainable", "dtype"}


def rel(a, b):
    """max |a - b| / max |b| (the absolute difference where b is all zero)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    scale = np.max(np.abs(b)) if b.size else 0.0
    diff = np.max(np.abs(a - b)) if a.size else 0.0
    return diff / scale if scale > 0 else diff


def keras224_categorical_crossentropy(y_true, y_pred):
    """Keras 2.2.4's ``categorical_crossentropy`` on probabilities (keras/backend/
    tensorflow_backend.py lines 3289-3295: rows normalised, clipped to [1e-7, 1 - 1e-7],
    ``-sum(t * log p)``), averaged over the batch as its ``compile`` loss was."""
    p = y_pred / tf.reduce_sum(y_pred, axis=-1, keepdims=True)
    p = tf.clip_by_value(p, EPSILON, 1.0 - EPSILON)
    return tf.reduce_mean(-tf.reduce_sum(y_true * tf.math.log(p), axis=-1))


def randomize(model, rng):
    """Random values for every weight but the kernels (kept as initialised): biases
    N(0, 0.1), gamma U(0.5, 1.5), beta N(0, 0.1), moving mean N(0, 0.1), moving variance
    U(0.5, 1.5)."""
    for w in model.weights:
        shape = tuple(w.shape)
        if w.name == "kernel":
            continue
        if w.name in ("gamma", "moving_variance"):
            value = rng.uniform(0.5, 1.5, shape)
        elif w.name in ("bias", "beta", "moving_mean"):
            value = rng.normal(0.0, 0.1, shape)
        else:
            raise ValueError(f"randomize: unexpected weight {w.path}")
        w.assign(value.astype(w.dtype))


def count(weights, shadow=()):
    return int(sum(np.prod(w.shape) for w in weights if w.name not in shadow))


def param_counts(model):
    """(total, trainable) with Keras224BatchNormalization's shadow weights left out, as Keras
    2.2.4's summary left TensorFlow's zero-debias variables out."""
    shadow = Keras224BatchNormalization.SHADOW_WEIGHTS
    return count(model.weights, shadow), count(model.trainable_weights, shadow)


def run(model, x, y):
    """Inference output, then one training-mode forward under a tape: its output, the
    cross-entropy, the regulariser sum, the gradients of their sum (by variable id)."""
    inference = model(x, training=False).numpy()
    with tf.GradientTape() as tape:
        out = model(x, training=True)
        ce = keras224_categorical_crossentropy(y, out)
        reg = tf.add_n(model.losses) if model.losses else tf.constant(0.0, tf.float64)
        loss = ce + reg
    grads = tape.gradient(loss, model.trainable_weights)
    return {"inference": inference, "training": out.numpy(), "ce": float(ce),
            "reg": float(reg), "n_losses": len(model.losses),
            "grads": {id(w): g.numpy() for w, g in zip(model.trainable_weights, grads)}}


def config_differences(src_model, dst_model):
    """Differing get_config() entries of the weighted layers copy_weights matched."""
    from tools.originals.densenet_notebooks import _weighted_layers
    lines = []
    for src, dst in zip(_weighted_layers(src_model), _weighted_layers(dst_model)):
        a, b = src.get_config(), dst.get_config()
        for key in sorted((set(a) | set(b)) - CONFIG_IGNORED):
            if a.get(key) != b.get(key):
                lines.append(f"{src.name} / {dst.name}: {key}: tinynet {a.get(key)!r}, "
                             f"original {b.get(key)!r}")
    return lines


def compare(label, tinynet_model, original, summary, x, y, rng):
    """Prints the comparison; returns the list of quantities beyond TOL."""
    print(f"\n== {label} ==")
    randomize(tinynet_model, rng)
    pairs = copy_weights(tinynet_model, original)
    t_counts, o_counts = param_counts(tinynet_model), param_counts(original)
    print(f"  parameters (total, trainable): tinynet {t_counts[0]:,} {t_counts[1]:,}; "
          f"transliteration {o_counts[0]:,} {o_counts[1]:,}; notebook summary "
          f"{summary[0]:,} {summary[1]:,} (non-trainable {summary[2]:,})")
    bad = [] if t_counts == o_counts == tuple(summary[:2]) else ["parameter counts"]
    diffs = config_differences(tinynet_model, original)
    print(f"  layer configuration differences ({len(diffs)}):")
    for line in diffs:
        print(f"    {line}")
    before = {id(d): d.numpy().copy() for _, d in pairs if not d.trainable}
    t, o = run(tinynet_model, x, y), run(original, x, y)
    print(f"  regularisation terms (model.losses): tinynet {t['n_losses']}, "
          f"transliteration {o['n_losses']}")
    print(f"  loss: cross-entropy {o['ce']:.6f}, regularisers {o['reg']:.6f} "
          f"(tinynet's regularisers {t['reg']:.6f})")
    rows = [("inference output", t["inference"], o["inference"]),
            ("training-mode output", t["training"], o["training"]),
            ("cross-entropy", t["ce"], o["ce"]),
            ("regulariser sum", t["reg"], o["reg"])]
    by_kind = {}
    for s, d in pairs:
        if d.trainable:
            a, b, kind = t["grads"][id(s)], o["grads"][id(d)], "gradient " + d.name
        else:
            a, b, kind = s.numpy(), d.numpy(), "after training forward, " + d.name
        n, worst, worst_at, diff, size = by_kind.get(kind, (0, -1.0, "", 0.0, 0.0))
        value = rel(a, b)
        by_kind[kind] = (n + 1, max(worst, value), s.path if value > worst else worst_at,
                         max(diff, float(np.max(np.abs(a - b)))),
                         max(size, float(np.max(np.abs(b)))))
    moved = max((rel(d.numpy(), before[id(d)]) for _, d in pairs if not d.trainable), default=0)
    print("  max |a - b| / max |b| (a tinynet, b transliteration; per variable, the worst), "
          "then max |a - b| and max |b| over the group:")
    for name, a, b in rows:
        value = rel(a, b)
        print(f"    {name:44s} {value:9.2e}   {np.max(np.abs(np.subtract(a, b))):9.2e} "
              f"{np.max(np.abs(b)):9.2e}")
        if value > TOL:
            bad.append(name)
    for kind, (n, value, where, diff, size) in sorted(by_kind.items()):
        print(f"    {kind + f' ({n})':44s} {value:9.2e}   {diff:9.2e} {size:9.2e}   "
              f"worst: {where}")
        if value > TOL:
            bad.append(kind)
    print(f"  (the training forward moved the moving statistics by up to {moved:.2e} of their "
          f"size)")
    return bad


def check_keras224_layer(rng):
    """Keras224BatchNormalization against FusedBatchNormV3 (float32, the kernel Keras 2.2.4's
    TensorFlow backend called) and a numpy zero-debiased average over two training steps."""
    print("\n== Keras224BatchNormalization (Keras 2.2.4's moving-statistics update) ==")
    momentum, eps = 0.99, 1e-3
    xs = [rng.normal(1.0, 2.0, (2, 3, 5, 4)), rng.normal(-1.0, 0.5, (2, 3, 5, 4))]
    layer = Keras224BatchNormalization(momentum=momentum, epsilon=eps)
    layer.build(xs[0].shape)
    layer.moving_mean.assign(rng.normal(0, 1, 4))  # loaded values: forgotten at the first step
    n = 2 * 3 * 5
    biased_m, biased_v = np.zeros(4), np.zeros(4)
    worst_fused, worst_rule = 0.0, 0.0
    for step, x in enumerate(xs, start=1):
        layer(x, training=True)
        _, _, fused_var, *_ = tf.raw_ops.FusedBatchNormV3(
            x=x.astype(np.float32), scale=np.ones(4, np.float32), offset=np.zeros(4, np.float32),
            mean=np.zeros(0, np.float32), variance=np.zeros(0, np.float32), epsilon=eps,
            data_format="NHWC", is_training=True)
        value = fused_var.numpy().astype(np.float64) * n / (n - (1.0 + eps))
        biased_m -= (biased_m - x.mean(axis=(0, 1, 2))) * (1 - momentum)
        biased_v -= (biased_v - value) * (1 - momentum)
        debias = 1 - momentum ** step
        worst_fused = max(worst_fused, rel(value, x.var(axis=(0, 1, 2)) * n / (n - 1)
                                           * n / (n - 1 - eps)))
        worst_rule = max(worst_rule, rel(layer.moving_mean.numpy(), biased_m / debias),
                         rel(layer.moving_variance.numpy(), biased_v / debias))
    print(f"  FusedBatchNormV3's batch variance = biased * n/(n-1): {worst_fused:.2e} "
          f"(float32 kernel)")
    print(f"  layer's moving statistics vs the zero-debiased numpy average (FusedBatchNormV3's "
          f"variance): {worst_rule:.2e} (float32 kernel)")
    return worst_rule < 1e-5


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=16, help="input height and width "
                        "(divisible by 8; default 16)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (default 2)")
    args = parser.parse_args(argv)
    rng = np.random.RandomState(0)
    x = rng.uniform(0.0, 1.0, (args.batch, args.size, args.size, 3))
    y = np.eye(200)[rng.randint(0, 200, args.batch)]
    bad = []
    size = dict(img_height=args.size, img_width=args.size)
    shape = (args.size, args.size, 3)
    for tag, keras2_bn in (("", False), (", keras2_bn=True", True)):
        if keras2_bn and not check_keras224_layer(np.random.RandomState(1)):
            bad.append("Keras224BatchNormalization")
        for label, build, original, summary in (
                ("Model 1", lambda: densenet_model1(), lambda: model1_original(
                    keras2_bn=keras2_bn), MODEL1_SUMMARY),
                ("Model 2", lambda: densenet_model2(input_shape=shape, bias_l2=False),
                 lambda: model2_original(keras2_bn=keras2_bn, **size), MODEL2_SUMMARY)):
            found = compare(f"{label}{tag} ({args.size}x{args.size} input, batch {args.batch}, "
                            f"float64)", build(), original(), summary, x, y,
                            np.random.RandomState(2))
            if keras2_bn:  # the moving statistics are expected to differ here
                found = [f for f in found if not f.startswith("after training forward")]
            bad.extend(f"{label}{tag}: {f}" for f in found)
            keras.backend.clear_session()
    print("\nbeyond tolerance %g: %s" % (TOL, "; ".join(bad) if bad else "nothing"))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
