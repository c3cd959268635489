"""Every model family under the Keras backend that ``KERAS_BACKEND`` names (run by
tests/test_backends.py, one process per backend, since Keras picks its backend at import).

    KERAS_BACKEND=jax python tests/backend_smoke.py RESULT.json [--only NAME ... [layers]]

``--only`` limits the models (keys of ``MODELS``); the layer checks then run only when
``layers`` is among the names.

For a tiny instance of each family: build, compare the parameter count with TensorFlow's
(``TF_PARAMS``, measured under ``KERAS_BACKEND=tensorflow``), train 2 steps with ``model.fit``
on random numpy data (the project's coupled-decay SGD and paired-target loss and metrics),
save ``.keras``, reload with ``import tinynet; keras.models.load_model`` and compare the
predictions. Also: SpaceToDepth against a numpy reference (and ``tf.nn.space_to_depth`` on
TensorFlow), StochasticDepth's batch mode (dropped -> exactly the shortcut, kept -> shortcut +
branch, eagerly and compiled), the fused batch norm's error off TensorFlow, ``data_format=
"auto"``. Off TensorFlow, ``import tensorflow`` is refused as on a machine without it (a
meta-path hook keeps the stack of every attempt; none may come from tinynet). Writes a JSON report; exit status 0 even when a check fails (the
test reads the report), non-zero only when the script itself breaks.
"""
import importlib.abc
import importlib.machinery
import json
import os
import sys
import tempfile
import time
import traceback

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


class _TensorFlowWatch(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Off TensorFlow, makes ``import tensorflow`` fail as on a machine without TensorFlow (the
    GPU machine this must run on has none), keeping the stack of every import attempt: Keras'
    own optional probes (``module_utils.tensorflow.available``) then take their no-TensorFlow
    paths, and an attempt from tinynet's code is a failure the test names. ``find_spec`` probes
    (``importlib.util.find_spec``, e.g. torch._dynamo's) get a spec without an origin."""

    attempts = []

    def find_spec(self, name, path=None, target=None):
        if name == "tensorflow" or name.startswith("tensorflow."):
            return importlib.machinery.ModuleSpec(name, self)
        return None

    def create_module(self, spec):
        self.attempts.append("".join(traceback.format_stack(limit=30)[:-1]))
        raise ModuleNotFoundError(f"No module named {spec.name!r} (blocked by "
                                  f"tests/backend_smoke.py off the TensorFlow backend)",
                                  name=spec.name)

    def exec_module(self, module):  # never reached: create_module raises
        raise ModuleNotFoundError(module.__name__)


if os.environ.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
    sys.meta_path.insert(0, _TensorFlowWatch())

import numpy as np  # noqa: E402

import tinynet  # noqa: E402,F401  (registers tinynet's objects once keras is imported)
import keras  # noqa: E402

from tinynet.models import get_model  # noqa: E402
from tinynet.training.losses import MixedTargetAccuracy, MixedTargetCrossentropy  # noqa: E402
from tinynet.training.optimizers import make_optimizer  # noqa: E402

CLASSES = 5
# name: (registry name, builder arguments, input size); tiny widths, small inputs
MODELS = {
    # input (None, None, 3): SpaceToDepth on dynamic height and width (TensorFlow)
    "densenet_model1": ("densenet_model1", dict(width=1 / 32), 16),
    "densenet_model2": ("densenet_model2", dict(width=1 / 32, input_shape=(16, 16, 3)), 16),
    "resnet18_sd": ("resnet18", dict(width=1 / 16, variant="e", stochastic_depth=0.5, seed=1,
                                     weight_decay=1e-4, input_shape=(16, 16, 3)), 16),
    "cifar_resnet24": ("nyu_resnet24", dict(width=1 / 16, batch_norm="torch"), 32),
    "multi_resnet": ("multi_resnet", dict(depth=8, k=2, width=0.25, input_shape=(16, 16, 3),
                                          batch_norm="torch"), 16),
    "transfer_resnet18": ("transfer_resnet18", dict(weights=None, image_size=32,
                                                    input_shape=(16, 16, 3)), 16),
}
# count_params() of each under KERAS_BACKEND=tensorflow (Keras 3.15, TF 2.21): the others
# must build exactly the same variables
TF_PARAMS = {
    "densenet_model1": 17_629,
    "densenet_model2": 12_270,
    "resnet18_sd": 45_073,
    "cifar_resnet24": 20_369,
    "multi_resnet": 9_761,
    "transfer_resnet18": 11_188_677,
}


def _seed(seed):
    """``keras.utils.set_random_seed`` without its ``import tensorflow`` (it seeds TF too when
    TF is installed, whatever the backend)."""
    import random

    if keras.backend.backend() == "tensorflow":
        keras.utils.set_random_seed(seed)
        return
    from keras.src.backend.common import global_state

    random.seed(seed)
    np.random.seed(seed)
    global_state.set_global_attribute("global_random_seed", seed)
    if keras.backend.backend() == "torch":
        import torch

        torch.manual_seed(seed)


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _paired_targets(rng, n):
    labels = rng.integers(0, CLASSES, n)
    onehot = np.eye(CLASSES, dtype="float32")[labels]
    return np.concatenate([onehot, onehot], axis=1)


def check_model(key, folder):
    name, kwargs, size = MODELS[key]
    _seed(0)
    model = get_model(name, num_classes=CLASSES, **kwargs)
    params = model.count_params()
    # the PyTorch/Torch-origin models train as their papers' protocols do: torch.optim's SGD
    convention = "torch" if kwargs.get("batch_norm") == "torch" else "keras"
    model.compile(optimizer=make_optimizer({"name": "sgd", "learning_rate": 0.01,
                                            "momentum": 0.9, "nesterov": True,
                                            "weight_decay": 1e-4,
                                            "weight_decay_mode": "coupled",
                                            "convention": convention}),
                  loss=MixedTargetCrossentropy(), metrics=[MixedTargetAccuracy()])
    rng = np.random.default_rng(0)
    x = rng.random((4, size, size, 3)).astype("float32")
    y = _paired_targets(rng, 4)
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0, shuffle=False)
    loss = float(history.history["loss"][-1])
    path = os.path.join(folder, f"{key}.keras")
    model.save(path)
    # eager inference calls: one compiled train step per model is what the test pays for
    before = _numpy(model(x, training=False))
    loaded = keras.models.load_model(path)
    after = _numpy(loaded(x, training=False))
    return {"params": params, "tf_params": TF_PARAMS[key], "loss": loss,
            "finite": bool(np.isfinite(loss) and np.isfinite(before).all()),
            "max_abs_diff": float(np.max(np.abs(before - after))),
            "optimizer": type(loaded.optimizer).__name__,
            "batch_norm": _batch_norm_class(loaded)}


def _batch_norm_class(model):
    """The class name of the (first) BatchNormalization layer of ``model``, nested ones too."""
    for layer in model._flatten_layers(include_self=False, recursive=True):
        if isinstance(layer, keras.layers.BatchNormalization):
            return type(layer).__name__
    return None


def _numpy_space_to_depth(x, b):
    n, h, w, c = x.shape
    x = x.reshape(n, h // b, b, w // b, b, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(n, h // b, w // b, b * b * c)


def check_space_to_depth():
    from tinynet.layers import SpaceToDepth

    rng = np.random.default_rng(1)
    out = {}
    for b in (2, 3):
        x = rng.random((2, 6 * b, 4 * b, 5)).astype("float32")
        want = _numpy_space_to_depth(x, b)
        nhwc = keras.ops.convert_to_numpy(SpaceToDepth(b, data_format="channels_last")(x))
        nchw = keras.ops.convert_to_numpy(SpaceToDepth(b, data_format="channels_first")(
            np.transpose(x, (0, 3, 1, 2))))
        out[f"numpy_b{b}"] = bool(np.array_equal(nhwc, want)
                                  and np.array_equal(np.transpose(nchw, (0, 2, 3, 1)), want))
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            layer = SpaceToDepth(b)
            dynamic = tf.function(layer, input_signature=[
                tf.TensorSpec([None, None, None, 5], tf.float32)])
            ref = tf.nn.space_to_depth(x, b).numpy()
            out[f"tf_nn_b{b}"] = bool(np.array_equal(nhwc, ref)
                                      and np.array_equal(dynamic(x).numpy(), ref))
    return out


def check_stochastic_depth():
    """Batch mode: each output is exactly the shortcut (dropped; BN statistics unchanged) or
    shortcut + branch(x) (kept; statistics updated), eagerly and inside the backend's
    compiled function; both outcomes occur in 24 draws at p = 0.5."""
    from tinynet.layers import StochasticDepth

    _seed(0)
    inputs = keras.Input((4, 4, 3))
    h = keras.layers.Conv2D(3, 3, padding="same")(inputs)
    h = keras.layers.BatchNormalization(momentum=0.5)(h)
    branch = keras.Model(inputs, h)
    layer = StochasticDepth(branch, 0.5, mode="batch", seed=3)
    rng = np.random.default_rng(2)
    x = rng.random((2, 4, 4, 3)).astype("float32")
    shortcut = rng.random((2, 4, 4, 3)).astype("float32")
    layer([x, shortcut])  # build
    ref_branch = keras.ops.convert_to_numpy(branch(x, training=True))
    expect_kept = shortcut + ref_branch  # the same float32 addition the layer does
    moving = branch.get_layer(index=2).moving_mean

    results = {"eager": [], "compiled": []}
    bad = []
    for _ in range(12):
        before = keras.ops.convert_to_numpy(moving).copy()
        y = keras.ops.convert_to_numpy(layer([x, shortcut], training=True))
        after = keras.ops.convert_to_numpy(moving)
        if np.array_equal(y, shortcut):
            results["eager"].append("dropped")
            if not np.array_equal(before, after):
                bad.append("eager: dropped but the moving mean changed")
        elif np.allclose(y, expect_kept, rtol=0, atol=1e-6):  # JAX: the cond's branch is
            results["eager"].append("kept")                     # compiled even eagerly
            if np.array_equal(before, after):
                bad.append("eager: kept but the moving mean did not change")
        else:
            bad.append(f"eager: neither shortcut nor shortcut + branch (max diff to kept "
                       f"{np.max(np.abs(y - expect_kept))})")

    backend = keras.backend.backend()
    tv = [v.value for v in layer.trainable_variables]
    ntv = [v.value for v in layer.non_trainable_variables]
    if backend == "jax":
        import jax

        step = jax.jit(lambda tv, ntv, x, s: layer.stateless_call(tv, ntv, [x, s],
                                                                  training=True))
    elif backend == "tensorflow":  # stateless_call in a tf.function: tf.cond, state threaded
        import tensorflow as tf

        step = tf.function(lambda tv, ntv, x, s: layer.stateless_call(tv, ntv, [x, s],
                                                                      training=True))
    else:
        step = None
    if step is not None:
        for _ in range(12):
            y, new = step(tv, ntv, x, shortcut)
            y = keras.ops.convert_to_numpy(y)
            changed = any(not np.array_equal(keras.ops.convert_to_numpy(a),
                                             keras.ops.convert_to_numpy(b))
                          for a, b, v in zip(ntv, new, layer.non_trainable_variables)
                          if "moving" in v.path)
            if np.array_equal(y, shortcut):
                results["compiled"].append("dropped")
                if changed:
                    bad.append("compiled: dropped but the moving statistics changed")
            elif np.allclose(y, expect_kept, rtol=0, atol=1e-6):
                results["compiled"].append("kept")
                if not changed:
                    bad.append("compiled: kept but the moving statistics did not change")
            else:
                bad.append("compiled: neither shortcut nor shortcut + branch")
            ntv = list(new)
    seen = {k: sorted(set(v)) for k, v in results.items()}
    for k, v in results.items():
        if v and set(v) != {"dropped", "kept"}:
            bad.append(f"{k}: only {sorted(set(v))} in {len(v)} draws")
    return {"seen": seen, "problems": bad}


def check_backend_specifics():
    from tinynet.errors import TinynetError
    from tinynet.models.resnet import resolve_data_format

    out = {"auto_data_format": resolve_data_format("auto")}
    if keras.backend.backend() != "tensorflow":
        try:
            get_model("resnet18", width=1 / 16, batch_norm="fused", input_shape=(16, 16, 3))
            out["fused_error"] = None
        except TinynetError as error:
            out["fused_error"] = str(error)
    return out


def main(argv):
    result_path = argv[1]
    only = argv[argv.index("--only") + 1:] if "--only" in argv else list(MODELS) + ["layers"]
    report = {"backend": keras.backend.backend(), "models": {}, "errors": {}}
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        for key in [k for k in only if k != "layers"]:
            t0 = time.perf_counter()
            try:
                report["models"][key] = check_model(key, folder)
                report["models"][key]["seconds"] = round(time.perf_counter() - t0, 1)
            except Exception:  # noqa: BLE001 (reported, the test fails on it)
                report["errors"][key] = traceback.format_exc()
    for key, check in (("space_to_depth", check_space_to_depth),
                       ("stochastic_depth", check_stochastic_depth),
                       ("specifics", check_backend_specifics)):
        if "layers" not in only:
            break
        try:
            report[key] = check()
        except Exception:  # noqa: BLE001
            report["errors"][key] = traceback.format_exc()
    report["tensorflow_imported"] = "tensorflow" in sys.modules
    # attempts from tinynet's own code (Keras' optional probes are not tinynet's)
    report["tensorflow_import_attempts"] = len(_TensorFlowWatch.attempts)
    report["tinynet_tensorflow_imports"] = [
        stack for stack in _TensorFlowWatch.attempts
        if os.path.join(REPO, "tinynet", "") in stack or os.path.join(REPO, "tools", "") in stack]
    report["seconds"] = round(time.perf_counter() - start, 1)
    with open(result_path, "w") as f:
        json.dump(report, f, indent=1)


if __name__ == "__main__":
    main(sys.argv)
