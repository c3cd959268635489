"""The originals' training rules (tinynet.training.conventions): the papers that default to them,
the optimizers and BatchNorm they build, saved and loaded, and run directories made before
them, which keep Keras' rules when they resume."""
import argparse

import keras
import numpy as np
import pytest

from tinynet.papers import cifar_resnet_design, denresnet, multi_resnet_cifar
from tinynet.papers.differences import differences
from tinynet.training.conventions import keep_recorded_rules, with_optimizer_convention
from tinynet.training.optimizers import make_optimizer
from tinynet.training.torch_optimizers import TorchSGD


def _legacy_record(protocol, model_kwargs):
    """config.json as tinynet wrote it before the conventions: no "convention", no batch_norm."""
    old = with_optimizer_convention(protocol, None)
    return {"protocol": old.to_dict(),
            "model_kwargs": {k: v for k, v in model_kwargs.items() if k != "batch_norm"}}


@pytest.mark.parametrize("module, protocol", [
    (cifar_resnet_design, cifar_resnet_design.protocol()),
    (multi_resnet_cifar, multi_resnet_cifar.protocol("cifar10")),
    (denresnet, denresnet.protocol("resnet101", two_phase=True)),
])
def test_pytorch_origin_papers_default_to_the_originals_rules(module, protocol):
    specs = [protocol.optimizer_spec(i) for i in range(len(protocol.stages))]
    assert all(spec["convention"] == "torch" for spec in specs)
    args = module.resolve(module.build_parser().parse_args(["--keras-semantics"]))
    assert any(d.startswith("--keras-semantics") for d in differences(module, args))
    assert not differences(module, module.resolve(module.build_parser().parse_args([])))


def test_a_record_made_before_the_conventions_keeps_keras_rules():
    protocol = multi_resnet_cifar.protocol("cifar10")
    kwargs = {"block": "basic", "depth": 20, "k": 4, "batch_norm": "torch"}
    recorded = _legacy_record(protocol, kwargs)
    kept_protocol, kept_kwargs, kept = keep_recorded_rules(recorded, protocol, kwargs)
    assert kept_protocol.to_dict() == recorded["protocol"]
    assert kept_kwargs == recorded["model_kwargs"]
    assert kept == ["the optimizer's update", "BatchNormalization's moving variance"]
    # seed 002's Model 2: the notebook's kernel-only L2; a run recorded without it keeps the
    # biases' penalty
    from tinynet.papers import densenet_model2
    model2 = densenet_model2.protocol()
    model2_record = {"protocol": model2.to_dict(), "model_kwargs": {}}
    _, model2_kwargs, model2_kept = keep_recorded_rules(model2_record, model2,
                                                        dict(densenet_model2.MODEL_KWARGS))
    assert model2_kwargs == {} and model2_kept == ["the L2 penalty on Model 2's biases"]
    # --keras-semantics on such a directory: the same run, nothing to say
    keras_kwargs = dict(kwargs, batch_norm="keras")
    _, again, kept = keep_recorded_rules(recorded, with_optimizer_convention(protocol, None),
                                         keras_kwargs)
    assert again == recorded["model_kwargs"] and kept == []


def test_a_record_with_the_conventions_or_none_changes_nothing():
    protocol = cifar_resnet_design.protocol()
    kwargs = {"batch_norm": "torch"}
    for recorded in ({}, {"protocol": protocol.to_dict(), "model_kwargs": kwargs}):
        p, k, kept = keep_recorded_rules(recorded, protocol, kwargs)
        assert (p, k, kept) == (protocol, kwargs, [])
    # a record of another run entirely is left for the identity check to refuse
    other = {"protocol": protocol.to_dict(), "model_kwargs": {"batch_norm": "keras"}}
    assert keep_recorded_rules(other, protocol, kwargs)[1] == kwargs


def test_torch_sgd_saves_loads_and_keeps_its_buffer(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer=make_optimizer({
        "name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "nesterov": True,
        "weight_decay": 1e-4, "weight_decay_mode": "coupled", "convention": "torch"}),
        loss="mse")
    x, y = np.ones((4, 3), "float32"), np.zeros((4, 2), "float32")
    model.fit(x, y, epochs=2, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    optimizer = loaded.optimizer
    assert type(optimizer) is TorchSGD
    assert optimizer.get_config() == model.optimizer.get_config()
    assert (optimizer.coupled_weight_decay, optimizer.nesterov, optimizer.dampening) == (
        1e-4, True, 0.0)
    names = [v.name for v in optimizer.variables]
    assert len(names) == len(model.optimizer.variables) == 4  # iterations, lr, 2 buffers
    assert sum(name.endswith("momentum_buffer") for name in names) == 2  # kernel and bias
    for ours, saved in zip(optimizer.variables, model.optimizer.variables):
        np.testing.assert_array_equal(ours.numpy(), saved.numpy())


@pytest.mark.parametrize("spec, message", [
    ({"name": "sgd", "convention": "pytorch"}, "\"convention\" must be"),
    ({"name": "lion", "convention": "torch"}, "not 'lion'"),
    ({"name": "sgd", "dampening": 0.1}, "does not take 'dampening'"),
    ({"name": "adamw", "convention": "torch"}, "needs its \"weight_decay\""),
    ({"name": "sgd", "momentum": 0.9, "nesterov": True, "dampening": 0.5,
      "convention": "torch"}, "zero dampening"),
])
def test_bad_convention_specs_are_refused(spec, message):
    from tinynet.errors import TinynetError

    with pytest.raises(TinynetError, match=message.replace("(", r"\(")):
        make_optimizer(spec)


def test_paper_runs_build_torch_batch_norm():
    from tinynet.layers import TorchBatchNormalization
    from tinynet.models import get_model

    for name, kwargs in (("nyu_resnet24", {"width": 1 / 16}),
                         ("multi_resnet", {"depth": 8, "k": 2, "width": 0.25})):
        model = get_model(name, batch_norm="torch", **kwargs)
        bns = [layer for layer in model._flatten_layers(include_self=False, recursive=True)
               if isinstance(layer, keras.layers.BatchNormalization)]
        assert bns and all(type(layer) is TorchBatchNormalization for layer in bns)
    args = argparse.Namespace(keras_semantics=False)
    from tinynet.training.conventions import batch_norm
    assert batch_norm(args) == "torch"
    assert batch_norm(argparse.Namespace(keras_semantics=True)) == "keras"
