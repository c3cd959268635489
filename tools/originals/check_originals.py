"""tinynet's seed 004 and seed 003 builders against the original code, in float64.

    /work/venv-torch/bin/python tools/originals/check_originals.py   (needs torch and TensorFlow)

Seed 004: ``tinynet.models.cifar_resnet.build_cifar_resnet`` against the original ``ResNet`` of
``nyu_models`` (a verbatim copy of NYU-ResNet-On-Steroids' models.py). Seed 003:
``tinynet.models.multi_resnet.build_multi_resnet`` against ``multi_resnet_torch7`` (the Lua of
masoudabd/multi-resnet transliterated). Each Keras model is built with ``batch_norm="torch"`` and
``classifier_activation=None`` (logits, as the originals return), its BN parameters, moving
statistics and dense bias set to random values, and every weight copied into the PyTorch module
(``copy_from_keras``). Then, on one random batch (8 x 32 x 32 x 3, labels 0-9):

    inference  ``model(x, training=False)`` vs ``module.eval()(x)``
    training   ``model(x, training=True)`` vs ``module.train()(x)`` (one pass each)
    grads      the mean cross-entropy's gradient w.r.t. every trainable weight, from that pass
               (``tf.GradientTape`` vs ``loss.backward()``), in PyTorch's layout
    stats      the BN moving mean/variance after that one training pass (Keras momentum 0.9 =
               PyTorch's 0.1; the variance updated with the unbiased batch variance in both)

Each line prints max |a - b| / max |b| (b the original's), the worst tensor of its kind. A last
line, a negative control, builds seed 004 with Keras' own BatchNormalization (biased moving
variance), whose "stats" must differ. Exit status 1 if any comparison exceeds 1e-10 (float64
agreement is ~1e-15 to 1e-13) or the control does not differ.
"""
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import torch  # noqa: E402

tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(1)
torch.set_num_threads(1)

import keras  # noqa: E402

import multi_resnet_torch7  # noqa: E402
import nyu_models  # noqa: E402
from tinynet.models.cifar_resnet import build_cifar_resnet  # noqa: E402
from tinynet.models.multi_resnet import build_multi_resnet  # noqa: E402

TOLERANCE = 1e-10
BATCH = 8


def relative_difference(a, b):
    """max |a - b| / max |b| (max |a - b| where b is all zero)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {b.shape}")
    scale = np.max(np.abs(b))
    difference = np.max(np.abs(a - b))
    return float(difference / scale) if scale > 0 else float(difference)


def randomize(pairs, rng):
    """Random BN gamma/beta/moving statistics and dense bias on the Keras side (the builders
    start them at 1/0/0/1/0, which would hide a swapped or missing copy)."""
    for variable, key, kind in pairs:
        if kind != "vector":
            continue
        size = variable.shape
        if key.endswith("running_var"):
            value = rng.uniform(0.5, 1.5, size)
        elif key.endswith("running_mean") or key.endswith("bias"):
            value = rng.normal(0.0, 0.2, size)
        else:  # BN gamma
            value = rng.uniform(0.5, 1.5, size)
        variable.assign(value)


def compare(label, keras_model, torch_model, module, rng):
    """The four comparisons of the module docstring; returns {comparison: relative difference}."""
    pairs = module.keras_torch_pairs(torch_model, keras_model)
    randomize(pairs, rng)
    module.copy_from_keras(torch_model, keras_model)
    x = rng.normal(size=(BATCH, 32, 32, 3))
    y = rng.integers(0, 10, size=BATCH)
    x_torch = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    y_torch = torch.from_numpy(y)

    results = {}
    torch_model.eval()
    with torch.no_grad():
        reference = torch_model(x_torch).numpy()
    results["inference"] = relative_difference(keras_model(x, training=False).numpy(), reference)

    trainable = [(v, key, kind) for v, key, kind in pairs if v.trainable]
    with tf.GradientTape() as tape:
        logits = keras_model(x, training=True)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.constant(y), logits=logits))
    grads = tape.gradient(loss, [v for v, _, _ in trainable])

    torch_model.train()
    torch_model.zero_grad(set_to_none=True)
    torch_logits = torch_model(x_torch)
    torch_loss = torch.nn.functional.cross_entropy(torch_logits, y_torch)
    torch_loss.backward()
    results["training"] = relative_difference(logits.numpy(), torch_logits.detach().numpy())
    results["loss"] = relative_difference(loss.numpy(), torch_loss.detach().numpy())

    parameters = dict(torch_model.named_parameters())
    missing = [key for (_, key, _), g in zip(trainable, grads) if g is None]
    if missing:
        raise ValueError(f"{label}: no Keras gradient for {missing}")
    results["grads"] = max(
        relative_difference(module.to_torch_layout(g.numpy(), kind), parameters[key].grad)
        for (_, key, kind), g in zip(trainable, grads))

    state = torch_model.state_dict()
    statistics = [(v, key) for v, key, _ in pairs if not v.trainable]
    results["stats"] = max(relative_difference(v.numpy(), state[key]) for v, key in statistics)

    worst = max(results.values())
    print(f"{label:<52s} " + "  ".join(f"{k} {v:.1e}" for k, v in results.items())
          + f"  ({len(trainable)} weights, {len(statistics)} statistics)"
          + ("" if worst <= TOLERANCE else "  <-- DIFFERS"), flush=True)
    return results


def main():
    keras.config.set_floatx("float64")
    torch.set_default_dtype(torch.float64)
    keras.utils.set_random_seed(0)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    worst = 0.0

    # seed 004: (configuration label, tinynet arguments, original arguments)
    nyu_cases = [
        ("seed 004 B=1,1,1,1 C=8,16,16,32",
         dict(blocks=(1, 1, 1, 1), channels=(8, 16, 16, 32)),
         dict(blocks=(1, 1, 1, 1), channels=(8, 16, 16, 32))),
        ("seed 004 ResNet-24 (B=3,3,2,3) width 0.125",
         dict(blocks=(3, 3, 2, 3), channels=(64, 128, 128, 256), width=0.125),
         dict(blocks=(3, 3, 2, 3), channels=(8, 16, 16, 32))),
    ]
    for label, ours, theirs in nyu_cases:
        keras_model = build_cifar_resnet(**ours, batch_norm="torch", classifier_activation=None)
        torch_model = nyu_models.build_original(**theirs)
        results = compare(label, keras_model, torch_model, nyu_models, rng)
        worst = max(worst, *results.values())

    # seed 003: (label, build_multi_resnet arguments, transliteration)
    t7 = multi_resnet_torch7
    multi_cases = [
        ("seed 003 basic depth 8 k=2 type A width 0.25",
         dict(depth=8, k=2), lambda: t7.mpreresnet(8, 2, "A", width=0.25)),
        ("seed 003 basic depth 14 k=2 type A width 0.25",
         dict(depth=14, k=2), lambda: t7.mpreresnet(14, 2, "A", width=0.25)),
        ("seed 003 basic depth 14 k=2 type B width 0.25",
         dict(depth=14, k=2, shortcut="B"), lambda: t7.mpreresnet(14, 2, "B", width=0.25)),
        ("seed 003 bottleneck depth 11 k=2 width 0.25",
         dict(depth=11, k=2, block="bottleneck"), lambda: t7.multi_resnet(11, 2, width=0.25)),
        ("seed 003 bottleneck depth 20 k=2 width 0.25",
         dict(depth=20, k=2, block="bottleneck"), lambda: t7.multi_resnet(20, 2, width=0.25)),
    ]
    for label, ours, build in multi_cases:
        keras_model = build_multi_resnet(**ours, width=0.25, batch_norm="torch",
                                         classifier_activation=None)
        results = compare(label, keras_model, build(), t7, rng)
        worst = max(worst, *results.values())

    # negative control: Keras' own BatchNormalization keeps the biased variance, so the moving
    # variance must differ from the original's after one training pass (by ~1/(n - 1) relative
    # on the last stage's 4x4 maps x 8 images); it shows that "stats" can fail
    keras_model = build_cifar_resnet(**nyu_cases[0][1], batch_norm="keras",
                                     classifier_activation=None)
    torch_model = nyu_models.build_original(**nyu_cases[0][2])
    control = compare("control: seed 004 batch_norm='keras' (stats differ)", keras_model,
                      torch_model, nyu_models, rng)
    if control["stats"] <= TOLERANCE:
        print("the negative control did not differ: the statistics comparison is broken")
        worst = max(worst, 1.0)

    print(f"worst relative difference {worst:.1e} (tolerance {TOLERANCE:.0e})")
    return 0 if worst <= TOLERANCE else 1


if __name__ == "__main__":
    sys.exit(main())
