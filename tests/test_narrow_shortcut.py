"""The crash once blamed on the native augmentation backend: TensorFlow 2.21's oneDNN CPU kernel
for the weight gradient of a strided 1x1 convolution corrupts the heap on inputs of at most 8
channels at 48 px and more (docs/faults.md). A narrow ResNet at 64 px (``--width 0.125`` and
below) has such projection shortcuts; they are built as a 1x1 max pool at the stride followed by
the 1x1 convolution at stride 1 -- the same function, the same kernel -- and every recipe trains
through the native backend, at both image sizes, repeatedly (the test removed when the crash was
not understood)."""
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO

TRAIN_NARROW = """
import sys
sys.path.insert(0, {repo!r})
import numpy as np, keras
from tinynet.models import get_model
m = get_model("resnet18", num_classes=5, width={width}, input_shape=(64, 64, 3))
m.compile(optimizer=keras.optimizers.SGD(0.01), loss="sparse_categorical_crossentropy")
x = np.random.default_rng(0).random((8, 64, 64, 3), dtype=np.float32)
for _ in range(3):
    loss = m.train_on_batch(x, np.arange(8) % 5)
print("trained", np.isfinite(loss))
"""


def test_narrow_projection_shortcuts_are_the_same_function_in_two_layers(monkeypatch):
    import keras

    from tinynet.models import get_model, resnet

    narrow = get_model("resnet18", num_classes=5, width=0.0625, input_shape=(64, 64, 3))
    names = [layer.name for layer in narrow.layers]
    # stage 1 has 4 channels: stage 2's projection is fenced; stage 3's (8) too, stage 4's not
    assert "stage2_block1_shortcut_conv_subsample" in names
    assert "stage3_block1_shortcut_conv_subsample" in names
    assert "stage4_block1_shortcut_conv_subsample" not in names
    conv = narrow.get_layer("stage2_block1_shortcut_conv")
    assert conv.strides == (1, 1) and conv.kernel.shape == (1, 1, 4, 8)
    assert narrow.get_layer("stage4_block1_shortcut_conv").strides == (2, 2)
    full = get_model("resnet18", num_classes=200, input_shape=(64, 64, 3))
    assert not any(l.name.endswith("_subsample") for l in full.layers)
    with monkeypatch.context() as m:  # the same model unfenced: the same weights
        m.setattr(resnet, "NARROW_CHANNELS", 0)
        unfenced = get_model("resnet18", num_classes=5, width=0.0625, input_shape=(64, 64, 3))
    assert [(w.path, w.shape) for w in unfenced.weights] == [
        (w.path, w.shape) for w in narrow.weights]

    # the fenced layers compute the strided convolution (forward, where nothing crashes)
    x = np.random.default_rng(1).random((2, 64, 64, 4)).astype("float32")
    sub = narrow.get_layer("stage2_block1_shortcut_conv_subsample")
    fenced = keras.ops.convert_to_numpy(conv(sub(x)))
    strided = keras.ops.convert_to_numpy(keras.ops.conv(x, conv.kernel, strides=2,
                                                        padding="same"))
    np.testing.assert_allclose(fenced, strided, rtol=1e-6, atol=1e-6)
    assert fenced.shape == (2, 32, 32, 8)


@pytest.mark.parametrize("width", [0.0625, 0.125])
def test_narrow_resnet_trains_at_64_px_without_crashing(width):
    """In a child process: before the fence this process died of SIGSEGV or SIGABRT."""
    proc = subprocess.run([sys.executable, "-c", TRAIN_NARROW.format(repo=REPO, width=width)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert "trained True" in proc.stdout


EVERY_RECIPE = """
import csv, os, sys
sys.path.insert(0, {repo!r})
import numpy as np
from tinynet.augment import get_recipe, list_recipes
from tinynet.data.datasets import get_dataset
from tinynet.training.lr import Constant
from tinynet.training.protocol import Protocol, Stage
from tinynet.training.runner import run_protocol

data = get_dataset("tiny-imagenet", data_dir={data!r}, download=False, cache="memory")
for round in range({rounds}):
    for recipe in list_recipes():
        fixed = get_recipe(recipe).input_size
        for size in [fixed] if fixed else [32, 64]:
            p = Protocol(name="recipe", optimizer={{"name": "sgd", "learning_rate": 0.01}},
                         val_resolution=size, eval_batch_size=20,
                         stages=(Stage("s", size, 8, 1, steps_per_epoch=2, augment=recipe,
                                       lr=Constant()),))
            run_dir = os.path.join({out!r}, f"{{round}}-{{recipe}}-{{size}}")
            run_protocol(p, model_name="resnet18", data=data, run_dir=run_dir,
                         model_kwargs={{"width": 0.0625, "input_shape": (size, size, 3)}},
                         augment_backend="native", log=lambda line: None)
            rows = list(csv.DictReader(open(os.path.join(run_dir, "history.csv"))))
            assert len(rows) == 1 and np.isfinite(float(rows[0]["loss"])), (recipe, size)
            print("trained", round, recipe, size, flush=True)
"""


@pytest.mark.slow
def test_every_recipe_trains_through_the_native_backend_repeatedly(small_root, tmp_path):
    """The removed test, under its conditions (one process, every recipe through
    ``run_protocol``, ResNet-18 at 1/16 width), at 32 and 64 px, twice over."""
    from tinynet.augment import get_recipe, list_recipes

    expected = 2 * sum(1 if get_recipe(r).input_size else 2 for r in list_recipes())
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c",
         EVERY_RECIPE.format(repo=REPO, data=small_root, rounds=2, out=str(tmp_path))],
        capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert proc.stdout.count("trained") == expected
