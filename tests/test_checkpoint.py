"""Atomic epoch checkpoints: bit-exact restore, fallback past a bad file, nothing half-written."""
import os

import keras
import numpy as np
import pytest

from tinynet import io as tio
from tinynet.errors import TinynetError
from tinynet.models import get_model
from tinynet.training import checkpoint


def trained_model(seed=0):
    keras.utils.set_random_seed(seed)
    model = get_model("densenet_model1", num_classes=4, width=0.0625)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(seed).random((8, 16, 16, 3), np.float32)
    model.fit(x, np.arange(8) % 4, batch_size=4, epochs=1, verbose=0)
    return model


def fresh_model():
    model = get_model("densenet_model1", num_classes=4, width=0.0625)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    model.optimizer.build(model.trainable_variables)
    return model


def test_restore_is_bit_exact(tmp_path):
    model = trained_model()
    checkpoint.save_checkpoint(str(tmp_path), model, model.optimizer,
                               {"completed_epochs": 3, "history": [{"loss": 1.0}]})
    path, meta, arrays = checkpoint.load_latest_checkpoint(str(tmp_path))
    assert os.path.basename(path) == "ckpt-00003.npz" and meta["history"] == [{"loss": 1.0}]
    other = fresh_model()
    checkpoint.restore_variables(other, other.optimizer, meta, arrays, path)
    for a, b in zip(model.variables + model.optimizer.variables,
                    other.variables + other.optimizer.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert int(other.optimizer.iterations.numpy()) == 2


def test_keeps_the_newest_two_and_falls_back_past_a_corrupt_one(tmp_path):
    model = trained_model()
    for epoch in (1, 2, 3):
        checkpoint.save_checkpoint(str(tmp_path), model, model.optimizer, {"completed_epochs": epoch})
    names = [os.path.basename(p) for p in checkpoint.list_checkpoints(str(tmp_path))]
    assert names == ["ckpt-00003.npz", "ckpt-00002.npz"]
    newest = checkpoint.checkpoint_path(str(tmp_path), 3)
    with open(newest, "r+b") as f:  # a torn write: only half of the file reached the disk
        f.truncate(os.path.getsize(newest) // 2)
    warnings = []
    path, meta, _ = checkpoint.load_latest_checkpoint(str(tmp_path), warnings.append)
    assert meta["completed_epochs"] == 2 and "ckpt-00003.npz is unreadable" in warnings[0]


@pytest.mark.slow  # (a fresh interpreter: CI's slow step)
def test_a_write_killed_midway_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    model = trained_model()
    checkpoint.save_checkpoint(str(tmp_path), model, model.optimizer, {"completed_epochs": 1})
    real_savez = np.savez

    def dies_midway(f, **arrays):
        f.write(b"PK\x03\x04 partial")
        raise KeyboardInterrupt  # the process is interrupted while the file is being written

    monkeypatch.setattr(np, "savez", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save_checkpoint(str(tmp_path), model, model.optimizer, {"completed_epochs": 2})
    monkeypatch.setattr(np, "savez", real_savez)
    assert os.listdir(tmp_path / "checkpoints") == ["ckpt-00001.npz"]
    _, meta, _ = checkpoint.load_latest_checkpoint(str(tmp_path))
    assert meta["completed_epochs"] == 1


@pytest.mark.slow  # (builds or trains models for seconds: CI's slow step)
def test_a_checkpoint_of_another_model_is_refused(tmp_path):
    model = trained_model()
    checkpoint.save_checkpoint(str(tmp_path), model, model.optimizer, {"completed_epochs": 1})
    _, meta, arrays = checkpoint.load_latest_checkpoint(str(tmp_path))
    other = get_model("densenet_model2", num_classes=4, width=0.0625)
    other.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    other.optimizer.build(other.trainable_variables)
    with pytest.raises(TinynetError, match="does not match this model.*--restart"):
        checkpoint.restore_variables(other, other.optimizer, meta, arrays)


def test_atomic_text_write_replaces_whole_files(tmp_path):
    target = tmp_path / "state.json"
    tio.write_json_atomic(target, {"a": 1})
    tio.write_json_atomic(target, {"a": 2})
    assert tio.read_json(target) == {"a": 2}
    assert os.listdir(tmp_path) == ["state.json"]
