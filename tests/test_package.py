"""What ``import tinynet`` does: nothing heavy, no global side effects, and every custom Keras
object registered once Keras is there, so a saved model loads with plain ``load_model``."""
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO


def run(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip().splitlines()[-1]


def test_the_command_line_modules_start_no_tensorflow_and_leave_the_umask():
    # what an experiment script imports before it parses its arguments
    out = run("import os, sys; os.umask(0o027); import tinynet, tinynet.experiment, "
              "tinynet.training, tinynet.data.datasets, tinynet.augment; "
              "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules), "
              "os.umask(0o022) == 0o027)")
    assert out == "[] True"


@pytest.mark.slow  # (a fresh interpreter: CI's slow step)
def test_plots_leave_the_matplotlib_backend_alone():
    out = run("import matplotlib; matplotlib.use('svg'); import tinynet.plots, tinynet.evaluation; "
              "print(matplotlib.get_backend())")
    assert out == "svg"


@pytest.mark.slow  # (a fresh interpreter: CI's slow step)
def test_import_tinynet_then_load_model_in_a_fresh_process(tmp_path):
    from tinynet.models import get_model
    from tinynet.training.optimizers import make_optimizer
    from tinynet.training.losses import MixedTargetCrossentropy
    model = get_model("resnet18", num_classes=4, width=0.25, stochastic_depth=0.5,
                      batch_norm="fused", seed=0)
    model.compile(optimizer=make_optimizer({"name": "sgd", "learning_rate": 0.1, "momentum": 0.9,
                                            "weight_decay": 5e-4, "weight_decay_mode": "coupled"}),
                  loss=MixedTargetCrossentropy())
    path, x = tmp_path / "m.keras", np.random.default_rng(0).random((2, 64, 64, 3), np.float32)
    model.save(path)
    np.save(tmp_path / "x.npy", x)
    out = run(f"import tinynet, keras, numpy as np; m = keras.models.load_model({str(path)!r}); "
              f"np.save({str(tmp_path / 'y.npy')!r}, m.predict(np.load({str(tmp_path / 'x.npy')!r}), "
              f"verbose=0)); print(type(m.optimizer).__name__, type(m.loss).__name__)")
    assert out == "CoupledSGD MixedTargetCrossentropy"
    np.testing.assert_allclose(np.load(tmp_path / "y.npy"), model.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)
