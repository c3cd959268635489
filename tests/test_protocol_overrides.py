"""--lr-scale, --weight-decay and --batch-size: the Protocol methods (exact protocol dicts),
every lr policy's ``lr_scaled``, and the flags reaching the protocol in run_experiment."""
import argparse
import dataclasses
import math
import types
from typing import ClassVar

import pytest

from tinynet.errors import TinynetError
from tinynet.training.lr import (Constant, Cosine, CosineWarmRestarts, Cyclic, LRPolicy,
                                 NYURule, Plateau, StepDecay)
from tinynet.training.protocol import Protocol, Stage

SGD = {"name": "sgd", "learning_rate": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
       "weight_decay_mode": "coupled", "weight_decay_exclude": ["bias"]}
ADAMW = {"name": "adamw", "learning_rate": 1e-3}


def two_phase(first_optimizer=None):
    """Two stages: the protocol's SGD with a plateau, then a new AdamW with a cosine."""
    return Protocol(name="p", optimizer=dict(SGD), val_resolution=32, eval_batch_size=50,
                    stages=(Stage("head", resolution=32, batch_size=100, epochs=4,
                                  steps_per_epoch=10, optimizer=first_optimizer,
                                  lr=Plateau(factor=0.1, patience=2, min_lr=1e-6)),
                            Stage("all", resolution=32, batch_size=100, epochs=6,
                                  optimizer=dict(ADAMW),
                                  lr=Cosine(lr=1e-3, t_max=6, eta_min=1e-5))))


def stage_dict(name, batch_size, epochs, steps, lr, optimizer):
    return {"name": name, "resolution": 32, "batch_size": batch_size, "epochs": epochs,
            "steps_per_epoch": steps, "augment": None, "lr": lr, "restart_from_best": False,
            "optimizer": optimizer, "freeze": [], "mixup": None, "loss": "crossentropy"}


def protocol_dict(optimizer, stages):
    return {"name": "p", "stages": tuple(stages), "optimizer": optimizer, "val_resolution": 32,
            "eval_batch_size": 50, "normalize": None}


PLATEAU = {"kind": "plateau", "factor": 0.1, "patience": 2, "monitor": "val_loss",
           "first_epoch": 0, "last_epoch": None}
COSINE = {"kind": "cosine", "t_max": 6, "per_iteration": False}


def test_lr_scale_multiplies_every_rate_of_the_protocol():
    p = two_phase().with_lr_scale(4)
    assert p.to_dict() == protocol_dict(
        dict(SGD, learning_rate=0.1 * 4),
        [stage_dict("head", 100, 4, 10, dict(PLATEAU, min_lr=1e-6 * 4), None),
         stage_dict("all", 100, 6, None, dict(COSINE, lr=1e-3 * 4, eta_min=1e-5 * 4),
                    dict(ADAMW, learning_rate=1e-3 * 4))])


def test_weight_decay_is_set_in_each_specs_own_convention():
    p = two_phase().with_weight_decay(5e-4)
    assert p.to_dict() == protocol_dict(
        dict(SGD, weight_decay=5e-4),  # coupled, exclusions kept
        [stage_dict("head", 100, 4, 10, dict(PLATEAU, min_lr=1e-6), None),
         stage_dict("all", 100, 6, None, dict(COSINE, lr=1e-3, eta_min=1e-5),
                    dict(ADAMW, weight_decay=5e-4, weight_decay_mode="decoupled"))])
    decoupled = dict(SGD, weight_decay_mode="decoupled")
    q = dataclasses.replace(two_phase(), optimizer=decoupled).with_weight_decay(0.0)
    assert q.optimizer == dict(decoupled, weight_decay=0.0)


def test_batch_size_sets_every_stage_and_keeps_fixed_steps():
    p = two_phase().with_batch_size(32)
    assert p.to_dict() == protocol_dict(
        SGD, [stage_dict("head", 32, 4, 10, dict(PLATEAU, min_lr=1e-6), None),
              stage_dict("all", 32, 6, None, dict(COSINE, lr=1e-3, eta_min=1e-5), ADAMW)])
    # the first stage keeps its 10 steps; the second derives them from the new batch size
    assert [p.steps_of(s, 1000) for s in p.stages] == [10, 31]


def test_overrides_compose_and_change_the_identity():
    p = two_phase()
    q = p.with_lr_scale(0.5).with_weight_decay(1e-3).with_batch_size(64)
    assert q.to_dict() == protocol_dict(
        dict(SGD, learning_rate=0.1 * 0.5, weight_decay=1e-3),
        [stage_dict("head", 64, 4, 10, dict(PLATEAU, min_lr=1e-6 * 0.5), None),
         stage_dict("all", 64, 6, None, dict(COSINE, lr=1e-3 * 0.5, eta_min=1e-5 * 0.5),
                    dict(ADAMW, learning_rate=1e-3 * 0.5, weight_decay=1e-3,
                         weight_decay_mode="decoupled"))])
    assert q.fingerprint() != p.fingerprint()
    for same in (p.with_lr_scale(None), p.with_lr_scale(1), p.with_weight_decay(None),
                 p.with_batch_size(None)):
        assert same is p


def test_an_unused_protocol_optimizer_is_left_alone():
    """When the first stage names its own optimizer, ``Protocol.optimizer`` is not trained
    with: it is neither scaled nor asked for a weight decay."""
    first = {"name": "sgd", "learning_rate": 0.01, "weight_decay": 0.0,
             "weight_decay_mode": "decoupled"}
    p = dataclasses.replace(two_phase(first), optimizer={"name": "adam"})
    q = p.with_lr_scale(10).with_weight_decay(2e-4)
    assert q.optimizer == {"name": "adam"}
    assert q.stages[0].optimizer == dict(first, learning_rate=0.01 * 10, weight_decay=2e-4)
    assert q.stages[1].optimizer == dict(ADAMW, learning_rate=1e-3 * 10, weight_decay=2e-4,
                                         weight_decay_mode="decoupled")


@pytest.mark.parametrize("policy,expected", [
    (Constant(0.1), Constant(0.3)),
    (Constant(None), Constant(None)),  # carry: the optimizer's (scaled) lr
    (Plateau(factor=0.5, patience=3, min_lr=1e-5, first_epoch=2, last_epoch=7),
     Plateau(factor=0.5, patience=3, min_lr=3e-5, first_epoch=2, last_epoch=7)),
    (Cyclic(base_lr=1e-4, max_lr=1e-2, step_size_epochs=2.0),
     Cyclic(base_lr=3e-4, max_lr=3e-2, step_size_epochs=2.0)),
    (StepDecay(lr=0.1, milestones=(3, 6), gamma=0.2),
     StepDecay(lr=0.3, milestones=(3, 6), gamma=0.2)),
    (Cosine(lr=0.1, t_max=10, eta_min=1e-3, per_iteration=True),
     Cosine(lr=0.3, t_max=10, eta_min=3e-3, per_iteration=True)),
    (CosineWarmRestarts(lr=0.1, t_0=5, t_mult=2, eta_min=0.0),
     CosineWarmRestarts(lr=0.3, t_0=5, t_mult=2, eta_min=0.0)),
    (NYURule(lr=0.1, first=100, second=150, factor=10.0),
     NYURule(lr=0.3, first=100, second=150, factor=10.0)),
])
def test_every_policy_scales_its_rates(policy, expected):
    scaled = policy.lr_scaled(3)
    assert type(scaled) is type(expected)
    for key, value in expected.to_dict().items():
        got = scaled.to_dict()[key]
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, key
    if policy.sets_lr() and not isinstance(policy, Plateau):  # the value at any position, x3
        for position in ((0, 0), (4, 13), (120, 1000)):
            assert scaled.value(*position, 10) == pytest.approx(3 * policy.value(*position, 10))
    assert policy.lr_scaled(1) is policy


def test_a_policy_that_does_not_declare_its_rates_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Mystery(LRPolicy):
        lr: float = 0.1
        kind: ClassVar[str] = "mystery"

    with pytest.raises(TinynetError, match="'mystery' does not declare"):
        Mystery().lr_scaled(2)


@pytest.mark.parametrize("change,message", [
    (lambda p: p.with_lr_scale(0), "--lr-scale must be a finite number > 0, got 0"),
    (lambda p: p.with_lr_scale(-2.0), "--lr-scale must be"),
    (lambda p: p.with_lr_scale(math.inf), "--lr-scale must be"),
    (lambda p: p.with_weight_decay(-1e-4), "--weight-decay must be a finite number >= 0"),
    (lambda p: p.with_weight_decay(math.nan), "--weight-decay must be"),
    (lambda p: p.with_batch_size(0), "--batch-size must be an integer >= 1, got 0"),
    (lambda p: p.with_batch_size(2.5), "--batch-size must be an integer"),
    (lambda p: dataclasses.replace(p, optimizer={"name": "adam"}).with_lr_scale(2),
     "no numeric \"learning_rate\" to scale"),
    (lambda p: dataclasses.replace(p, optimizer={"name": "adam", "learning_rate": 1e-3})
     .with_weight_decay(1e-4), "has no weight decay to set"),
])
def test_bad_overrides_are_refused(change, message):
    with pytest.raises(TinynetError, match=message.replace("(", r"\(")):
        change(two_phase())


def common_parser():
    from tinynet.experiment import OneLineParser, add_common_arguments
    parser = OneLineParser(prog="x.py")
    add_common_arguments(parser, "x")
    return parser


def test_flags_default_to_the_protocols_own_values():
    args = common_parser().parse_args([])
    assert (args.lr_scale, args.weight_decay, args.batch_size) == (None, None, None)
    args = common_parser().parse_args(["--lr-scale", "0.5", "--weight-decay", "0",
                                       "--batch-size", "32"])
    assert (args.lr_scale, args.weight_decay, args.batch_size) == (0.5, 0.0, 32)


@pytest.mark.parametrize("flags,message", [
    (["--lr-scale", "0"], "argument --lr-scale: expected a positive number, got '0'"),
    (["--weight-decay", "-1"], "argument --weight-decay: expected a number >= 0, got '-1'"),
    (["--weight-decay", "nan"], "argument --weight-decay: expected a number >= 0"),
    (["--batch-size", "1.5"], "argument --batch-size: expected a positive integer"),
])
def test_bad_flags_give_one_line(flags, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        common_parser().parse_args(flags)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.count("\n") == 1 and message in err


def test_run_experiment_applies_the_flags(monkeypatch):
    import tinynet.training.runner as runner
    from tinynet.experiment import run_experiment

    seen = {}

    def fake_run_protocol(protocol, **kwargs):
        seen["protocol"] = protocol
        return "model"

    monkeypatch.setattr(runner, "run_protocol", fake_run_protocol)
    args = argparse.Namespace(**dict(
        vars(common_parser().parse_args(["--lr-scale", "2", "--weight-decay", "3e-4",
                                         "--batch-size", "20", "--epochs-scale", "0.5",
                                         "--steps-per-epoch", "3"])),
        width=1.0, epochs_scale=0.5, checkpoint_every=None))
    data = types.SimpleNamespace(train=[None] * 100)
    assert run_experiment(args, two_phase(), "cifar_resnet", data=data) == "model"
    expected = (two_phase().scaled(0.5).with_steps(3).with_lr_scale(2)
                .with_weight_decay(3e-4).with_batch_size(20))
    assert seen["protocol"] == expected
    assert [(s.batch_size, s.epochs, s.steps_per_epoch) for s in expected.stages] == [
        (20, 2, 3), (20, 3, 3)]
    assert expected.optimizer["learning_rate"] == 0.2
    assert expected.stages[1].optimizer["weight_decay"] == 3e-4
