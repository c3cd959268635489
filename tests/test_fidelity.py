"""The golden fixtures of tools/fidelity.py, replayed without torch: tinynet's update rules and
BatchNorm against what torch.optim and torch.nn.BatchNorm2d computed (float64).

The fixtures (tests/data/fidelity/) were written by ``tools/fidelity.py`` with torch 2.14.1; to
regenerate them where torch is installed: ``python tools/fidelity.py`` (it also rewrites
docs/fidelity.md). A test here fails when tinynet's update or BatchNorm drifts from PyTorch's.
"""
import json
import os
import sys

import keras
import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(REPO, "tools"))
import fidelity  # noqa: E402

sys.path.pop(0)
# measured: at most 2.9e-10 (AdamW: Keras' decoupled decay rounds wd through float32), the
# others 1e-13 or less; a misplaced eps or an lr inside the momentum is 1e-8 .. 1
TOLERANCE = 1e-9


@pytest.fixture
def float64():
    floatx, policy = keras.config.floatx(), keras.config.dtype_policy()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)


def _fixture(name):
    return np.load(os.path.join(fidelity.FIXTURES, f"{name}.npz"))


@pytest.mark.parametrize("case", sorted(fidelity.UPDATE_RULES))
def test_update_rule_is_torch_optims(case, float64):
    data = _fixture("update_rules")
    spec = json.loads(str(data[f"{case}/spec"]))
    assert spec["convention"] == "torch"
    n = len(fidelity.SHAPES)
    params = [data[f"{case}/param{i}"] for i in range(n)]
    grads = [[data[f"{case}/grad{s}_{i}"] for i in range(n)] for s in range(fidelity.STEPS)]
    expected = [[data[f"{case}/expected{s}_{i}"] for i in range(n)]
                for s in range(fidelity.STEPS)]
    ours = fidelity.tinynet_update_rule(spec, params, grads)

    def moved(run):
        return [p - p0 for step in run for p, p0 in zip(step, params)]
    assert fidelity.relative_difference(moved(ours), moved(expected)) <= TOLERANCE


def test_keras_sgd_is_not_torch_sgd_after_an_lr_drop(float64):
    """What the convention is for: Keras' own SGD momentum keeps the old lr past the drop."""
    data = _fixture("update_rules")
    case = "sgd_momentum_coupled_decay"
    spec = {k: v for k, v in json.loads(str(data[f"{case}/spec"])).items() if k != "convention"}
    params = [data[f"{case}/param{i}"] for i in range(2)]
    grads = [[data[f"{case}/grad{s}_{i}"] for i in range(2)] for s in range(fidelity.STEPS)]
    ours = fidelity.tinynet_update_rule(spec, params, grads)
    before = [data[f"{case}/expected{fidelity.DROP_AFTER - 1}_{i}"] for i in range(2)]
    after = [data[f"{case}/expected{fidelity.STEPS - 1}_{i}"] for i in range(2)]
    # the same while the lr is constant (up to Keras' SGD rounding momentum through float32),
    # apart after the drop
    assert fidelity.relative_difference(ours[fidelity.DROP_AFTER - 1], before) <= 1e-7
    assert fidelity.relative_difference(ours[-1], after) > 1e-3


def test_torch_batch_norm_is_pytorchs(float64):
    from tinynet.layers import TorchBatchNormalization

    data = _fixture("batch_norm")
    case = {"batches": [data[f"batch{i}"] for i in range(fidelity.BN_BATCHES + 1)],
            "gamma": data["gamma"], "beta": data["beta"]}
    outputs, stats = fidelity.tinynet_batch_norm(case, TorchBatchNormalization)
    expected = [data[f"expected_output{i}"] for i in range(fidelity.BN_BATCHES + 1)]
    expected_stats = [a for i in range(fidelity.BN_BATCHES)
                      for a in (data[f"expected_mean{i}"], data[f"expected_variance{i}"])]
    assert fidelity.relative_difference(outputs, expected) <= 1e-12
    assert fidelity.relative_difference([a for s in stats for a in s], expected_stats) <= 1e-12
    # Keras' own layer keeps the biased variance: the statistics differ by n / (n - 1)
    _, keras_stats = fidelity.tinynet_batch_norm(case, keras.layers.BatchNormalization)
    assert fidelity.relative_difference([a for s in keras_stats for a in s],
                                        expected_stats) > 1e-3


def _model_fixtures():
    return sorted(f for f in os.listdir(fidelity.FIXTURES) if f.startswith("model"))


@pytest.mark.parametrize("name", _model_fixtures())
def test_model_trains_as_the_original(name, float64):
    """tinynet's model, from the weights the original started with, trained the same steps
    with its optimizer: the weights, BN statistics and an inference pass where the original's
    ended (tools/fidelity.py, 'Whole models, trained')."""
    data = _fixture(name[:-len(".npz")])
    model = fidelity.build_keras_model(str(data["builder"]), json.loads(str(data["arguments"])))
    initial = [data[f"initial{i}"] for i in range(len(model.weights))]
    model.set_weights(initial)
    batches = [fidelity.mixed_batch(data[f"x{s}"], data[f"labels{s}"], float(data[f"lam{s}"]),
                                    data[f"index{s}"]) for s in range(fidelity.MODEL_STEPS)]
    fidelity.keras_train_steps(model, json.loads(str(data["spec"])), batches,
                               list(data["lrs"]))
    trainable = {id(v) for v in model.trainable_variables}
    moved = [(np.asarray(w.numpy()) - start, data[f"expected{i}"] - start)
             for i, (w, start) in enumerate(zip(model.weights, initial)) if id(w) in trainable]
    statistics = [(np.asarray(w.numpy()), data[f"expected{i}"])
                  for i, w in enumerate(model.weights) if id(w) not in trainable]
    assert fidelity.relative_difference(*zip(*moved)) <= TOLERANCE
    assert fidelity.relative_difference(*zip(*statistics)) <= TOLERANCE
    evaluation = model(data["evaluation"].astype(np.float64), training=False)
    assert fidelity.relative_difference([np.asarray(evaluation)],
                                        [data["expected_eval"]]) <= TOLERANCE
