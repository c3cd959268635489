"""Every learning-rate policy against an independently written formula over a table of
positions, through its callback inside ``fit``, split in two fits (a resume), scaled and
serialised."""
import math

import keras
import numpy as np
import pytest

from tinynet.errors import TinynetError
from tinynet.training.callbacks import EpochEnd, ScheduleCallback
from tinynet.training.lr import (Constant, Cosine, CosineWarmRestarts, Cyclic, NYURule, Plateau,
                                 StepDecay, policy_from_dict)
from tinynet.training.protocol import Protocol, Stage

STEPS = 4  # iterations per epoch in these tables


def pytorch_multistep(lr, milestones, gamma, epoch):
    """torch.optim.lr_scheduler.MultiStepLR after ``epoch`` scheduler steps."""
    return lr * gamma ** len([m for m in milestones if m <= epoch])


def pytorch_cosine(lr, t_max, eta_min, t):
    """CosineAnnealingLR's closed form (its _get_closed_form_lr)."""
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / t_max)) / 2


def sgdr(lr, t_0, t_mult, eta_min, t):
    """SGDR eq. 5, with PyTorch CosineAnnealingWarmRestarts' restart arithmetic."""
    if t_mult == 1:
        t_cur, t_i = t % t_0, t_0
    else:
        n = int(math.log(t / t_0 * (t_mult - 1) + 1, t_mult))
        t_cur, t_i = t - t_0 * (t_mult ** n - 1) / (t_mult - 1), t_0 * t_mult ** n
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t_cur / t_i)) / 2


def nyu_code(epochs, lr=0.1):
    """The NYU training loop's lr per epoch (resnet.py with -an -sc), written out: the cosine
    scheduler steps, then the rule overwrites the param group with the running value."""
    out, group_lr, running = [], lr, lr
    for epoch in range(epochs):
        out.append(group_lr)  # this epoch trains with the group's lr
        group_lr = pytorch_cosine(lr, 200, 0, epoch + 1)  # scheduler.step(), overwritten below
        if epoch >= 100:
            running /= 10
        if epoch >= 150:
            running /= 10
        group_lr = running
    return out


EPOCH_TABLE = [0, 1, 2, 5, 9, 10, 11, 29, 30, 31, 69, 70, 99, 100, 101, 102, 150, 151, 160]


def test_step_milestones():
    p = StepDecay(0.1, (30, 60, 90), 0.1)
    for e in EPOCH_TABLE:
        assert p.value(e, e * STEPS, STEPS) == pytest.approx(pytorch_multistep(0.1, (30, 60, 90), 0.1, e))


@pytest.mark.parametrize("eta_min", [0.0, 1e-4])
def test_cosine_per_epoch_and_per_iteration(eta_min):
    p = Cosine(0.1, t_max=200, eta_min=eta_min)
    for e in EPOCH_TABLE:
        assert p.value(e, e * STEPS + 3, STEPS) == pytest.approx(pytorch_cosine(0.1, 200, eta_min, e))
    q = Cosine(0.1, t_max=10, eta_min=eta_min, per_iteration=True)
    for it in range(0, 60, 7):
        assert q.value(it // STEPS, it, STEPS) == pytest.approx(
            pytorch_cosine(0.1, 10, eta_min, it / STEPS))


@pytest.mark.parametrize("t_0,t_mult", [(10, 2), (5, 1), (1, 2), (3, 3)])
def test_sgdr_restarts(t_0, t_mult):
    p = CosineWarmRestarts(0.1, t_0=t_0, t_mult=t_mult, eta_min=1e-3)
    for it in [0, 1, 3, 4, 17, 39, 40, 41, 119, 120, 121, 279, 280, 600]:
        assert p.value(it // STEPS, it, STEPS) == pytest.approx(
            sgdr(0.1, t_0, t_mult, 1e-3, it / STEPS), abs=1e-12)
    assert p.value(0, 0, STEPS) == 0.1  # a run starts at the top


def test_sgdr_restarts_at_the_top_of_each_run():
    p = CosineWarmRestarts(0.1, t_0=10, t_mult=2)
    for start in (10, 30, 70, 150):
        assert p.value(start, start * STEPS, STEPS) == pytest.approx(0.1)
        assert p.value(start, start * STEPS - 1, STEPS) < 0.001


def test_nyu_rule_is_the_codes_loop():
    p = NYURule()
    expected = nyu_code(200)
    got = [p.value(e, e * STEPS, STEPS) for e in range(200)]
    assert got == expected  # float for float: the same running division
    assert got[:101] == [0.1] * 101 and got[101] == pytest.approx(0.01)
    assert got[102] == pytest.approx(0.001)


def test_constant_and_carry():
    assert Constant(0.05).value(7, 99, STEPS) == 0.05
    assert Constant().value(0, 0, STEPS) is None and Constant().callback(0, 0, STEPS) is None


def test_cyclic_matches_the_callback_formula():
    from tinynet.training.schedules import cyclic_lr
    p = Cyclic(1e-4, 6e-4, step_size_epochs=2, mode="triangular2")
    for it in range(40):
        assert p.value(it // STEPS, it, STEPS) == cyclic_lr(it, 1e-4, 6e-4, 8, "triangular2")


def _fit(model, callbacks, epochs, initial_epoch=0, steps=STEPS):
    x = np.random.default_rng(0).random((steps * 2, 3), np.float32)
    model.fit(x, x[:, :1], batch_size=2, epochs=epochs, initial_epoch=initial_epoch,
              verbose=0, callbacks=callbacks, shuffle=False)


def _model():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
    return model


POLICIES = [StepDecay(0.1, (2, 4), 0.5), Cosine(0.1, 5), Cosine(0.1, 3, 1e-3, per_iteration=True),
            CosineWarmRestarts(0.1, t_0=1, t_mult=2), NYURule(0.1, first=2, second=4),
            Cyclic(1e-3, 1e-2, 0.75), Constant(0.02)]


def _recorded(policy, split=None, epochs=6):
    """Every batch's lr as the optimizer saw it, in one fit or in two (a resume)."""
    seen = []

    class Spy(keras.callbacks.Callback):
        def on_train_batch_begin(self, batch, logs=None):
            seen.append(float(self.model.optimizer.learning_rate.numpy()))

    model = _model()
    if split is None:
        _fit(model, [policy.callback(0, 0, STEPS), Spy()], epochs)
        return seen
    _fit(model, [policy.callback(0, 0, STEPS), Spy()], split)
    resumed = _model()
    resumed.optimizer.build(resumed.trainable_variables)
    for a, b in zip(model.optimizer.variables, resumed.optimizer.variables):
        b.assign(a)  # what a checkpoint restores: the iteration count positions the policy
    _fit(resumed, [policy.callback(0, 0, STEPS), Spy()], epochs, initial_epoch=split)
    return seen


@pytest.mark.parametrize("policy", POLICIES, ids=lambda p: p.kind)
def test_callback_sets_the_policy_and_a_resume_continues_it(policy):
    whole = _recorded(policy)
    expected = [policy.value(it // STEPS, it, STEPS) for it in range(6 * STEPS)]
    np.testing.assert_allclose(whole, expected, rtol=1e-6)  # float32 variable
    assert _recorded(policy, split=3) == whole


def test_stage_offsets_position_the_policy():
    """In a later stage the policy counts from the stage's first epoch and iteration."""
    policy = StepDecay(0.1, (1,), 0.1)
    model = _model()
    model.optimizer.build(model.trainable_variables)
    model.optimizer.iterations.assign(5 * STEPS)
    cb = ScheduleCallback(policy, stage_start_epoch=5, stage_start_iteration=5 * STEPS,
                          steps_per_epoch=STEPS)
    lrs = []
    ee = EpochEnd(lambda e, logs, lr, s, rows: lrs.append(lr), first_iteration=5 * STEPS)
    _fit(model, [cb, ee], epochs=7, initial_epoch=5)
    assert lrs == pytest.approx([0.1, 0.01])


@pytest.mark.parametrize("policy", POLICIES + [Plateau(0.5, 3, 1e-6, first_epoch=2, last_epoch=8)],
                         ids=lambda p: p.kind)
def test_serialisation_round_trip_and_description(policy):
    assert policy_from_dict(policy.to_dict()) == policy
    assert policy.describe(STEPS) and "\n" not in policy.describe(STEPS)


def test_scaling_under_epochs_scale():
    assert StepDecay(0.1, (100, 150)).scaled(200, 20).milestones == (10, 15)
    assert Cosine(0.1, 200).scaled(200, 50).t_max == 50
    assert CosineWarmRestarts(0.1, 10, 2).scaled(200, 20).t_0 == 1
    assert (NYURule().scaled(200, 8).first, NYURule().scaled(200, 8).second) == (4, 6)
    assert Cyclic(1e-4, 6e-4, 6).scaled(24, 12).step_size_epochs == 3
    assert Plateau(0.1, 5, 0, first_epoch=105).scaled(175, 4) == Plateau(0.1, 5, 0, first_epoch=2)
    p = Protocol("x", (Stage("a", 32, 8, 200, lr=NYURule()),), {"name": "sgd"}).scaled(0.04)
    assert p.stages[0].epochs == 8 and p.stages[0].lr.first == 4


@pytest.mark.parametrize("make", [
    lambda: StepDecay(-0.1), lambda: StepDecay(0.1, (5, 3)), lambda: Cosine(0.1, 0),
    lambda: CosineWarmRestarts(0.1, t_mult=0.5), lambda: Cyclic(1e-3, 1e-4, 2),
    lambda: Constant(float("nan")), lambda: policy_from_dict({"kind": "exponential"})])
def test_impossible_policies_are_one_line_errors(make):
    with pytest.raises(TinynetError) as e:
        make()
    assert "\n" not in str(e.value)
