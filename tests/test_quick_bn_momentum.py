"""The DenseNet --quick demos use BatchNormalization momentum 0.9; the paper's runs keep 0.99.

A quick run is 72 (Model 2) or 168 (Model 1) steps: at momentum 0.99 its moving statistics
would still hold 49% / 18% of their initial variance 1, and the demos would validate near chance
while training accuracy rises.
"""
import keras
import pytest

from tinynet.models import get_model
from tinynet.papers import get_paper


def _load_script(name):
    return get_paper(name)


def _bn_momenta(model):
    return {layer.momentum for layer in model.layers
            if isinstance(layer, keras.layers.BatchNormalization)}


@pytest.mark.parametrize("name", ["densenet_model1", "densenet_model2"])
def test_bn_momentum_reaches_every_batch_norm(name):
    assert _bn_momenta(get_model(name, num_classes=5, width=0.125)) == {0.99}
    assert _bn_momenta(get_model(name, num_classes=5, width=0.125, bn_momentum=0.9)) == {0.9}


@pytest.mark.parametrize("name", ["densenet_model1", "densenet_model2"])
def test_only_quick_runs_change_the_model(name, tmp_path, monkeypatch):
    script = _load_script(name)
    calls = []
    monkeypatch.setattr(script, "run_experiment",
                        lambda *args, **kwargs: calls.append(kwargs.get("model_kwargs")))
    script.main(["--quick", "--run-dir", str(tmp_path / "quick")])
    script.main(["--run-dir", str(tmp_path / "paper")])
    own = getattr(script, "MODEL_KWARGS", {})  # Model 2: the notebook's kernel-only L2
    assert calls == [dict(own, bn_momentum=0.9), own or None]
