"""The Model 1 notebook protocol as data (docs/protocols.md, section DenseNet Model 1 and Model 2
(seed 002)), and how flags rescale it."""
import math

import pytest

from tinynet.errors import TinynetError
from tinynet.training.lr import Plateau
from tinynet.training.protocol import Protocol


def load_script(name):
    """The paper's module (``tinynet.papers``)."""
    from tinynet.papers import get_paper

    return get_paper(name)


@pytest.fixture(scope="module")
def model1():
    return load_script("densenet_model1")


def test_progressive_protocol_is_the_notebooks(model1):
    p = model1.PROGRESSIVE
    assert [(s.resolution, s.batch_size, s.epochs, s.steps_per_epoch) for s in p.stages] == [
        (32, 256, 15, 200), (64, 64, 30, 200), (16, 256, 10, 200), (64, 64, 15, 200),
        (64, 64, 175, 200)]
    assert p.total_epochs == 245 and p.val_resolution == 64
    assert p.optimizer == {"name": "adam", "learning_rate": 1e-3}
    assert [s.augment for s in p.stages] == [None] * 4 + ["densenet_model1"]
    plateaus = [s.lr if isinstance(s.lr, Plateau) else None for s in p.stages]
    assert plateaus[2] is None and plateaus[3] is None
    for q in (plateaus[0], plateaus[1], plateaus[4]):
        assert (q.factor, q.patience, q.min_lr) == (math.sqrt(0.1), 5, 0.5e-6)
    assert [(q.first_epoch, q.last_epoch) for q in (plateaus[0], plateaus[1], plateaus[4])] == [
        (0, None), (0, 15), (105, None)]


def test_fixed_64_ablation_keeps_everything_but_resolution(model1):
    fixed, prog = model1.FIXED_64, model1.PROGRESSIVE
    assert {s.resolution for s in fixed.stages} == {64}
    assert [s.epochs for s in fixed.stages] == [s.epochs for s in prog.stages]
    assert fixed.fingerprint() != prog.fingerprint()


def test_scaling_keeps_every_stage_and_plateau_window(model1):
    p = model1.PROGRESSIVE.scaled(0.02)
    assert [s.epochs for s in p.stages] == [1, 1, 1, 1, 4]
    windows = [(s.lr.first_epoch, s.lr.last_epoch) for s in p.stages if isinstance(s.lr, Plateau)]
    assert windows == [(0, None), (0, 1), (2, None)]
    assert p.with_steps(3).stages[4].steps_per_epoch == 3


def test_epoch_plan_streams_the_data(model1):
    p = model1.PROGRESSIVE.scaled(0.1)
    plan = p.epoch_plan(num_train=100_000)
    assert len(plan) == p.total_epochs
    assert plan[1].sample_offset == 200 * 256
    assert [e.stage_index for e in plan[:4]] == [0, 0, 1, 1]
    assert Protocol.from_dict(p.to_dict()) == p


def test_impossible_values_are_errors(model1):
    with pytest.raises(TinynetError, match="epochs-scale"):
        model1.PROGRESSIVE.scaled(0)
    with pytest.raises(TinynetError, match="steps-per-epoch"):
        model1.PROGRESSIVE.with_steps(0)
    with pytest.raises(TinynetError, match="unknown stage"):
        model1.PROGRESSIVE.select(["128px"])


@pytest.mark.parametrize("stage,message", [
    (dict(freeze="stem"), "freeze must be a tuple of layer names"),
    (dict(augment="cifar_crop_flip"), "takes 32 px images, the stage trains at 64 px"),
    (dict(augment="autoaugment"), "unknown augmentation recipe"),
])
def test_stages_are_checked_when_the_protocol_is_built(stage, message):
    from tinynet.training.protocol import Stage
    with pytest.raises(TinynetError, match=message):
        Protocol("x", (Stage("a", 64, 8, 1, **stage),), {"name": "adam"})


def test_impossible_mixup_and_plateau_are_refused():
    from tinynet.training.protocol import Mixup, Stage
    with pytest.raises(TinynetError, match="mixup needs"):
        Protocol("x", (Stage("a", 32, 8, 1, mixup=Mixup(per="batches")),), {"name": "adam"})
    with pytest.raises(TinynetError, match=r"factor must be in \(0, 1\)"):
        Plateau(factor=1.5, patience=5, min_lr=0)


def test_a_protocol_may_carry_its_own_normalisation_statistics():
    import json

    import numpy as np

    from tinynet.data.datasets import TrainData
    from tinynet.training.protocol import Stage
    stats = {"mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3]}
    p = Protocol("x", (Stage("a", 32, 8, 1),), {"name": "adam"}, normalize=stats)
    assert Protocol.from_dict(json.loads(json.dumps(p.to_dict()))) == p
    mean, std = TrainData.normalization(None, stats)
    assert mean.dtype == np.float32 and list(std) == pytest.approx(stats["std"])
    for bad in ({"mean": [0.5, 0.4], "std": [0.2, 0.2, 0.2]}, {"mean": [0, 0, 0], "std": [0, 1, 1]},
                {"mean": [0, 0, 0]}, "mean_stdev"):
        with pytest.raises(TinynetError, match="normalize must be one of"):
            Protocol("x", (Stage("a", 32, 8, 1),), {"name": "adam"}, normalize=bad)
