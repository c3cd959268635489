"""A training protocol as data: a list of ``Stage``s run in order on one model.

Weights and optimizer state (learning rate included) carry from stage to stage, as when the
original notebooks saved the model after a stage and re-loaded it for the next. A stage fixes
the training resolution, batch size, number of epochs and steps per epoch ("epoch" is a fixed
number of batches, as in the papers' code, not necessarily a pass over the data), whether the
augmentation recipe is applied, and its learning-rate policy: the window of epochs where
ReduceLROnPlateau is active, or a cyclical learning rate (``Cyclic``), never both. A stage
may also start from the best-val_accuracy weights of the stage before (``restart_from_best``,
as DenseNet Model 2's phases did).

Everything derived (global epoch numbers, where in the data stream an epoch starts, relative
cost for the ETA) is computed here from the stages, never typed.
"""
import dataclasses
import hashlib
import json

from tinynet.errors import TinynetError


@dataclasses.dataclass(frozen=True)
class Plateau:
    """ReduceLROnPlateau, active for stage epochs ``[first_epoch, last_epoch)`` (None: to the end).

    Its wait/best/cooldown state starts fresh at ``first_epoch`` (the original called ``fit``
    anew with a new callback) and is checkpointed, so a resumed run continues it exactly.
    """

    factor: float
    patience: int
    min_lr: float
    monitor: str = "val_loss"
    first_epoch: int = 0
    last_epoch: int | None = None

    def active(self, stage_epoch):
        return self.first_epoch <= stage_epoch and (
            self.last_epoch is None or stage_epoch < self.last_epoch)


@dataclasses.dataclass(frozen=True)
class Cyclic:
    """CyclicLR for one stage (``tinynet.training.schedules``); the cycle starts at the stage.

    ``step_size_epochs`` is the half-cycle in epochs of this stage, turned into iterations with
    the stage's steps per epoch, so it follows the dataset size instead of being typed.
    """

    base_lr: float
    max_lr: float
    step_size_epochs: float
    mode: str = "triangular2"
    gamma: float = 1.0


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    resolution: int
    batch_size: int
    epochs: int
    steps_per_epoch: int | None = None  # None: one pass over the training set per epoch
    augment: str | None = None  # recipe name from tinynet.augment, or None
    plateau: Plateau | None = None
    cyclic: Cyclic | None = None
    restart_from_best: bool = False  # load the previous stage's best-val_accuracy weights
    learning_rate: float | None = None  # set at the stage's start (step schedules); None: carry


@dataclasses.dataclass(frozen=True)
class EpochPlan:
    """Where one global epoch sits in the protocol."""

    global_epoch: int
    stage_index: int
    stage_epoch: int
    steps: int
    sample_offset: int  # position in the data stream where this epoch starts


@dataclasses.dataclass(frozen=True)
class Protocol:
    name: str
    stages: tuple
    optimizer: dict  # {"name": "adam", "learning_rate": 1e-3, ...}: keras.optimizers.get config
    val_resolution: int = 64
    eval_batch_size: int = 128

    def __post_init__(self):
        if not self.stages:
            raise TinynetError(f"protocol {self.name!r} has no stages")
        for s in self.stages:
            if s.epochs < 1 or s.batch_size < 1 or s.resolution < 1 or (
                    s.steps_per_epoch is not None and s.steps_per_epoch < 1):
                raise TinynetError(f"stage {s.name!r}: epochs, batch size, resolution and steps "
                                   f"per epoch must be positive, got {s}")
            if s.plateau is not None and s.cyclic is not None:
                raise TinynetError(f"stage {s.name!r} has both ReduceLROnPlateau and CyclicLR; "
                                   f"each sets the learning rate: give a stage one lr policy")
        if self.stages[0].restart_from_best:
            raise TinynetError(f"the first stage ({self.stages[0].name!r}) has no stage before "
                               f"it to restart from")

    # -- derived views -------------------------------------------------------------------
    def steps_of(self, stage, num_train):
        return stage.steps_per_epoch or max(1, num_train // stage.batch_size)

    def epoch_plan(self, num_train):
        """One ``EpochPlan`` per global epoch."""
        plan, offset, g = [], 0, 0
        for i, stage in enumerate(self.stages):
            steps = self.steps_of(stage, num_train)
            for e in range(stage.epochs):
                plan.append(EpochPlan(g, i, e, steps, offset))
                offset += steps * stage.batch_size
                g += 1
        return plan

    @property
    def total_epochs(self):
        return sum(s.epochs for s in self.stages)

    def stage_start(self, index):
        return sum(s.epochs for s in self.stages[:index])

    def iterations_before(self, global_epoch, num_train):
        """Training iterations (batches) run before ``global_epoch`` starts."""
        return sum(p.steps for p in self.epoch_plan(num_train)[:global_epoch])

    def cyclic_step_size(self, stage, num_train):
        """A cyclic stage's half-cycle in iterations."""
        return max(1, round(stage.cyclic.step_size_epochs * self.steps_of(stage, num_train)))

    # -- command-line overrides ------------------------------------------------------------
    def scaled(self, epochs_scale):
        """Every stage's epochs (and plateau window) times ``epochs_scale``, at least 1 epoch."""
        if not epochs_scale > 0:
            raise TinynetError(f"--epochs-scale must be > 0, got {epochs_scale}")
        if epochs_scale == 1:
            return self

        def scale(n, limit):
            return min(limit, max(0, round(n * epochs_scale)))

        stages = []
        for s in self.stages:
            epochs = max(1, round(s.epochs * epochs_scale))
            plateau = s.plateau
            if plateau is not None:
                first = min(scale(plateau.first_epoch, epochs), epochs - 1)
                # a window that was not empty stays at least one epoch long
                last = (None if plateau.last_epoch is None
                        else max(first + 1, scale(plateau.last_epoch, epochs)))
                plateau = dataclasses.replace(plateau, first_epoch=first, last_epoch=last)
            cyclic = s.cyclic
            if cyclic is not None:  # keep the number of cycles per stage
                cyclic = dataclasses.replace(
                    cyclic, step_size_epochs=cyclic.step_size_epochs * epochs / s.epochs)
            stages.append(dataclasses.replace(s, epochs=epochs, plateau=plateau, cyclic=cyclic))
        return dataclasses.replace(self, stages=tuple(stages))

    def with_steps(self, steps_per_epoch):
        if steps_per_epoch is None:
            return self
        if steps_per_epoch < 1:
            raise TinynetError(f"--steps-per-epoch must be >= 1, got {steps_per_epoch}")
        return dataclasses.replace(self, stages=tuple(
            dataclasses.replace(s, steps_per_epoch=steps_per_epoch) for s in self.stages))

    def select(self, names):
        """The sub-protocol of the named stages, in protocol order."""
        unknown = set(names) - {s.name for s in self.stages}
        if unknown:
            raise TinynetError(f"unknown stage(s) {sorted(unknown)}; this protocol has "
                               f"{[s.name for s in self.stages]}")
        return dataclasses.replace(self, stages=tuple(s for s in self.stages if s.name in names))

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        stages = tuple(Stage(**{**s, "plateau": Plateau(**s["plateau"]) if s["plateau"] else None,
                                "cyclic": Cyclic(**s["cyclic"]) if s.get("cyclic") else None})
                       for s in d["stages"])
        return cls(**{**d, "stages": stages})

    def fingerprint(self):
        blob = json.dumps(self.to_dict(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]

    def cost_units(self, num_train):
        """Relative compute per global epoch (images x pixels), for the whole-protocol ETA."""
        return [p.steps * self.stages[p.stage_index].batch_size
                * self.stages[p.stage_index].resolution ** 2 for p in self.epoch_plan(num_train)]


def describe(protocol, num_train):
    lines = [f"protocol {protocol.name}: {protocol.total_epochs} epochs"]
    for i, s in enumerate(protocol.stages, start=1):
        plateau = ""
        if s.plateau:
            last = s.plateau.last_epoch if s.plateau.last_epoch is not None else s.epochs
            plateau = f", ReduceLROnPlateau epochs {s.plateau.first_epoch + 1}-{last}"
        cyclic = ""
        if s.cyclic:
            c = s.cyclic
            cyclic = (f", CyclicLR {c.mode} {c.base_lr:g}-{c.max_lr:g} step "
                      f"{protocol.cyclic_step_size(s, num_train)}")
        if s.learning_rate is not None:
            cyclic += f", lr {s.learning_rate:g}"
        lines.append(f"  stage {i} {s.name}: {s.resolution}px, batch {s.batch_size}, "
                     f"{s.epochs} epochs x {protocol.steps_of(s, num_train)} steps"
                     f"{', augment ' + s.augment if s.augment else ''}{plateau}{cyclic}"
                     f"{', from the best of the stage before' if s.restart_from_best else ''}")
    return "\n".join(lines)
