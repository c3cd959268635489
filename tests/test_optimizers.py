"""Optimizers by name and weight decay in both conventions (tinynet.training.optimizers).

The coupled optimizers are checked against NumPy transcriptions of torch.optim's documented
algorithms (``weight_decay`` included), written out here independently of Keras.
"""
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tinynet.errors import TinynetError
from tinynet.training import optimizers as topt
from tinynet.training.optimizers import PYTORCH_DEFAULTS, make_optimizer

STEPS = 3


# -- torch.optim, in NumPy (float64): one step on one parameter, g already holds wd * p -------
def torch_sgd(p, g, state, t, lr, momentum=0.0, nesterov=False, dampening=0.0):
    if momentum:
        state["buf"] = g.copy() if t == 1 else momentum * state["buf"] + (1 - dampening) * g
        g = g + momentum * state["buf"] if nesterov else state["buf"]
    return p - lr * g


def torch_adadelta(p, g, state, t, lr=1.0, rho=0.9, eps=1e-6):
    sq = state["sq"] = rho * state.get("sq", 0.0) + (1 - rho) * g * g
    std = np.sqrt(sq + eps)
    delta = np.sqrt(state.get("acc", 0.0) + eps) / std * g
    state["acc"] = rho * state.get("acc", 0.0) + (1 - rho) * delta * delta
    return p - lr * delta


def torch_adagrad(p, g, state, t, lr=1e-2, lr_decay=0.0, initial_accumulator_value=0.0,
                  eps=1e-10):
    clr = lr / (1 + (t - 1) * lr_decay)
    s = state["sum"] = state.get("sum", initial_accumulator_value) + g * g
    return p - clr * g / (np.sqrt(s) + eps)


def torch_adam(p, g, state, t, lr=1e-3, betas=(0.9, 0.999), eps=1e-8):
    b1, b2 = betas
    m = state["m"] = b1 * state.get("m", 0.0) + (1 - b1) * g
    v = state["v"] = b2 * state.get("v", 0.0) + (1 - b2) * g * g
    denom = np.sqrt(v) / np.sqrt(1 - b2 ** t) + eps
    return p - lr / (1 - b1 ** t) * m / denom


def torch_rmsprop(p, g, state, t, lr=1e-2, alpha=0.99, eps=1e-8, momentum=0.0, centered=False):
    sq = state["sq"] = alpha * state.get("sq", 0.0) + (1 - alpha) * g * g
    if centered:
        ga = state["ga"] = alpha * state.get("ga", 0.0) + (1 - alpha) * g
        avg = np.sqrt(sq - ga * ga) + eps
    else:
        avg = np.sqrt(sq) + eps
    if momentum > 0:
        buf = state["buf"] = momentum * state.get("buf", 0.0) + g / avg
        return p - lr * buf
    return p - lr * g / avg


def torch_run(step, params, grads, weight_decay=0.0, decay=lambda name: True,
              decoupled_lr=None, **hyper):
    """torch.optim's loop: coupled ``weight_decay`` (``g += wd * p``), or with
    ``decoupled_lr`` AdamW's ``p *= 1 - lr * wd`` before the step."""
    params = {k: v.astype(np.float64).copy() for k, v in params.items()}
    states = {k: {} for k in params}
    for t, step_grads in enumerate(grads, start=1):
        for k, p in params.items():
            g = step_grads[k].astype(np.float64)
            wd = weight_decay if decay(k) else 0.0
            if decoupled_lr is None:
                g = g + wd * p
            else:
                p = p * (1 - decoupled_lr * wd)
            params[k] = step(p, g, states[k], t, **hyper)
    return params


# -- the same on Keras -------------------------------------------------------------------
def make_params(seed=0):
    rng = np.random.default_rng(seed)
    return {"kernel": rng.normal(size=(3, 2)), "bias": np.array([0.3, -0.2]),
            "gamma": np.ones(2)}


def make_grads(params, seed=1, steps=STEPS):
    rng = np.random.default_rng(seed)
    # magnitudes away from 0 so that every epsilon below is negligible against sqrt(v)
    return [{k: rng.choice([-1.0, 1.0], size=v.shape) * rng.uniform(0.3, 1.0, size=v.shape)
             for k, v in params.items()} for _ in range(steps)]


def keras_run(optimizer, params, grads, dtype="float64", pass_variables=True):
    variables = [keras.Variable(v, name=k, dtype=dtype) for k, v in params.items()]
    if not pass_variables:
        optimizer.build(variables)
    for step_grads in grads:
        g = [np.asarray(step_grads[k], dtype=dtype) for k in params]
        optimizer.apply(g, variables if pass_variables else None)
    return {k: v.numpy().astype(np.float64) for k, v in zip(params, variables)}


def assert_same_updates(got, want, start, rtol=1e-6):
    for k in start:  # the updates, not the parameters: p0 would hide a wrong update
        np.testing.assert_allclose(got[k] - start[k], want[k] - start[k], rtol=rtol, atol=0,
                                   err_msg=k)


def max_relative_change(a, b, start):
    return max(np.max(np.abs((a[k] - b[k]) / (b[k] - start[k]))) for k in start)


COUPLED_CASES = {
    # id: (spec without decay, torch step, torch hyperparameters, weight decay)
    "sgd-momentum": ({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
                     torch_sgd, dict(lr=0.1, momentum=0.9), 0.05),
    "sgd-nesterov": ({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True},
                     torch_sgd, dict(lr=0.1, momentum=0.9, nesterov=True), 0.05),
    "sgdn": ({"name": "sgdn", "learning_rate": 0.1, "momentum": 0.9},
             torch_sgd, dict(lr=0.1, momentum=0.9, nesterov=True), 0.05),
    "adadelta-nyu": ({"name": "adadelta", "learning_rate": 0.1, "rho": 0.9, "epsilon": 1e-6},
                     torch_adadelta, dict(lr=0.1, rho=0.9, eps=1e-6), 0.5),
    "adadelta-pytorch-defaults": ({"name": "adadelta", **PYTORCH_DEFAULTS["adadelta"]},
                                  torch_adadelta, {}, 0.5),
    "adagrad-pytorch-defaults": ({"name": "adagrad", **PYTORCH_DEFAULTS["adagrad"]},
                                 torch_adagrad, {}, 0.1),
    # Keras' epsilon is Adam's "epsilon hat" (torch's eps * sqrt(1 - beta_2^t)): a tiny eps
    # keeps that below the tolerance. Keras' ops.cast(beta, float64) goes through float32
    # (1 - 0.999 is then off by 1e-5): betas exact in float32 keep this test at 1e-6; the
    # defaults (0.9, 0.999, eps 1e-8) are checked at rtol 1e-5 below.
    "adam": ({"name": "adam", "learning_rate": 1e-2, "beta_1": 0.875, "beta_2": 1 - 2 ** -10,
              "epsilon": 1e-12},
             torch_adam, dict(lr=1e-2, betas=(0.875, 1 - 2 ** -10), eps=1e-12), 0.1),
    "rmsprop": ({"name": "rmsprop", "learning_rate": 1e-2, "rho": 0.99, "epsilon": 1e-12},
                torch_rmsprop, dict(lr=1e-2, alpha=0.99, eps=1e-12), 0.1),
    "rmsprop-centered-momentum": (
        {"name": "rmsprop", "learning_rate": 1e-2, "rho": 0.9, "momentum": 0.9,
         "centered": True, "epsilon": 1e-12},
        torch_rmsprop, dict(lr=1e-2, alpha=0.9, eps=1e-12, momentum=0.9, centered=True), 0.1),
}


@pytest.mark.parametrize("case", sorted(COUPLED_CASES))
def test_coupled_decay_is_pytorchs_weight_decay(case):
    spec, step, hyper, wd = COUPLED_CASES[case]
    params = make_params()
    grads = make_grads(params)
    optimizer = make_optimizer(dict(spec, weight_decay=wd, weight_decay_mode="coupled"))
    assert isinstance(optimizer, topt.COUPLED_OPTIMIZERS[spec["name"]])
    got = keras_run(optimizer, params, grads)
    want = torch_run(step, params, grads, weight_decay=wd, **hyper)
    assert_same_updates(got, want, params)
    # and the decay matters at this tolerance: without it the updates differ by far more
    undecayed = torch_run(step, params, grads, **hyper)
    assert max_relative_change(want, undecayed, params) > 1e-3


@pytest.mark.parametrize("name, step, rtol", [("adam", torch_adam, 1e-5),
                                              ("rmsprop", torch_rmsprop, 1e-5)])
def test_pytorch_defaults_with_eps_placed_differently(name, step, rtol):
    params = make_params()
    grads = make_grads(params)
    optimizer = make_optimizer({"name": name, **PYTORCH_DEFAULTS[name], "weight_decay": 0.1,
                                "weight_decay_mode": "coupled"})
    assert_same_updates(keras_run(optimizer, params, grads),
                        torch_run(step, params, grads, weight_decay=0.1), params, rtol=rtol)


def test_pytorch_defaults_all_build():
    for name, args in PYTORCH_DEFAULTS.items():
        assert isinstance(make_optimizer({"name": name, **args}), keras.optimizers.Optimizer)
        json.dumps(args)


def test_coupled_decay_with_the_optimizers_own_variable_list():
    """``apply(grads)`` without variables (LossScaleOptimizer's path) decays the same."""
    params = make_params()
    grads = make_grads(params)
    spec = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 0.05,
            "weight_decay_mode": "coupled"}
    a = keras_run(make_optimizer(spec), params, grads)
    b = keras_run(make_optimizer(spec), params, grads, pass_variables=False)
    for k in params:
        np.testing.assert_array_equal(a[k], b[k])


def test_coupled_decay_with_loss_scale_factor():
    params = make_params()
    grads = make_grads(params)
    scaled = [{k: 64.0 * g for k, g in step.items()} for step in grads]
    spec = {"name": "adam", "learning_rate": 1e-2, "weight_decay": 0.1,
            "weight_decay_mode": "coupled"}
    plain = keras_run(make_optimizer(spec), params, grads)
    with_scale = keras_run(make_optimizer(dict(spec, loss_scale_factor=64.0)), params, scaled)
    assert_same_updates(with_scale, plain, params, rtol=1e-9)


@pytest.mark.parametrize("name, hyper", [
    ("sgd", {"momentum": 0.9}),
    ("adam", {"beta_1": 0.875, "beta_2": 1 - 2 ** -10, "epsilon": 1e-12}),  # see COUPLED_CASES
])
def test_decoupled_is_keras_own_weight_decay(name, hyper):
    params = make_params()
    grads = make_grads(params)
    spec = {"name": name, "learning_rate": 0.01, **hyper}
    optimizer = make_optimizer(dict(spec, weight_decay=0.1, weight_decay_mode="decoupled"))
    keras_own = keras.optimizers.get(
        {"class_name": name, "config": dict(hyper, learning_rate=0.01, weight_decay=0.1)})
    assert type(optimizer) is type(keras_own)
    assert optimizer.get_config()["weight_decay"] == 0.1
    got = keras_run(optimizer, params, grads)
    want = keras_run(keras_own, params, grads)
    for k in params:
        np.testing.assert_array_equal(got[k], want[k])
    if name == "adam":  # = torch.optim.AdamW (lr-scaled decay before the step)
        torch_adamw = torch_run(torch_adam, params, grads, weight_decay=0.1, decoupled_lr=0.01,
                                lr=0.01, betas=(hyper["beta_1"], hyper["beta_2"]), eps=1e-12)
        assert_same_updates(got, torch_adamw, params)


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_exclusions_are_honoured_in_both_modes(mode):
    params = make_params()
    zero = [{k: np.zeros_like(v) for k, v in params.items()}]  # decay alone moves anything
    # lr and wd exact in float32 (Keras keeps the lr in a float32 variable): 1 - lr wd = 63/64
    spec = {"name": "sgd", "learning_rate": 0.125, "weight_decay": 0.125,
            "weight_decay_mode": mode}
    got = keras_run(make_optimizer(dict(spec, weight_decay_exclude=["bias"])), params, zero)
    np.testing.assert_array_equal(got["bias"], params["bias"])
    np.testing.assert_allclose(got["kernel"], params["kernel"] * 63 / 64, rtol=1e-15)
    np.testing.assert_allclose(got["gamma"], params["gamma"] * 63 / 64, rtol=1e-15)
    everything = keras_run(make_optimizer(spec), params, zero)  # default: decays all (PyTorch)
    np.testing.assert_allclose(everything["bias"], params["bias"] * 63 / 64, rtol=1e-15)
    # substrings are literal, not regular expressions: "." matches no name here
    dot = keras_run(make_optimizer(dict(spec, weight_decay_exclude=["."])), params, zero)
    np.testing.assert_allclose(dot["bias"], params["bias"] * 63 / 64, rtol=1e-15)


@pytest.mark.parametrize("mode", ["coupled", "decoupled"])
def test_exclusions_match_the_variable_path_on_tensorflow(mode):
    """Keras' TF backend tests the tf.Variable's name ("sequential/head/kernel:0"); coupled
    mode tests the same, so a layer name excludes that layer in both modes."""
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(4, name="body"),
                              keras.layers.Dense(2, name="head")])
    before = [v.numpy().copy() for v in model.trainable_variables]
    optimizer = make_optimizer({"name": "sgd", "learning_rate": 0.1, "weight_decay": 0.1,
                                "weight_decay_mode": mode, "weight_decay_exclude": ["head/"]})
    optimizer.apply([np.zeros(v.shape, "float32") for v in model.trainable_variables],
                    model.trainable_variables)
    for v, b in zip(model.trainable_variables, before):
        factor = 1.0 if "head" in v.path else 0.99
        np.testing.assert_allclose(v.numpy(), b * factor, rtol=1e-6, err_msg=v.path)


def test_with_momentum_coupled_decay_is_not_decoupled_decay():
    """SGD, momentum 0.9, lr 0.1, wd 1e-2, no gradient: decoupled shrinks by (1 - lr wd) a
    step; coupled pushes wd * p through the momentum buffer, ~1/(1 - 0.9) = 10x as strong."""
    params = {"kernel": np.ones(1)}
    zero = [{"kernel": np.zeros(1)}] * 100
    spec = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-2}
    coupled = keras_run(make_optimizer(dict(spec, weight_decay_mode="coupled")), params, zero)
    decoupled = keras_run(make_optimizer(dict(spec, weight_decay_mode="decoupled")), params,
                          zero)
    # (rtol 1e-7: Keras holds lr 0.1 as a float32 variable)
    np.testing.assert_allclose(decoupled["kernel"], 0.999 ** 100, rtol=1e-7)  # 0.9048
    torch = torch_run(torch_sgd, params, zero, weight_decay=1e-2, lr=0.1, momentum=0.9)
    # (rtol 1e-6: Keras casts momentum 0.9 to float64 through float32, for 100 steps)
    np.testing.assert_allclose(coupled["kernel"], torch["kernel"], rtol=1e-6)
    np.testing.assert_allclose(coupled["kernel"], 0.3686, atol=1e-4)
    # decay rates, -log(p) / steps: 9.97x
    ratio = np.log(coupled["kernel"][0]) / np.log(decoupled["kernel"][0])
    assert 9.5 < ratio < 10.5


# -- inside Model.fit --------------------------------------------------------------------
def tiny_model(seed, regularizer=None):
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((4,)),
                             keras.layers.Dense(3, activation="tanh",
                                                kernel_regularizer=regularizer),
                             keras.layers.Dense(1, kernel_regularizer=regularizer)])


def test_fit_uses_the_coupled_decay():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(32, 4)).astype("float32")
    y = rng.normal(size=(32, 1)).astype("float32")
    wd, lr, batch, epochs = 0.05, 0.05, 8, 2
    spec = {"name": "sgd", "learning_rate": lr, "momentum": 0.9, "weight_decay": wd,
            "weight_decay_mode": "coupled", "weight_decay_exclude": ["bias"]}

    def fitted(model, optimizer):
        model.compile(optimizer=optimizer, loss="mse")
        model.fit(x, y, batch_size=batch, epochs=epochs, shuffle=False, verbose=0)
        return [v.numpy() for v in model.trainable_variables]

    coupled = fitted(tiny_model(1), make_optimizer(spec))

    # by hand: the gradient of the loss plus wd * kernel, then Keras' plain SGD
    import tensorflow as tf
    model = tiny_model(1)
    optimizer = keras.optimizers.SGD(lr, momentum=0.9)
    loss_fn = keras.losses.MeanSquaredError()
    for _ in range(epochs):
        for i in range(0, len(x), batch):
            with tf.GradientTape() as tape:
                loss = loss_fn(y[i:i + batch], model(x[i:i + batch], training=True))
            grads = tape.gradient(loss, model.trainable_variables)
            grads = [g + wd * v if "kernel" in v.path else g
                     for g, v in zip(grads, model.trainable_variables)]
            optimizer.apply(grads, model.trainable_variables)
    by_hand = [v.numpy() for v in model.trainable_variables]

    # PyTorch's weight_decay=wd is Keras' L2(wd / 2) regulariser on the same variables
    l2 = fitted(tiny_model(1, keras.regularizers.L2(wd / 2)),
                keras.optimizers.SGD(lr, momentum=0.9))
    undecayed = fitted(tiny_model(1), keras.optimizers.SGD(lr, momentum=0.9))
    for c, h, r, u in zip(coupled, by_hand, l2, undecayed):
        np.testing.assert_allclose(c, h, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, r, rtol=1e-5, atol=1e-6)
    assert max(np.max(np.abs(c - u)) for c, u in zip(coupled, undecayed)) > 1e-3


# -- configs and saving ------------------------------------------------------------------
def test_config_round_trip():
    optimizer = make_optimizer({"name": "adadelta", "learning_rate": 0.1, "rho": 0.9,
                                "epsilon": 1e-6, "weight_decay": 5e-4,
                                "weight_decay_mode": "coupled",
                                "weight_decay_exclude": ["gamma", "beta"]})
    config = optimizer.get_config()
    assert config["coupled_weight_decay"] == 5e-4
    assert config["weight_decay_exclude"] == ["gamma", "beta"]
    assert config["weight_decay"] is None  # no decoupled decay on top
    json.dumps(config)
    again = type(optimizer).from_config(dict(config))
    assert type(again) is topt.CoupledAdadelta and again.get_config() == config
    via_keras = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(via_keras) is topt.CoupledAdadelta and via_keras.get_config() == config


@pytest.mark.slow  # (a fresh interpreter: CI's slow step)
def test_saved_model_loads_in_a_fresh_process(tmp_path):
    model = tiny_model(2)
    model.compile(optimizer=make_optimizer(
        {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
         "weight_decay_mode": "coupled", "weight_decay_exclude": ["bias"]}), loss="mse")
    model.fit(np.ones((4, 4), "float32"), np.ones((4, 1), "float32"), epochs=1, verbose=0)
    path = str(tmp_path / "model.keras")
    model.save(path)
    code = ("import json, sys, keras, tinynet.training.optimizers\n"
            "m = keras.models.load_model(sys.argv[1])\n"
            "o = m.optimizer\n"
            "print(json.dumps([type(o).__module__, type(o).__name__, o.get_config(),"
            " int(o.iterations.numpy()), [v.numpy().tolist() for v in o.variables[2:]]]))\n")
    proc = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True,
                          timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 0, proc.stderr
    module, name, config, iterations, momentums = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (module, name) == ("tinynet.training.optimizers", "CoupledSGD")
    assert config["coupled_weight_decay"] == 1e-4 and config["weight_decay_exclude"] == ["bias"]
    assert config["momentum"] == 0.9
    assert iterations == 1
    for saved, v in zip(momentums, model.optimizer.variables[2:]):
        np.testing.assert_array_equal(np.asarray(saved, "float32"), v.numpy())


# -- specs without decay, errors ---------------------------------------------------------
@pytest.mark.parametrize("spec", [
    {"name": "adam", "learning_rate": 1e-3},
    {"name": "rmsprop", "learning_rate": 1e-4, "epsilon": 1e-8},
    {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9},
    {"name": "adadelta", "learning_rate": 0.1, "rho": 0.9, "epsilon": 1e-6},
    {"name": "adagrad"},
    {"name": "Adam", "learning_rate": 1e-3, "weight_decay": None},
    {"name": "nadam", "learning_rate": 2e-3},
])
def test_spec_without_decay_is_what_keras_builds(spec):
    rest = {k: v for k, v in spec.items() if k != "name"}
    want = keras.optimizers.get({"class_name": spec["name"], "config": dict(rest)})
    got = make_optimizer(spec)
    assert type(got) is type(want)
    strip = lambda c: {k: v for k, v in c.items() if k != "name"}  # "adam" vs "adam_3"
    assert strip(got.get_config()) == strip(want.get_config())
    assert spec == dict(spec)  # not mutated


def test_sgdn_is_nesterov_sgd():
    got = make_optimizer({"name": "sgdn", "learning_rate": 0.1, "momentum": 0.9})
    assert type(got) is keras.optimizers.SGD
    assert got.nesterov and got.momentum == 0.9


@pytest.mark.parametrize("spec, words", [
    ({"name": "adamax2"}, ["unknown optimizer", "adadelta", "sgdn", "rmsprop"]),
    ({"name": "adam", "rho": 0.9}, ["'rho'", "beta_1", "epsilon", "weight_decay_mode"]),
    ({"name": "sgdn", "learning_rate": 0.1, "momentum": 0.9, "nesterov": False}, ["'nesterov'"]),
    ({"name": "sgdn", "learning_rate": 0.1}, ["momentum"]),
    ({"name": "adam", "weight_decay": 1e-4}, ["coupled", "decoupled"]),
    ({"name": "adam", "weight_decay": 1e-4, "weight_decay_mode": "l2"}, ["coupled", "decoupled"]),
    ({"name": "adam", "weight_decay_mode": "coupled"}, ["without", "weight_decay"]),
    ({"name": "adam", "weight_decay": -1.0, "weight_decay_mode": "coupled"}, [">= 0"]),
    ({"name": "adam", "weight_decay": 1e-4, "weight_decay_mode": "coupled",
      "weight_decay_exclude": "bias"}, ["list"]),
    ({"name": "adamw", "weight_decay": 1e-4, "weight_decay_mode": "coupled"}, ["adam", "sgd"]),
    ({"name": "lion", "weight_decay": 1e-4, "weight_decay_mode": "coupled"}, ["adadelta"]),
    ({"name": "adam", "learning_rate": 1}, ["learning_rate"]),
    ({"learning_rate": 1e-3}, ["name"]),
])
def test_bad_specs_say_what_is_accepted(spec, words):
    with pytest.raises(TinynetError) as e:
        make_optimizer(spec)
    message = str(e.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_module_docstring_documents_both_conventions():
    doc = topt.__doc__
    for phrase in ["coupled", "decoupled", "wd · θ", "lr · wd · θ", "L2(2.5e-4)", "NYU seed 004",
                   "Multi-ResNet", "DenResNet", "Adadelta", "epsilon hat"]:
        assert phrase in doc
