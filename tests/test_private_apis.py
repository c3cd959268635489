"""Every private Keras/TensorFlow API tinynet relies on, in one table, each checked against the
installed Keras/TensorFlow; and the Keras/TensorFlow versions setup.py allows.

Private means: an underscore attribute of a Keras/TensorFlow object (``model._symbolic_build``),
or anything imported from Keras' or TensorFlow's internal modules (``keras.src``,
``tensorflow.python``, ``tf.compat``, ``__internal__``). A Keras or TensorFlow release may
rename, move or change any of these without notice; when one does, the entry's test here fails,
naming the API, instead of a training run failing somewhere inside ``fit``.

The scan tests keep the table complete and current: a private name (``x._name``,
``getattr(x, "_name")``) or an internal import in tinynet/, tools/ or experiments/ that is
neither tinynet's own nor listed here fails, naming the file and line; so does a tinynet
subclass of a Keras class that touches a private name of its Keras base, and an entry whose
listed file no longer uses it.

Raising a bound in setup.py: install the new versions, run this file, fix or update the table.
"""
import ast
import dataclasses
import functools
import importlib
import inspect
import pkgutil
import textwrap
import types
from pathlib import Path

import keras
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCANNED = ("tinynet", "tools", "experiments")
BOUNDED = ("keras", "tensorflow")  # the packages setup.py pins to the tested minor release


def _tensorflow_backend():
    if keras.backend.backend() != "tensorflow":
        pytest.skip("checks the TensorFlow backend's trainer; the backend here is "
                    f"{keras.backend.backend()}")
    import tensorflow as tf
    return tf


def _tf_trainer():
    from keras.src.backend.tensorflow import trainer
    return trainer


def _params(fn):
    return list(inspect.signature(fn).parameters)


def _global_names(obj):
    """Every global/attribute name the code of ``obj`` (a function or class, nested functions
    included) looks up: what it calls, independent of how its source is formatted."""
    codes = []
    if isinstance(obj, type):
        for value in vars(obj).values():
            value = getattr(value, "__func__", value)
            if isinstance(value, property):
                value = value.fget
            if isinstance(value, types.FunctionType):
                codes.append(inspect.unwrap(value).__code__)
    else:
        codes.append(inspect.unwrap(obj).__code__)
    names = set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    return names


def _compiled_model():
    """Dense(5) -> Dense(3, softmax), compiled the way tinynet compiles its paired-target runs
    (its loss and accuracy), not yet built."""
    from tinynet.training.losses import MixedTargetAccuracy, MixedTargetCrossentropy

    inputs = keras.Input((4,))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(5)(inputs))
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.SGD(0.1), loss=MixedTargetCrossentropy(),
                  metrics=[MixedTargetAccuracy()])
    return model


def _batch_spec():
    import tensorflow as tf
    return tf.TensorSpec((None, 4), "float32"), tf.TensorSpec((None, 6), "float32")


# --- the checks, one per entry of PRIVATE_APIS -------------------------------------------------

def check_symbolic_build(monkeypatch, tmp_path):
    assert "data_batch" in _params(keras.Model._symbolic_build)
    model = _compiled_model()
    before = len(model.metrics_variables)  # the loss tracker's
    model._symbolic_build(data_batch=_batch_spec())  # a tf.data element_spec, as tinynet passes
    assert model.built and model.optimizer.built
    # RestoreMetrics writes the compiled metrics' totals right after this build
    assert len(model.metrics_variables) > before


def check_maybe_symbolic_build(monkeypatch, tmp_path):
    trainer = _tf_trainer()
    trainer_cls = trainer.TensorFlowTrainer
    # tinynet's replacement takes exactly these keywords and forwards data_batch=
    assert _params(trainer_cls._maybe_symbolic_build) == ["self", "iterator", "data_batch"]
    # fit/evaluate reach it through the instance (so the per-model replacement is the one called)
    assert "_maybe_symbolic_build" in _global_names(trainer_cls.fit)
    assert "_maybe_symbolic_build" in _global_names(trainer_cls.evaluate)
    # ... with the epoch iterator, which yields (step, step, iterator of batches)
    tf = _tensorflow_backend()
    from tinynet.training.distribute import prepare_model

    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = _compiled_model()
    prepare_model(model, strategy)
    assert "_maybe_symbolic_build" in vars(model)  # tinynet's replacement is installed
    epochs = trainer.TFEpochIterator(distribute_strategy=strategy,
                                     x=np.zeros((4, 4), "float32"),
                                     y=np.zeros((4, 6), "float32"), batch_size=2)
    before = len(model.metrics_variables)
    model._maybe_symbolic_build(iterator=epochs)
    assert model.built and model.optimizer.built and len(model.metrics_variables) > before


def check_distribute_strategy(monkeypatch, tmp_path):
    assert "_distribute_strategy" in _global_names(_tf_trainer().TensorFlowTrainer.__init__)
    tf = _tensorflow_backend()
    assert _compiled_model()._distribute_strategy is None  # prepare_model: leave it alone
    strategy = tf.distribute.OneDeviceStrategy("/cpu:0")
    with strategy.scope():
        model = _compiled_model()
    assert model._distribute_strategy is strategy


def check_collective_all_reduce_multi_worker(monkeypatch, tmp_path):
    trainer = _tf_trainer()
    fn = trainer._collective_all_reduce_multi_worker
    assert callable(fn) and _params(fn) == ["strategy"]
    tf = _tensorflow_backend()
    assert fn(tf.distribute.get_strategy()) is False
    assert fn(tf.distribute.OneDeviceStrategy("/cpu:0")) is False


def check_reduce_per_replica(monkeypatch, tmp_path):
    trainer = _tf_trainer()
    assert _params(trainer.reduce_per_replica) == ["values", "strategy", "reduction"]
    # the trainer calls it as a module global, so replacing trainer.reduce_per_replica reaches
    # the train/test steps
    assert "reduce_per_replica" in _global_names(trainer.TensorFlowTrainer)
    tf = _tensorflow_backend()
    from tinynet.training import distribute

    original = trainer.reduce_per_replica
    monkeypatch.setattr(trainer, "reduce_per_replica", original)  # restored after the test
    monkeypatch.setattr(distribute, "_PATCHED", [])
    distribute._patch_multiworker_metrics()
    assert trainer.reduce_per_replica is not original
    value = trainer.reduce_per_replica(tf.constant(2.5), tf.distribute.get_strategy(), "auto")
    assert float(value) == 2.5


def check_flatten_layers(monkeypatch, tmp_path):
    assert {"include_self", "recursive"} <= set(_params(keras.layers.Layer._flatten_layers))
    inner = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), keras.layers.Dense(2)])
    outer = keras.Sequential([keras.Input((3,)), inner, keras.layers.Dense(1)])
    layers = list(outer._flatten_layers(include_self=False, recursive=True))
    assert outer not in layers and inner in layers
    assert len(layers) == len({id(layer) for layer in layers})  # each once
    assert sum(isinstance(layer, keras.layers.Dense) for layer in layers) == 3


def check_learning_rate(monkeypatch, tmp_path):
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build([keras.Variable(np.zeros(2, "float32"))])
    assert isinstance(optimizer._learning_rate, keras.Variable)
    optimizer.learning_rate = 0.05  # what ScheduleCallback does every epoch/batch
    assert np.isclose(float(keras.ops.convert_to_numpy(optimizer._learning_rate)), 0.05)
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    assert keras.optimizers.SGD(schedule)._learning_rate is schedule
    # precision.inner_optimizer: the optimizer holding the lr under loss scaling
    scaled = keras.optimizers.LossScaleOptimizer(keras.optimizers.SGD(0.1))
    assert isinstance(scaled.inner_optimizer, keras.optimizers.SGD)


def check_trainable_variables(monkeypatch, tmp_path):
    variables = [keras.Variable(np.zeros(2, "float32")), keras.Variable(np.ones(3, "float32"))]
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(variables)
    assert [id(v) for v in optimizer._trainable_variables] == [id(v) for v in variables]
    # CoupledWeightDecay overrides apply() with Keras' signature
    assert _params(keras.optimizers.Optimizer.apply) == ["self", "grads", "trainable_variables"]


def check_use_weight_decay(monkeypatch, tmp_path):
    assert _params(keras.optimizers.Optimizer._use_weight_decay) == ["self", "variable"]
    kernel = keras.Variable(np.zeros((2, 2), "float32"), name="kernel")
    bias = keras.Variable(np.zeros(2, "float32"), name="bias")
    optimizer = keras.optimizers.SGD(0.1, weight_decay=1e-4)
    optimizer.exclude_from_weight_decay(var_names=["bias"])
    optimizer.build([kernel, bias])

    def asked(variable):  # what CoupledWeightDecay._decays passes (TensorFlow: the tf.Variable)
        return variable.value if keras.backend.backend() == "tensorflow" else variable

    assert optimizer._use_weight_decay(asked(kernel)) is True
    assert optimizer._use_weight_decay(asked(bias)) is False


def check_get_variable_index(monkeypatch, tmp_path):
    assert _params(keras.optimizers.Optimizer._get_variable_index) == ["self", "variable"]
    # the Torch* optimizers override update_step with Keras' signature
    assert _params(keras.optimizers.Optimizer.update_step) == [
        "self", "gradient", "variable", "learning_rate"]
    variables = [keras.Variable(np.zeros(2, "float32")), keras.Variable(np.ones(3, "float32"))]
    optimizer = keras.optimizers.SGD(0.1)
    optimizer.build(variables)
    assert [optimizer._get_variable_index(v) for v in variables] == [0, 1]


def check_batch_norm_moments(monkeypatch, tmp_path):
    assert _params(keras.layers.BatchNormalization._moments) == ["self", "inputs", "mask"]
    x = np.random.default_rng(0).normal(size=(4, 3, 3, 2)).astype("float32")
    layer = keras.layers.BatchNormalization()
    layer.build(x.shape)
    mean, variance = layer._moments(keras.ops.convert_to_tensor(x), None)
    np.testing.assert_allclose(np.ravel(mean), x.mean(axis=(0, 1, 2)), rtol=1e-5, atol=1e-6)
    # the biased batch variance, which TorchBatchNormalization rescales by n / (n - 1)
    np.testing.assert_allclose(np.ravel(variance), x.var(axis=(0, 1, 2)), rtol=1e-5)


def check_reduce_lr_reset(monkeypatch, tmp_path):
    cls = keras.callbacks.ReduceLROnPlateau
    assert _params(cls._reset) == ["self"]
    callback = cls()
    callback.wait, callback.best, callback.cooldown_counter = 3, 0.5, 2
    callback._reset()
    assert (callback.wait, callback.best, callback.cooldown_counter) == (0, None, 0)
    # PlateauWindow checkpoints exactly the state on_epoch_end works with
    assert {"wait", "best", "cooldown_counter"} <= _global_names(cls.on_epoch_end)


def check_metric_direction(monkeypatch, tmp_path):
    assert keras.metrics.Accuracy()._direction == "up"  # Keras' own metrics still carry it
    model = _compiled_model()
    model._symbolic_build(data_batch=_batch_spec())
    # ReduceLROnPlateau(monitor="val_accuracy") in "auto" mode (papers/denresnet.py) learns
    # from MixedTargetAccuracy._direction that accuracy is maximised; without it, it raises
    callback = keras.callbacks.ReduceLROnPlateau(monitor="val_accuracy")
    callback.set_model(model)
    callback.on_epoch_end(0, {"val_accuracy": 0.5})
    assert bool(callback.monitor_op(1.0, 0.0)) and not bool(callback.monitor_op(0.0, 1.0))


def check_keras_history(monkeypatch, tmp_path):
    inputs = keras.Input((4,))
    last = keras.layers.Dense(2)
    model = keras.Model(inputs, last(keras.layers.Dense(3)(inputs)))
    assert model.outputs[0]._keras_history.operation is last


def check_in_stateless_scope(monkeypatch, tmp_path):
    from keras.src.backend.common.stateless_scope import in_stateless_scope

    assert _params(in_stateless_scope) == []
    assert not in_stateless_scope()
    with keras.StatelessScope():
        assert in_stateless_scope()


def check_keras_home(monkeypatch, tmp_path):
    from keras.src.backend.config import keras_home
    from keras.src.utils import file_utils

    assert _params(keras_home) == []
    assert isinstance(keras_home(), str) and keras_home()
    assert "keras_home" in _global_names(file_utils.get_file)  # where get_file puts its files


def check_float_operation_profile(monkeypatch, tmp_path):
    """The graph profiler still counts a matrix product as 2 x its multiply-adds (and the
    convolution the same way), which tinynet.projections' FLOPs rest on."""
    from tinynet.models.flops import forward_flops

    dense = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, use_bias=False)])
    assert forward_flops(dense, (4,)) == 2 * 4 * 3
    conv = keras.Sequential([keras.Input((5, 5, 2)),
                             keras.layers.Conv2D(3, 3, padding="same", use_bias=False)])
    assert forward_flops(conv, (5, 5, 2)) == 2 * 5 * 5 * 3 * 3 * 3 * 2


def check_global_random_seed(monkeypatch, tmp_path):
    from keras.src.backend.common import global_state
    from keras.src.utils import rng_utils

    assert rng_utils.GLOBAL_RANDOM_SEED == "global_random_seed"  # the name benchmark.py sets
    previous = global_state.get_global_attribute("global_random_seed")
    try:
        global_state.set_global_attribute("global_random_seed", 1234)
        assert rng_utils.get_random_seed() == 1234
    finally:
        global_state.set_global_attribute("global_random_seed", previous)


def check_summary_pb2(monkeypatch, tmp_path):
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2
    from tensorflow.core.util import event_pb2

    metadata = summary_pb2.SummaryMetadata()
    metadata.plugin_data.plugin_name = "scalars"  # as tensorboard_log._metadata builds it
    metadata.data_class = summary_pb2.DATA_CLASS_SCALAR
    assert summary_pb2.DATA_CLASS_TENSOR != summary_pb2.DATA_CLASS_SCALAR
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        assert tf.summary.write("lr", tf.constant(0.5), step=3, metadata=metadata)
    writer.close()
    written = [event_pb2.Event.FromString(record.numpy())
               for path in tmp_path.iterdir() for record in tf.data.TFRecordDataset(str(path))]
    values = [v for event in written for v in event.summary.value if v.tag == "lr"]
    assert len(values) == 1
    assert values[0].metadata.plugin_data.plugin_name == "scalars"
    assert values[0].metadata.data_class == summary_pb2.DATA_CLASS_SCALAR


# --- the table ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class PrivateAPI:
    api: str  # what is used, as Keras/TensorFlow spell it
    files: tuple  # where (paths in the repository)
    why: str
    check: object  # a function(monkeypatch, tmp_path): fails when the installed Keras/TF differs
    names: tuple = ()  # the private attribute names as the code spells them (``x.<name>``)
    imports: tuple = ()  # the internal modules/objects the code imports (dotted)


DISTRIBUTE = "tinynet/training/distribute.py"
TF_TRAINER = "keras.src.backend.tensorflow.trainer"

PRIVATE_APIS = (
    PrivateAPI("keras.Model._symbolic_build(data_batch=)",
               ("tinynet/training/runner.py", "tinynet/training/session.py"),
               "builds model, compiled metrics and optimizer from the batch spec before fit: a "
               "resumed epoch restores the metric totals into them; the in-step input work "
               "changes the spec the model sees",
               check_symbolic_build, names=("_symbolic_build",)),
    PrivateAPI("TensorFlowTrainer._maybe_symbolic_build(iterator=, data_batch=)", (DISTRIBUTE,),
               "replaced per model so that multi-worker fit builds from one replica's share of "
               "the first batch (Keras' strategy.reduce of it fails, keras-team/keras#20585)",
               check_maybe_symbolic_build, names=("_maybe_symbolic_build",)),
    PrivateAPI("TensorFlowTrainer._distribute_strategy", (DISTRIBUTE,),
               "prepare_model leaves a model built outside a strategy scope alone",
               check_distribute_strategy, names=("_distribute_strategy",)),
    PrivateAPI(f"{TF_TRAINER}._collective_all_reduce_multi_worker(strategy)", (DISTRIBUTE,),
               "the patched reduce_per_replica changes only the multi-worker case",
               check_collective_all_reduce_multi_worker,
               names=("_collective_all_reduce_multi_worker",), imports=(TF_TRAINER,)),
    PrivateAPI(f"{TF_TRAINER}.reduce_per_replica(values, strategy, reduction)", (DISTRIBUTE,),
               "wrapped (--strategy multiworker) so that scalar metrics reach strategy.reduce "
               "as one-element vectors",
               check_reduce_per_replica, imports=(TF_TRAINER,)),
    PrivateAPI("keras.layers.Layer._flatten_layers(include_self, recursive)", (DISTRIBUTE,),
               "every nested layer once: --sync-bn finds each BatchNormalization",
               check_flatten_layers, names=("_flatten_layers",)),
    PrivateAPI("keras.optimizers.Optimizer._learning_rate", ("tinynet/training/callbacks.py",),
               "ScheduleCallback refuses an optimizer whose lr is already a schedule",
               check_learning_rate, names=("_learning_rate",)),
    PrivateAPI("keras.optimizers.Optimizer._trainable_variables",
               ("tinynet/training/coupled.py",),
               "CoupledWeightDecay.apply(grads) without variables pairs grads with the "
               "optimizer's own list, as Keras' apply does",
               check_trainable_variables, names=("_trainable_variables",)),
    PrivateAPI("keras.optimizers.Optimizer._get_variable_index(variable)",
               ("tinynet/training/torch_optimizers.py",),
               "the Torch* optimizers find a variable's slots in update_step, as Keras' own "
               "optimizers do",
               check_get_variable_index, names=("_get_variable_index",)),
    PrivateAPI("keras.layers.BatchNormalization._moments(inputs, mask)",
               ("tinynet/layers/torch_batch_norm.py", "tools/originals/densenet_notebooks.py"),
               "TorchBatchNormalization (and the harness's Keras 2.2.4 BatchNormalization) take "
               "the batch moments as Keras computes them (synchronized across replicas too) and "
               "change only the moving averages",
               check_batch_norm_moments, names=("_moments",)),
    PrivateAPI("keras.optimizers.Optimizer._use_weight_decay(variable)",
               ("tinynet/training/coupled.py",),
               "coupled weight decay excludes the variables Keras' exclude_from_weight_decay "
               "excludes (same decision, same cache)",
               check_use_weight_decay, names=("_use_weight_decay",)),
    PrivateAPI("keras.callbacks.ReduceLROnPlateau._reset()", ("tinynet/training/callbacks.py",),
               "PlateauWindow resets wait/best/cooldown when its window opens instead of in "
               "on_train_begin (state survives a resume)",
               check_reduce_lr_reset, names=("_reset",)),
    PrivateAPI("keras.metrics.Metric._direction", ("tinynet/training/losses.py",),
               "MixedTargetAccuracy/TopK set it to 'up' so that ReduceLROnPlateau/EarlyStopping "
               "monitoring 'val_accuracy' in auto mode maximise it",
               check_metric_direction, names=("_direction",)),
    PrivateAPI("KerasTensor._keras_history.operation", ("tinynet/training/precision.py",),
               "output_layer: the layer computing a functional model's output (float32 "
               "classifier under mixed precision)",
               check_keras_history, names=("_keras_history",)),
    PrivateAPI("keras.src.backend.common.stateless_scope.in_stateless_scope()",
               ("tinynet/layers/stochastic_depth.py",),
               "StochasticDepth threads the branch's state through the cond inside "
               "stateless_call (falls back to False if the import fails)",
               check_in_stateless_scope,
               imports=("keras.src.backend.common.stateless_scope.in_stateless_scope",)),
    PrivateAPI("keras.src.backend.config.keras_home()",
               ("tinynet/models/transfer.py", "tinynet/models/torchvision_weights.py"),
               "where keras.utils.get_file keeps ImageNet weights, and tinynet the converted "
               "torchvision ones (falls back to the documented default if the import fails)",
               check_keras_home, imports=("keras.src.backend.config.keras_home",)),
    PrivateAPI("tf.compat.v1.profiler.profile(graph=, options=ProfileOptionBuilder."
               "float_operation())", ("tinynet/models/flops.py",),
               "counts the forward FLOPs of the papers' models for the projected GPU times "
               "(TensorFlow 2 has no public static FLOP count)", check_float_operation_profile,
               imports=("tf.compat.v1.profiler.ProfileOptionBuilder.float_operation",
                        "tf.compat.v1.profiler.profile")),
    PrivateAPI("keras.src.backend.common.global_state.set_global_attribute("
               "'global_random_seed', seed)", ("tools/benchmark.py",),
               "seeds Keras' global SeedGenerator on JAX/torch without keras.utils."
               "set_random_seed (import failure tolerated)",
               check_global_random_seed, imports=("keras.src.backend.common.global_state",)),
    PrivateAPI("tensorflow.core.framework.summary_pb2 (SummaryMetadata, DATA_CLASS_SCALAR, "
               "DATA_CLASS_TENSOR)", ("tinynet/training/tensorboard_log.py",),
               "the scalar/text plugin metadata tf.summary.write needs for TensorBoard to show "
               "the curves, without the tensorboard package (not in TensorFlow's public tf.*)",
               check_summary_pb2,
               imports=("tensorflow.core.framework.summary_pb2",)),
)


def _entry_id(entry):
    return entry.api.split("(")[0].strip()


@pytest.mark.parametrize("entry", PRIVATE_APIS, ids=_entry_id)
def test_private_api_still_works(entry, monkeypatch, tmp_path):
    """The installed Keras/TensorFlow still has the private API, with the kind, signature and
    behaviour tinynet relies on."""
    entry.check(monkeypatch, tmp_path)


# --- the versions ------------------------------------------------------------------------------

def _setup_requirements():
    """install_requires of setup.py, by lower-case package name."""
    from packaging.requirements import Requirement

    tree = ast.parse((REPO / "setup.py").read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "setup":
            for keyword in node.keywords:
                if keyword.arg == "install_requires":
                    requirements = [Requirement(s) for s in ast.literal_eval(keyword.value)]
                    return {r.name.lower(): r for r in requirements}
    raise AssertionError("setup.py: no setup(install_requires=[...]) found")


def _installed_version(package):
    from packaging.version import Version

    module = importlib.import_module(package)
    return Version(module.__version__)


@pytest.mark.parametrize("package", BOUNDED)
def test_installed_version_within_setup_bounds(package):
    from packaging.version import Version

    requirement = _setup_requirements().get(package)
    assert requirement is not None, f"setup.py's install_requires does not list {package}"
    specifier = requirement.specifier
    installed = _installed_version(package)
    assert any(s.operator in ("<", "<=", "==", "~=") for s in specifier), \
        f"setup.py: {requirement} has no upper bound; tinynet is tested with {installed}"
    assert specifier.contains(installed, prereleases=True), \
        f"installed {package} {installed} is outside setup.py's {requirement}"
    next_minor = Version(f"{installed.major}.{installed.minor + 1}")
    assert not specifier.contains(next_minor, prereleases=True), \
        (f"setup.py's {requirement} allows {package} {next_minor}, newer than the {installed} "
         f"this file checked the private APIs against: install it and run this file first")


# --- the scans ---------------------------------------------------------------------------------

def _is_private(name):
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _is_internal(dotted):
    """A Keras/TensorFlow internal module or object (``keras.src...``, ``tensorflow.python...``,
    ``tf.compat...``, ``...__internal__...``)."""
    parts = dotted.split(".")
    if "__internal__" in parts or parts[0] == "tf_keras":
        return True
    if len(parts) < 2:
        return False
    if parts[0] == "keras":
        return parts[1] in ("src", "_tf_keras", "api")
    if parts[0] in ("tensorflow", "tf"):
        return parts[1] in ("python", "compat", "core", "compiler", "tsl", "_api")
    return False


def _dotted(node):
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        return ".".join([node.id] + parts[::-1])
    return None


class _Scanner(ast.NodeVisitor):
    """Private names used/defined and internal imports of one file."""

    def __init__(self, path):
        self.path = path
        self.uses = []  # (name, path, line)
        self.imports = []  # (dotted, path, line)
        self.own = set()  # private names this file defines
        self._inner = set()

    def visit_Attribute(self, node):
        if _is_private(node.attr):
            self.uses.append((node.attr, self.path, node.lineno))
        if id(node) not in self._inner:
            dotted = _dotted(node)
            if dotted and _is_internal(dotted):
                self.imports.append((dotted, self.path, node.lineno))
        self._inner.add(id(node.value))
        self.generic_visit(node)

    def visit_Call(self, node):
        func, args = node.func, node.args
        name = None
        if isinstance(func, ast.Name) and func.id in ("getattr", "hasattr", "setattr",
                                                       "delattr") and len(args) >= 2:
            name = args[1]
            if func.id == "setattr" and getattr(args[0], "id", None) in ("self", "cls"):
                if isinstance(name, ast.Constant) and isinstance(name.value, str):
                    self.own.add(name.value)
        elif isinstance(func, ast.Attribute) and func.attr in ("get", "pop", "setdefault") and \
                isinstance(func.value, ast.Attribute) and func.value.attr == "__dict__" and args:
            name = args[0]
        if isinstance(name, ast.Constant) and isinstance(name.value, str) and \
                _is_private(name.value):
            self.uses.append((name.value, self.path, node.lineno))
        self.generic_visit(node)

    def _define(self, node):
        if _is_private(node.name):
            self.own.add(node.name)
        self.generic_visit(node)

    visit_FunctionDef = visit_AsyncFunctionDef = visit_ClassDef = _define

    def _targets(self, targets):
        for target in targets:
            if isinstance(target, (ast.Tuple, ast.List)):
                self._targets(target.elts)
            elif isinstance(target, ast.Starred):
                self._targets([target.value])
            elif isinstance(target, ast.Name) and _is_private(target.id):
                self.own.add(target.id)
            elif isinstance(target, ast.Attribute) and _is_private(target.attr) and \
                    getattr(target.value, "id", None) in ("self", "cls"):
                self.own.add(target.attr)

    def visit_Assign(self, node):
        self._targets(node.targets)
        self.generic_visit(node)

    def visit_AnnAssign(self, node):
        self._targets([node.target])
        self.generic_visit(node)

    def visit_Import(self, node):
        for alias in node.names:
            if _is_internal(alias.name):
                self.imports.append((alias.name, self.path, node.lineno))
        self.generic_visit(node)

    def visit_ImportFrom(self, node):
        for alias in node.names:
            if alias.asname and _is_private(alias.asname):
                self.own.add(alias.asname)
            if node.module and not node.level and _is_internal(node.module):
                self.imports.append((f"{node.module}.{alias.name}", self.path, node.lineno))
        self.generic_visit(node)


@functools.lru_cache(maxsize=None)
def _scan():
    uses, imports, own = [], [], set()
    for folder in SCANNED:
        for path in sorted((REPO / folder).rglob("*.py")):
            rel = path.relative_to(REPO).as_posix()
            scanner = _Scanner(rel)
            scanner.visit(ast.parse(path.read_text(encoding="utf-8"), filename=rel))
            uses += scanner.uses
            imports += scanner.imports
            own |= scanner.own
    return uses, imports, own


def _by_name():
    table = {}
    for entry in PRIVATE_APIS:
        for name in entry.names:
            assert name not in table, f"{name} is in two entries of PRIVATE_APIS"
            table[name] = entry
    return table


def _import_entries(dotted):
    return [e for e in PRIVATE_APIS if dotted in e.imports]


def test_every_private_name_is_listed():
    """Each private attribute the package uses is tinynet's own or has an entry (with this
    file among the entry's files)."""
    uses, _, own = _scan()
    table = _by_name()
    problems = []
    for name, path, line in uses:
        entry = table.get(name)
        if entry is not None:
            if path not in entry.files:
                problems.append(f"{path}:{line}: uses .{name} ({entry.api}); add {path} to "
                                f"its entry's files in PRIVATE_APIS")
        elif name not in own:
            problems.append(f"{path}:{line}: uses .{name}, which nothing in {SCANNED} defines "
                            f"and PRIVATE_APIS does not list: a private Keras/TensorFlow API? "
                            f"add an entry with a check")
    assert not problems, "\n".join(problems)


def test_every_internal_import_is_listed():
    """Each import from (or use of) keras.src / tensorflow.python / tf.compat / __internal__
    has an entry (with this file among the entry's files)."""
    _, imports, _ = _scan()
    problems = []
    for dotted, path, line in imports:
        entries = _import_entries(dotted)
        if not entries:
            problems.append(f"{path}:{line}: uses {dotted}, a Keras/TensorFlow internal that "
                            f"PRIVATE_APIS does not list: add an entry with a check")
        elif not any(path in e.files for e in entries):
            problems.append(f"{path}:{line}: uses {dotted}; add {path} to the files of its "
                            f"entry in PRIVATE_APIS")
    assert not problems, "\n".join(problems)


def test_table_is_current():
    """Every entry is still used by every file it lists (a stale entry would hide nothing, but
    would make the table lie about what an upgrade must check)."""
    uses, imports, _ = _scan()
    used = {(name, path) for name, path, _ in uses} | {(d, path) for d, path, _ in imports}
    problems = []
    for entry in PRIVATE_APIS:
        assert entry.names or entry.imports, f"{entry.api}: names or imports must say what " \
                                             f"the scan looks for"
        assert callable(entry.check)
        for path in entry.files:
            if not any((key, path) in used for key in entry.names + entry.imports):
                problems.append(f"{entry.api}: {path} no longer uses it; remove the file (or "
                                f"the entry) from PRIVATE_APIS")
    assert not problems, "\n".join(problems)


def _source_names(cls):
    """The private ``self.``/``cls.`` attribute names in the source of ``cls``, and the private
    names defined in its body."""
    names = {n for n in vars(cls) if _is_private(n)}
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return names
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and _is_private(node.attr) and \
                getattr(node.value, "id", None) in ("self", "cls"):
            names.add(node.attr)
    return names


def _is_framework(cls):
    return cls.__module__.split(".")[0] in ("keras", "tensorflow")


# Python's own bookkeeping on classes, not Keras'
_PYTHON_CLASS_NAMES = {"_abc_impl", "_is_protocol", "_is_runtime_protocol"}


def _tinynet_modules():
    import tinynet

    modules = []
    for info in pkgutil.walk_packages(tinynet.__path__, "tinynet."):
        if info.name.endswith("__main__"):
            continue
        modules.append(importlib.import_module(info.name))
    return modules


def test_keras_subclasses_touch_only_listed_private_names():
    """A tinynet subclass of a Keras class (mixins included) that calls, reads, sets or
    overrides a private name its Keras bases also use relies on Keras internals (or collides
    with them): the name must be in PRIVATE_APIS, with the subclass' file."""
    table = _by_name()
    framework_names = {}
    seen, problems = set(), []
    for module in _tinynet_modules():
        for cls in vars(module).values():
            if not isinstance(cls, type) or cls in seen or \
                    not cls.__module__.startswith("tinynet"):
                continue
            seen.add(cls)
            bases = [b for b in cls.__mro__ if _is_framework(b)]
            if not bases:
                continue
            theirs = set()
            for base in bases:
                if base not in framework_names:
                    framework_names[base] = _source_names(base)
                theirs |= framework_names[base]
            for own in (c for c in cls.__mro__ if c.__module__.startswith("tinynet")):
                path = Path(inspect.getsourcefile(own)).resolve().relative_to(REPO).as_posix()
                for name in sorted((_source_names(own) & theirs) - _PYTHON_CLASS_NAMES):
                    entry = table.get(name)
                    if entry is None or path not in entry.files:
                        problems.append(
                            f"{path}: {own.__qualname__} uses self.{name}, which its Keras "
                            f"bases ({', '.join(b.__qualname__ for b in bases[:3])}) use too: "
                            f"list it in PRIVATE_APIS with {path}, or rename it")
    assert seen, "no tinynet classes found"
    assert not problems, "\n".join(sorted(set(problems)))
