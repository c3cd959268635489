"""Fidelity: tinynet's training computation beside the original code's, in float64.

    /work/venv-torch/bin/python tools/fidelity.py          # needs torch; writes the two below

writes ``docs/fidelity.md`` (what was compared, the largest relative difference, the commit)
and the golden fixtures ``tests/data/fidelity/*.npz``, which ``tests/test_fidelity.py`` reads in
CI without torch: it replays each case with tinynet and fails when its update, BatchNorm or
model drifts from what the original computed. torch is needed only here (``pip install
torch==2.14.1 torchvision==0.29.1`` in a virtual environment with ``--system-site-packages``,
so that tinynet and TensorFlow come from the main environment).

The rows:

* **Update rules.** Each optimizer a protocol can name with ``"convention": "torch"``
  (``tinynet.training.torch_optimizers``) against ``torch.optim`` on the same parameters and the
  same sequence of gradients, 6 steps with the learning rate dropped tenfold after the third;
  coupled weight decay where the papers use it; ``eps`` large enough (1e-3) that where it is
  added shows. Keras' own optimizer of the same name is measured beside it, to show what the
  convention changes.
* **BatchNorm.** ``tinynet.layers.TorchBatchNormalization`` against ``torch.nn.BatchNorm2d``:
  three training batches (outputs and running statistics after each), then inference; Keras'
  ``BatchNormalization`` beside it.

Relative difference: ``max |ours - theirs| / max |theirs|`` over every array compared (for
parameters, over the change from the initial values, so that a difference in the update is not
hidden by the size of the weights).
"""
import argparse
import json
import os
import subprocess
import sys
from datetime import date

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(REPO, "tests", "data", "fidelity")
DOC = os.path.join(REPO, "docs", "fidelity.md")
STEPS, DROP_AFTER = 6, 3
SHAPES = ((3, 4), (5,))  # two parameter tensors: a "kernel" and a "bias"

# name -> (tinynet's optimizer spec, torch.optim class name, its arguments); every learning rate
# is the spec's, dropped tenfold after step DROP_AFTER on both sides
UPDATE_RULES = {
    "sgd_momentum_coupled_decay": (
        {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
         "weight_decay_mode": "coupled"},
        "SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4}),
    "sgd_nesterov_coupled_decay": (
        {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True,
         "weight_decay": 1e-4, "weight_decay_mode": "coupled"},
        "SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
    "sgd_dampening": (
        {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "dampening": 0.5},
        "SGD", {"lr": 0.1, "momentum": 0.9, "dampening": 0.5}),
    "sgd_plain": ({"name": "sgd", "learning_rate": 0.1}, "SGD", {"lr": 0.1}),
    "rmsprop_momentum_centered": (
        {"name": "rmsprop", "learning_rate": 0.01, "rho": 0.99, "epsilon": 1e-3,
         "momentum": 0.9, "centered": True},
        "RMSprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-3, "momentum": 0.9, "centered": True}),
    "rmsprop": ({"name": "rmsprop", "learning_rate": 0.01, "rho": 0.99, "epsilon": 1e-3},
                "RMSprop", {"lr": 0.01, "alpha": 0.99, "eps": 1e-3}),
    "adagrad_lr_decay": (
        {"name": "adagrad", "learning_rate": 0.1, "epsilon": 1e-3, "lr_decay": 0.05,
         "initial_accumulator_value": 0.1},
        "Adagrad", {"lr": 0.1, "eps": 1e-3, "lr_decay": 0.05, "initial_accumulator_value": 0.1}),
    "adagrad_coupled_decay": (
        {"name": "adagrad", "learning_rate": 0.1, "epsilon": 1e-10,
         "initial_accumulator_value": 0.0, "weight_decay": 5e-4, "weight_decay_mode": "coupled"},
        "Adagrad", {"lr": 0.1, "eps": 1e-10, "weight_decay": 5e-4}),
    "adam": ({"name": "adam", "learning_rate": 1e-3, "epsilon": 1e-3},
             "Adam", {"lr": 1e-3, "eps": 1e-3}),
    "adam_amsgrad_coupled_decay": (
        {"name": "adam", "learning_rate": 1e-3, "epsilon": 1e-3, "amsgrad": True,
         "weight_decay": 5e-4, "weight_decay_mode": "coupled"},
        "Adam", {"lr": 1e-3, "eps": 1e-3, "amsgrad": True, "weight_decay": 5e-4}),
    "adamw": ({"name": "adamw", "learning_rate": 1e-3, "epsilon": 1e-3, "weight_decay": 1e-2,
               "weight_decay_mode": "decoupled"},
              "AdamW", {"lr": 1e-3, "eps": 1e-3, "weight_decay": 1e-2}),
    "adadelta_coupled_decay": (  # seed 004's default
        {"name": "adadelta", "learning_rate": 0.1, "rho": 0.9, "epsilon": 1e-6,
         "weight_decay": 5e-4, "weight_decay_mode": "coupled"},
        "Adadelta", {"lr": 0.1, "rho": 0.9, "eps": 1e-6, "weight_decay": 5e-4}),
}
BN_SHAPE, BN_BATCHES = (4, 3, 3, 2), 3  # NHWC: n = 4 * 3 * 3 = 36 values per channel


def relative_difference(ours, theirs):
    """``max |ours - theirs| / max |theirs|`` over lists of arrays."""
    num = max(float(np.max(np.abs(np.asarray(a) - np.asarray(b)))) for a, b in zip(ours, theirs))
    den = max(float(np.max(np.abs(np.asarray(b)))) for b in theirs)
    return num / den if den else num


def learning_rates(base):
    return [base if step < DROP_AFTER else base / 10 for step in range(STEPS)]


def update_rule_case(name, seed):
    """The inputs of one update-rule case: initial parameters and the gradients of each step."""
    rng = np.random.default_rng(seed)
    params = [rng.normal(size=shape) for shape in SHAPES]
    grads = [[rng.normal(size=shape) for shape in SHAPES] for _ in range(STEPS)]
    return params, grads


def torch_update_rule(torch_class, arguments, params, grads):
    """The parameters after each step of ``torch.optim.<torch_class>`` (float64)."""
    import torch

    tensors = [torch.tensor(p, dtype=torch.float64, requires_grad=True) for p in params]
    optimizer = getattr(torch.optim, torch_class)(tensors, **arguments)
    out = []
    for lr, step_grads in zip(learning_rates(arguments["lr"]), grads):
        for group in optimizer.param_groups:
            group["lr"] = lr
        for tensor, g in zip(tensors, step_grads):
            tensor.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
        out.append([t.detach().numpy().copy() for t in tensors])
    return out


def tinynet_update_rule(spec, params, grads):
    """The parameters after each step of tinynet's optimizer for ``spec`` (float64: call with
    Keras' floatx set to float64)."""
    import keras

    from tinynet.training.optimizers import make_optimizer

    optimizer = make_optimizer(spec)
    variables = [keras.Variable(p.copy(), dtype="float64") for p in params]
    out = []
    for lr, step_grads in zip(learning_rates(spec["learning_rate"]), grads):
        optimizer.learning_rate.assign(lr)
        optimizer.apply([keras.ops.convert_to_tensor(g) for g in step_grads], variables)
        out.append([np.asarray(v.numpy()).copy() for v in variables])
    return out


def compare_update_rules():
    """Rows and fixture arrays of the update-rule cases."""
    rows, arrays = [], {}
    for seed, (name, (spec, torch_class, arguments)) in enumerate(UPDATE_RULES.items()):
        params, grads = update_rule_case(name, seed)
        theirs = torch_update_rule(torch_class, arguments, params, grads)
        ours = tinynet_update_rule(dict(spec, convention="torch"), params, grads)
        keras_spec = {k: v for k, v in spec.items() if k not in ("lr_decay", "dampening")}
        keras_own = tinynet_update_rule(keras_spec, params, grads)

        def moved(run):
            return [p - p0 for step in run for p, p0 in zip(step, params)]
        rows.append((f"update rule: {name} (torch.optim.{torch_class}, {STEPS} steps, lr / 10 "
                     f"after step {DROP_AFTER})", relative_difference(moved(ours), moved(theirs)),
                     relative_difference(moved(keras_own), moved(theirs))
                     if keras_spec == spec else None))
        arrays[f"{name}/spec"] = np.array(json.dumps(dict(spec, convention="torch")))
        for i, p in enumerate(params):
            arrays[f"{name}/param{i}"] = p
        for step in range(STEPS):
            for i in range(len(SHAPES)):
                arrays[f"{name}/grad{step}_{i}"] = grads[step][i]
                arrays[f"{name}/expected{step}_{i}"] = theirs[step][i]
    return rows, arrays


def bn_case(seed=100):
    rng = np.random.default_rng(seed)
    channels = BN_SHAPE[-1]
    return {"batches": [rng.normal(loc=1.0, scale=2.0, size=BN_SHAPE) for _ in
                        range(BN_BATCHES + 1)],
            "gamma": rng.uniform(0.5, 1.5, channels), "beta": rng.normal(size=channels)}


def torch_batch_norm(case):
    """torch.nn.BatchNorm2d's outputs (NHWC) and running statistics after each training batch,
    then its inference output on the last batch."""
    import torch

    bn = torch.nn.BatchNorm2d(BN_SHAPE[-1], eps=1e-5, momentum=0.1).double()
    with torch.no_grad():
        bn.weight.copy_(torch.tensor(case["gamma"]))
        bn.bias.copy_(torch.tensor(case["beta"]))
    outputs, stats = [], []

    def forward(x):
        y = bn(torch.tensor(x).permute(0, 3, 1, 2))
        return y.permute(0, 2, 3, 1).detach().numpy()
    bn.train()
    for x in case["batches"][:-1]:
        outputs.append(forward(x))
        stats.append((bn.running_mean.numpy().copy(), bn.running_var.numpy().copy()))
    bn.eval()
    outputs.append(forward(case["batches"][-1]))
    return outputs, stats


def tinynet_batch_norm(case, layer_class):
    """The same with a Keras BatchNormalization class (float64 floatx)."""
    layer = layer_class(epsilon=1e-5, momentum=0.9)
    layer.build(BN_SHAPE)
    layer.gamma.assign(case["gamma"])
    layer.beta.assign(case["beta"])
    outputs, stats = [], []
    for x in case["batches"][:-1]:
        outputs.append(np.asarray(layer(x, training=True)))
        stats.append((layer.moving_mean.numpy().copy(), layer.moving_variance.numpy().copy()))
    outputs.append(np.asarray(layer(case["batches"][-1], training=False)))
    return outputs, stats


def compare_batch_norm():
    import keras

    from tinynet.layers import TorchBatchNormalization

    case = bn_case()
    theirs = torch_batch_norm(case)
    rows, arrays = [], {}
    for cls in (TorchBatchNormalization, keras.layers.BatchNormalization):
        outputs, stats = tinynet_batch_norm(case, cls)
        rows.append((cls.__name__, relative_difference(outputs, theirs[0]),
                     relative_difference([v for s in stats for v in s],
                                         [v for s in theirs[1] for v in s])))
    for i, x in enumerate(case["batches"]):
        arrays[f"batch{i}"] = x
        arrays[f"expected_output{i}"] = theirs[0][i]
    for i, (mean, var) in enumerate(theirs[1]):
        arrays[f"expected_mean{i}"], arrays[f"expected_variance{i}"] = mean, var
    arrays["gamma"], arrays["beta"] = case["gamma"], case["beta"]
    return rows, arrays


# --- whole models: k training steps of the paper's own optimizer, loss and lr policy ----------

MODEL_STEPS, MODEL_BATCH, MODEL_DROP_AFTER = 6, 4, 3
NYU = ("95anantsingh/NYU-ResNet-On-Steroids@a45055c: models.py (copied in "
       "tools/originals/nyu_models.py), resnet.py's optimizers (lines 243-251) and mixup "
       "(324-340)")
MULTI = ("masoudabd/multi-resnet@01ab719: models/mpreresnet.lua, multi-resnet.lua "
         "(transliterated in tools/originals/multi_resnet_torch7.py) and torch/optim@a5ceed7 "
         "sgd.lua (torch7_sgd there)")


def _model_cases():
    """(name, source, builder name, builder arguments, the original's constructor, the
    tinynet optimizer spec, the original's optimizer step factory, base lr, mixup)."""
    import torch

    from originals import multi_resnet_torch7 as t7
    from originals import nyu_models

    def torch_optim(cls, **arguments):
        def make(parameters):
            optimizer = cls(parameters, **arguments)

            def step(lr):
                for group in optimizer.param_groups:
                    group["lr"] = lr
                optimizer.step()
            return step
        return make

    def torch7(**config):
        def make(parameters):
            state = {}

            def step(lr):
                t7.torch7_sgd(parameters, [p.grad for p in parameters],
                              dict(config, learningRate=lr), state)
            return step
        return make

    from originals import torchvision_models as tv

    nyu_config = dict(blocks=(1, 1, 1, 1), channels=(8, 16, 16, 32))
    multi_config = dict(depth=14, k=2, width=0.25)
    return [
        ("seed 004: NYU ResNet (B 1,1,1,1, C 8,16,16,32), Adadelta lr 0.1 rho 0.9 eps 1e-6, "
         "coupled decay 5e-4, mixup (one lambda per batch), lr 0.1 -> 0.01 (the code's rule)",
         NYU, "cifar_resnet", nyu_config, lambda: nyu_models.build_original(**nyu_config),
         {"name": "adadelta", "learning_rate": 0.1, "rho": 0.9, "epsilon": 1e-6,
          "weight_decay": 5e-4, "weight_decay_mode": "coupled", "convention": "torch"},
         torch_optim(torch.optim.Adadelta, lr=0.1, rho=0.9, eps=1e-6, weight_decay=5e-4), 0.1,
         True, nyu_models),
        ("seed 004: the same model, SGD momentum 0.9 (the sweep's), coupled decay 5e-4, mixup, "
         "lr 0.1 -> 0.01",
         NYU, "cifar_resnet", nyu_config, lambda: nyu_models.build_original(**nyu_config),
         {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 5e-4,
          "weight_decay_mode": "coupled", "convention": "torch"},
         torch_optim(torch.optim.SGD, lr=0.1, momentum=0.9, weight_decay=5e-4), 0.1, True,
         nyu_models),
        ("seed 003: pre-resnet multi-resnet (basic, depth 14, k 2, type A, width 0.25), "
         "Torch7 optim.sgd Nesterov 0.9 dampening 0, decay 1e-4, lr 0.1 -> 0.01",
         MULTI, "multi_resnet", multi_config, lambda: t7.mpreresnet(14, 2, "A", width=0.25),
         {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True,
          "weight_decay": 1e-4, "weight_decay_mode": "coupled", "convention": "torch"},
         torch7(momentum=0.9, nesterov=True, dampening=0.0, weightDecay=1e-4,
                learningRateDecay=0), 0.1, False, t7),
        ("seed 000: torchvision ResNet-18 (10 classes, 64x64 input), torch.optim.SGD momentum "
         "0.9, decay 1e-4, lr 0.01 -> 0.001 (a plateau's drop)",
         TORCHVISION, "torchvision_resnet18", {},
         lambda: tv.build_original("resnet18", 10),
         dict(DENRESNET_SGD, learning_rate=0.01),
         torch_optim(torch.optim.SGD, lr=0.01, momentum=0.9, weight_decay=1e-4), 0.01, False,
         tv, 64),
        ("seed 000: torchvision DenseNet-121 (10 classes, 64x64 input), the same SGD and drop",
         TORCHVISION, "torchvision_densenet121", {},
         lambda: tv.build_original("densenet121", 10),
         dict(DENRESNET_SGD, learning_rate=0.01),
         torch_optim(torch.optim.SGD, lr=0.01, momentum=0.9, weight_decay=1e-4), 0.01, False,
         tv, 64),
    ]


TORCHVISION = "torchvision 0.29.1's models/resnet.py and densenet.py, torch.optim.SGD"
DENRESNET_SGD = {"name": "sgd", "momentum": 0.9, "weight_decay": 1e-4,
                 "weight_decay_mode": "coupled", "convention": "torch"}


def build_keras_model(builder, arguments):
    """The tinynet model of a model case: torch BatchNorm, logits (the originals return them).
    ``torchvision_<architecture>``: tinynet's exact torchvision model (DenResNet's backbone)
    with a 10-class head at 64 px."""
    from tinynet.models import get_model

    if builder.startswith("torchvision_"):
        from tinynet.models.torchvision_weights import build_model

        return build_model(builder[len("torchvision_"):], input_shape=(64, 64, 3),
                           num_classes=10, classifier_activation=None, **arguments)
    return get_model(builder, batch_norm="torch", classifier_activation=None, **arguments)


def model_inputs(seed, mixup, size=32):
    """What the training batches are made of, as the fixtures store it: per step the images
    (float32 values), labels, and with ``mixup`` the code's one lambda ~ Beta(1, 1) and one
    permutation of the batch (lambda 1, no permutation without); and an evaluation batch."""
    rng = np.random.default_rng(seed)
    steps = []
    for _ in range(MODEL_STEPS):
        x = rng.normal(size=(MODEL_BATCH, size, size, 3)).astype(np.float32)
        labels = rng.integers(0, 10, MODEL_BATCH)
        lam, index = ((rng.beta(1.0, 1.0), rng.permutation(MODEL_BATCH)) if mixup
                      else (1.0, np.arange(MODEL_BATCH)))
        steps.append((x, labels, lam, index))
    evaluation = rng.normal(size=(MODEL_BATCH, size, size, 3)).astype(np.float32)
    return steps, evaluation


def mixed_batch(x, labels, lam, index):
    """The code's mixup_data (resnet.py 324-338) in float64: x mixed with its permutation, the
    targets lambda y_a + (1 - lambda) y_b, which makes its loss lambda CE(y_a) + (1 - lambda)
    CE(y_b) one soft-target cross-entropy."""
    x, y = x.astype(np.float64), np.eye(10)[labels]
    return lam * x + (1 - lam) * x[index], lam * y + (1 - lam) * y[index]


def keras_train_steps(model, spec, batches, lrs):
    """tinynet's side: ``model(x, training=True)``, mean soft-target cross-entropy on logits,
    the gradients of the trainable weights, the optimizer ``spec`` builds. Returns the first
    step's logits and gradients."""
    import tensorflow as tf

    from tinynet.training.optimizers import make_optimizer

    optimizer = make_optimizer(spec)
    first = None
    for (x, y), lr in zip(batches, lrs):
        optimizer.learning_rate.assign(lr)
        with tf.GradientTape() as tape:
            logits = model(x, training=True)
            loss = tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(labels=y,
                                                                          logits=logits))
        grads = tape.gradient(loss, model.trainable_variables)
        if first is None:
            first = (logits.numpy(), [g.numpy() for g in grads])
        optimizer.apply(grads, model.trainable_variables)
    return first


def torch_train_steps(module, make_step, batches, lrs):
    """The original's side: ``module.train()``, its cross-entropy (soft targets: the code's
    mixup loss), ``backward``, its optimizer step. Returns the first step's logits and the
    gradients by parameter name."""
    import torch

    module.train()
    parameters = list(module.parameters())
    step = make_step(parameters)
    first = None
    for (x, y), lr in zip(batches, lrs):
        module.zero_grad(set_to_none=True)
        logits = module(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
        loss = -(torch.from_numpy(y) * torch.log_softmax(logits, dim=1)).sum(dim=1).mean()
        loss.backward()
        if first is None:
            first = (logits.detach().numpy().copy(),
                     {k: p.grad.numpy().copy() for k, p in module.named_parameters()})
        step(lr)
    return first


def _randomize_statistics(pairs, rng):
    """BN gamma/beta/moving statistics and biases away from 1/0/0/1/0, which would hide a
    swapped or missing copy."""
    for variable, key, kind in pairs:
        if kind == "vector":
            low_high = (0.5, 1.5) if key.endswith(("running_var", "weight")) else (-0.2, 0.2)
            variable.assign(rng.uniform(*low_high, variable.shape))


def to_keras_layout(value, kind):
    """The inverse of the originals' ``to_torch_layout``."""
    value = np.asarray(value)
    return {"conv": lambda v: np.transpose(v, (2, 3, 1, 0)), "dense": np.transpose,
            "vector": lambda v: v}[kind](value)


def compare_model(case, seed):
    """One model case: rows of differences and the fixture arrays."""
    import torch

    import keras

    name, source, builder, arguments, original, spec, make_step, lr, mixup, module = case[:10]
    size = case[10] if len(case) > 10 else 32
    keras.utils.set_random_seed(seed)  # the same fixture from every run of the harness
    torch.manual_seed(seed)
    model, theirs = build_keras_model(builder, arguments), original()
    pairs = module.keras_torch_pairs(theirs, model)
    _randomize_statistics(pairs, np.random.default_rng(seed))
    module.copy_from_keras(theirs, model)
    initial = [np.asarray(w.numpy()).copy() for w in model.weights]
    start = {key: to_keras_layout(theirs.state_dict()[key].numpy(), kind)
             for _, key, kind in pairs}
    steps, evaluation = model_inputs(seed, mixup, size)
    batches = [mixed_batch(*step) for step in steps]
    evaluation = evaluation.astype(np.float64)
    lrs = [lr if s < MODEL_DROP_AFTER else lr / 10 for s in range(MODEL_STEPS)]
    our_logits, our_grads = keras_train_steps(model, spec, batches, lrs)
    their_logits, their_grads = torch_train_steps(theirs, make_step, batches, lrs)
    by_variable = {id(v): (key, kind) for v, key, kind in pairs}
    grads = [(g, to_keras_layout(their_grads[by_variable[id(v)][0]], by_variable[id(v)][1]))
             for v, g in zip(model.trainable_variables, our_grads)]
    state = theirs.state_dict()
    expected = {key: to_keras_layout(state[key].numpy(), kind) for _, key, kind in pairs}
    params = [(np.asarray(v.numpy()) - start[key], expected[key] - start[key])
              for v, key, _ in pairs if v.trainable]
    statistics = [(np.asarray(v.numpy()), expected[key]) for v, key, _ in pairs
                  if not v.trainable]
    theirs.eval()
    with torch.no_grad():
        their_eval = theirs(torch.from_numpy(np.ascontiguousarray(
            evaluation.transpose(0, 3, 1, 2)))).numpy()
    our_eval = np.asarray(model(evaluation, training=False))
    row = {"case": name, "source": source,
           "training forward": relative_difference([our_logits], [their_logits]),
           "gradients": relative_difference(*zip(*grads)),
           f"weights after {MODEL_STEPS} steps": relative_difference(*zip(*params)),
           "BN statistics": relative_difference(*zip(*statistics)),
           "inference after": relative_difference([our_eval], [their_eval])}
    arrays = {"spec": np.array(json.dumps(spec)), "builder": np.array(builder),
              "arguments": np.array(json.dumps(arguments)), "lrs": np.array(lrs),
              "evaluation": evaluation.astype(np.float32), "expected_eval": their_eval}
    for i, value in enumerate(initial):
        arrays[f"initial{i}"] = value
    for i, (x, labels, lam, index) in enumerate(steps):
        arrays[f"x{i}"], arrays[f"labels{i}"] = x, labels
        arrays[f"lam{i}"], arrays[f"index{i}"] = np.array(lam), index
    for i, w in enumerate(model.weights):
        key, kind = by_variable[id(w)]
        arrays[f"expected{i}"] = expected[key]
    return row, arrays


FIXTURE_LIMIT = 2_000_000  # bytes of arrays; a full-width torchvision model is 90 MB a copy


def compare_models():
    """The rows; each case's fixture, unless its arrays exceed FIXTURE_LIMIT (seed 000's
    full-width ResNet-18: its CI check is tests/test_torchvision_weights.py's forward pass and
    the update-rule fixtures)."""
    rows = []
    for index, case in enumerate(_model_cases()):
        row, arrays = compare_model(case, 200 + index)
        path = os.path.join(FIXTURES, f"model{index}.npz")
        row["fixture"] = sum(a.nbytes for a in arrays.values()) <= FIXTURE_LIMIT
        if row["fixture"]:
            np.savez_compressed(path, **arrays)
        elif os.path.exists(path):
            os.remove(path)
        rows.append(row)
    return rows


def check_seed_002():
    """Seed 002's original was Keras 2 code: ``tools/originals/check_densenet_notebooks.py``
    compares tinynet's Model 1 and 2 with a Keras 3 transliteration of the notebooks (no torch);
    its verdict line and exit status."""
    script = os.path.join(REPO, "tools", "originals", "check_densenet_notebooks.py")
    proc = subprocess.run([sys.executable, script], capture_output=True, text=True,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"))
    verdict = [line for line in proc.stdout.splitlines() if line.startswith("beyond tolerance")]
    return proc.returncode, (verdict[-1] if verdict else proc.stderr.strip()[-300:])


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmt(value):
    return "-" if value is None else f"{value:.1e}"


def write_doc(rule_rows, bn_rows, model_rows, seed_002, versions):
    lines = [
        "# Fidelity: tinynet beside the original code",
        "",
        f"Measured {date.today().isoformat()} at commit {_commit()} with {versions}, in "
        f"float64 on both sides, by `tools/fidelity.py` (which also writes the golden fixtures "
        f"`tests/data/fidelity/`, replayed in CI without torch by `tests/test_fidelity.py`). "
        f"Relative difference: max |ours - theirs| / max |theirs| over every array compared; "
        f"for parameters, over their change from the initial values. Target: 1e-6.",
        "",
        "## Update rules",
        "",
        "tinynet's optimizer with `\"convention\": \"torch\"` (the default of the protocols of "
        "seeds 000, 003 and 004) against `torch.optim`, on the same parameters and gradients; "
        "the last column is Keras' own optimizer of that name (the `--keras-semantics` "
        "variant), where Keras has the same arguments.",
        "",
        "| case | tinynet (torch convention) | Keras' own |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {_fmt(ours)} | {_fmt(keras_own)} |"
              for name, ours, keras_own in rule_rows]
    lines += [
        "",
        "## BatchNorm",
        "",
        f"Against `torch.nn.BatchNorm2d(eps=1e-5, momentum=0.1)`: {BN_BATCHES} training "
        f"batches of {BN_SHAPE} (NHWC; n = {BN_SHAPE[0] * BN_SHAPE[1] * BN_SHAPE[2]} values per "
        f"channel), then inference.",
        "",
        "| layer | outputs (training, then inference) | running mean and variance |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {name} | {_fmt(out)} | {_fmt(stats)} |" for name, out, stats in bn_rows]
    if model_rows:
        columns = [k for k in model_rows[0] if k not in ("case", "source", "fixture")]
        lines += [
            "",
            "## Whole models, trained",
            "",
            f"tinynet's model (`batch_norm=\"torch\"`) and the original, the same weights "
            f"copied in (BN statistics and biases set away from their initial values), then "
            f"{MODEL_STEPS} training steps on the same batches of {MODEL_BATCH} 32x32 images "
            f"(64x64 for the ImageNet-stem ResNet) "
            f"with the paper's optimizer, loss and learning rate dropped tenfold after step "
            f"{MODEL_DROP_AFTER}. Gradients and the training forward pass are the first "
            f"step's; weights (as their change from the start), BN statistics and an "
            f"inference pass are after the last.",
            "",
            "| case | " + " | ".join(columns) + " | the original |",
            "| --- | " + " | ".join("---" for _ in columns) + " | --- |",
        ]
        lines += [f"| {r['case']} | " + " | ".join(_fmt(r[c]) for c in columns)
                  + f" | {r['source']} |" for r in model_rows]
        lines += ["", "Each row but seed 000's is also a golden fixture of tests/test_fidelity.py "
                  "(seed 000's full-width backbones would be 60 to 170 MB of arrays; CI checks "
                  "their forward pass against torchvision in tests/test_torchvision_weights.py "
                  "and their SGD in the update rules)."]
    status, verdict = seed_002
    lines += [
        "",
        "## Seed 002: Keras beside Keras",
        "",
        "The DenseNet notebooks (ZohebAbai/Tiny-ImageNet-Challenge@cc39f57, "
        "TinyImageNet_Network_1/2.ipynb) were Keras 2.2.4 code: "
        "`tools/originals/densenet_notebooks.py` transliterates their model cells line by line "
        "to Keras 3, and `tools/originals/check_densenet_notebooks.py` compares them with "
        "tinynet's Model 1 and Model 2 (`bias_l2=False`, the protocol's) in float64: parameter "
        "counts (equal to the notebooks' printed summaries), outputs, loss with the "
        "regularisers, every gradient and the moving statistics after a training pass. "
        f"Its verdict: `{verdict}` (exit status {status}; 0 means bit-identical or within "
        "1e-9). The optimizer (Keras' Adam, RMSprop, SGD) and its CyclicLR are Keras' on both "
        "sides.",
        "",
        "What stays different from the notebooks' run: Keras 2.2.4 updated BatchNorm's moving "
        "statistics with a zero-debiased average whose hidden state was not saved, so they "
        "started afresh after each `load_model` between the notebooks' stages, and its fused "
        "kernel's variance was Bessel-corrected twice (`Keras224BatchNormalization` in the "
        "transliteration reproduces it); Keras 3 keeps a plain exponential average. At "
        "momentum 0.99 a new stage of Model 1 (200 steps per epoch) still carries 13% of the "
        "statistics it started with at its first validation; Model 2's 781 steps leave 0.04%.",
    ]
    os.makedirs(os.path.dirname(DOC), exist_ok=True)
    with open(DOC, "w") as f:
        f.write("\n".join(lines) + "\n")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args(argv)
    try:
        import torch
        import torch._dynamo  # noqa: F401  (triton, which it imports, crashes once TF is loaded)
    except ImportError:
        sys.exit("tools/fidelity.py needs torch: run it with a Python that has torch "
                 "(pip install torch==2.14.1 torchvision==0.29.1)")
    import keras

    keras.config.set_floatx("float64")
    torch.set_default_dtype(torch.float64)
    rule_rows, rule_arrays = compare_update_rules()
    bn_rows, bn_arrays = compare_batch_norm()
    os.makedirs(FIXTURES, exist_ok=True)
    np.savez_compressed(os.path.join(FIXTURES, "update_rules.npz"), **rule_arrays)
    np.savez_compressed(os.path.join(FIXTURES, "batch_norm.npz"), **bn_arrays)
    model_rows = compare_models()
    seed_002 = check_seed_002()
    versions = f"torch {torch.__version__}, Keras {keras.__version__}"
    write_doc(rule_rows, bn_rows, model_rows, seed_002, versions)
    print(f"seed 002: {seed_002}")
    for row in model_rows:
        print(row)
    for name, ours, keras_own in rule_rows:
        print(f"{name}: {_fmt(ours)} (Keras' own: {_fmt(keras_own)})")
    for name, out, stats in bn_rows:
        print(f"{name}: outputs {_fmt(out)}, statistics {_fmt(stats)}")


if __name__ == "__main__":
    main()
