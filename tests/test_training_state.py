"""The training state's one record in a checkpoint (``TrainingState.dump`` / ``restore``, each
the other's inverse), and the one definition of "the same run" and "the same data"
(``tinynet.training.identity``) that training and evaluation share."""
import dataclasses
import json

import numpy as np
import pytest

from tinynet.errors import TinynetError
from tinynet.training.identity import check_same_run, dataset_identity, same_value
from tinynet.training.state import TrainingState


def _row(epoch, acc):
    return {"stage": 1, "resolution": 32, "epoch": epoch, "global_epoch": epoch, "lr": 0.1,
            "loss": 1.0, "accuracy": 0.5, "top5": 0.9, "val_loss": 1.1, "val_accuracy": acc,
            "val_top5": 0.9, "seconds": 1.5}


def _through_json(meta):
    """As a checkpoint stores and reads it (``np.asarray(json.dumps(meta))``)."""
    return json.loads(str(np.asarray(json.dumps(meta))))


def _state():
    state = TrainingState()
    for epoch, acc in ((1, 0.3), (2, 0.5), (3, 0.4)):
        state.record_epoch(_row(epoch, acc), 0, keep_stage_best=True,
                           lrs=[(2 * epoch - 2, 0.1), (2 * epoch - 1, 0.1)])
    state.callback_states = {"reduce_lr_on_plateau": {"stage": 0, "state": {
        "wait": 1, "best": 1.1, "cooldown_counter": 0}}}
    return state


def test_epoch_records_best_and_stage_best():
    state = _state()
    assert state.completed == 3
    assert state.best == (0.5, 2) and state.stage_best == {0: (0.5, 2)}
    assert state.lrs[-1] == (5, 3, 0.1) and len(state.lrs) == 6


def test_dump_and_restore_are_inverse_at_an_epoch_end():
    state = _state()
    meta = _through_json(state.dump(3, state.callback_states, seed=7, fingerprint="abc",
                                    identity={"seed": 7}))
    assert list(meta) == ["completed_epochs", "seed", "best", "callbacks", "history",
                          "stage_best", "fingerprint", "identity"]  # the checkpoint format
    lr_rows = state.lrs + [(6, 4, 0.1)]  # lr.csv ran ahead of the checkpoint: dropped
    restored = TrainingState.restore(meta, {}, lr_rows)
    assert restored == dataclasses.replace(state, saved_steps=0)
    again = _through_json(restored.dump(3, restored.callback_states, 7, "abc", {"seed": 7}))
    assert again == meta


def test_dump_and_restore_are_inverse_inside_an_epoch():
    state = _state()
    progress = {"lrs": [[6, 0.1]], "epoch_lr": 0.1, "seconds": 0.25}
    meta = _through_json(state.dump(3, state.callback_states, 7, "abc", {}, steps=1,
                                    epoch_progress=progress))
    assert meta["completed_steps"] == 1 and meta["epoch_progress"] == progress
    totals = {"metric_00000": np.float32(2.5), "metric_00001": np.float32(4.0),
              "model_00000": np.zeros(2)}
    restored = TrainingState.restore(meta, totals, state.lrs)
    assert (restored.steps_done, restored.saved_steps, restored.epoch_progress) == (1, 1, progress)
    assert [float(a) for a in restored.metric_arrays] == [2.5, 4.0]
    restored.left_epoch()
    assert (restored.steps_done, restored.epoch_progress, restored.metric_arrays) == (0, None, None)


def test_skip_corrupt_and_where_the_data_lives_are_not_the_datas_identity():
    a = {"name": "tiny-imagenet", "args": {"data_dir": "/a", "skip_corrupt": False,
                                           "cache": "auto", "download": True}}
    b = {"name": "tiny-imagenet", "args": {"data_dir": "/b", "skip_corrupt": True,
                                           "cache": "memory", "download": False}}
    assert dataset_identity(a) == dataset_identity(b) == {"name": "tiny-imagenet", "args": {}}
    assert same_value("dataset_spec", a, b)
    split = {"name": "cifar10", "args": {"val_split": 5000, "split_seed": 43}}
    other = {"name": "cifar10", "args": {"val_split": 5000, "split_seed": 44}}
    assert not same_value("dataset_spec", split, other)


def test_a_different_recorded_run_is_refused_in_one_line():
    stored = {"seed": 1, "dataset_spec": {"name": "cifar10", "args": {"skip_corrupt": True}}}
    ours = {"seed": 1, "dataset_spec": {"name": "cifar10", "args": {"skip_corrupt": False}}}
    check_same_run(stored, ours, "runs/x")  # skip_corrupt alone: the same run
    with pytest.raises(TinynetError, match=r"runs/x holds a run with a different seed \(1 in "
                                           r"config.json, 2 now\); choose another --run-dir, or "
                                           r"pass --restart"):
        check_same_run(stored, dict(ours, seed=2), "runs/x")
    # keys added after a run was made read as their default
    check_same_run(stored, dict(ours, precision="float32"), "runs/x")
    with pytest.raises(TinynetError, match="different precision"):
        check_same_run(stored, dict(ours, precision="mixed_float16"), "runs/x")
