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


def _commit():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, text=True,
                              capture_output=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _fmt(value):
    return "-" if value is None else f"{value:.1e}"


def write_doc(rule_rows, bn_rows, versions):
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
    versions = f"torch {torch.__version__}, Keras {keras.__version__}"
    write_doc(rule_rows, bn_rows, versions)
    for name, ours, keras_own in rule_rows:
        print(f"{name}: {_fmt(ours)} (Keras' own: {_fmt(keras_own)})")
    for name, out, stats in bn_rows:
        print(f"{name}: outputs {_fmt(out)}, statistics {_fmt(stats)}")


if __name__ == "__main__":
    main()
