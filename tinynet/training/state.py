"""The training state a run accumulates, and its one record in every checkpoint.

``TrainingState`` owns everything besides the model's and the optimizer's variables that a
resumed run needs to continue exactly as the uninterrupted run would: the history rows, the
best validation accuracy and the epoch that set it, the best of each stage a later stage
restarts from, the learning rate of every iteration, the state of every callback that keeps
one (``get_state``/``set_state``: ReduceLROnPlateau's wait and best), and inside an epoch the
steps done, that epoch's progress record and its running metric totals. ``dump`` writes it
into a checkpoint's meta record and ``restore`` reads it back from one: the two are each
other's inverse (tested), in the manner of Lightning's ``dump_checkpoint`` / ``restore_*``.
"""
import dataclasses
import json


@dataclasses.dataclass
class TrainingState:
    history: list = dataclasses.field(default_factory=list)  # one dict per finished epoch
    best: tuple | None = None  # (val_accuracy, global epoch, 1-based)
    stage_best: dict = dataclasses.field(default_factory=dict)  # stage index -> (acc, epoch)
    lrs: list = dataclasses.field(default_factory=list)  # (iteration, global epoch, lr)
    callback_states: dict = dataclasses.field(default_factory=dict)  # state_key -> record
    # resumed inside an epoch: steps of epoch ``completed`` done, its EpochEnd progress and its
    # running metric totals (None and 0 otherwise)
    steps_done: int = 0
    epoch_progress: dict | None = None
    metric_arrays: list | None = None
    # bookkeeping of this process: steps into the next epoch of the newest checkpoint, and the
    # seconds and cost units of the epochs trained here (the ETA)
    saved_steps: int = 0
    seconds: float = 0.0
    units: int = 0

    @property
    def completed(self):
        """Finished epochs."""
        return len(self.history)

    def record_epoch(self, row, stage_index, keep_stage_best, lrs):
        """Adds a finished epoch: its history ``row``, the best so far, the best of its stage
        when ``keep_stage_best`` (a later stage restarts from it), and its batches' lrs."""
        self.history.append(row)
        epoch = row["global_epoch"]
        if self.best is None or row["val_accuracy"] > self.best[0]:
            self.best = (row["val_accuracy"], epoch)
        if keep_stage_best and row["val_accuracy"] > self.stage_best.get(stage_index,
                                                                          (-1.0, 0))[0]:
            self.stage_best[stage_index] = (row["val_accuracy"], epoch)
        self.lrs.extend((it, epoch, value) for it, value in lrs)

    @staticmethod
    def callback_records(callbacks, stage_index):
        """``{state_key: {"stage", "state"}}`` of the callbacks that keep a state."""
        return {cb.state_key: {"stage": stage_index, "state": cb.get_state()}
                for cb in callbacks if hasattr(cb, "get_state")}

    def dump(self, completed, callback_states, seed, fingerprint, identity, steps=0,
             epoch_progress=None):
        """The checkpoint's meta record after ``completed`` epochs (and ``steps`` batches of
        the next, with that epoch's ``epoch_progress``). The keys and their order are the
        checkpoint format's."""
        meta = {"completed_epochs": completed, "seed": seed, "best": self.best,
                "callbacks": callback_states, "history": self.history,
                "stage_best": self.stage_best, "fingerprint": fingerprint,
                "identity": json.loads(json.dumps(identity))}
        if steps:
            meta.update(completed_steps=steps, epoch_progress=epoch_progress)
        return meta

    @classmethod
    def restore(cls, meta, arrays=None, lr_rows=()):
        """The state a checkpoint's ``meta`` (and its ``metric_*`` ``arrays``) records;
        ``lr_rows``: lr.csv's rows, of which those up to the checkpoint's epochs are kept
        (lr.csv may run ahead of the checkpoint, never behind)."""
        steps = meta.get("completed_steps", 0)
        history = meta["history"]
        metric_arrays = None
        if steps:
            names = sorted(k for k in arrays if k.startswith("metric_"))
            metric_arrays = [arrays[k] for k in names]
        return cls(history=history, best=tuple(meta["best"]) if meta["best"] else None,
                   stage_best={int(k): tuple(v) for k, v in meta.get("stage_best", {}).items()},
                   lrs=[r for r in lr_rows if r[1] <= len(history)],
                   callback_states=meta["callbacks"], steps_done=steps,
                   epoch_progress=meta.get("epoch_progress"), metric_arrays=metric_arrays,
                   saved_steps=steps)

    def left_epoch(self):
        """The epoch resumed inside is done: what only it needed is dropped."""
        self.steps_done, self.epoch_progress, self.metric_arrays = 0, None, None
