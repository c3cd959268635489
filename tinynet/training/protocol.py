"""A training protocol as data: a list of ``Stage``s run in order on one model.

Weights and optimizer state (learning rate included) carry from stage to stage, as when the
original notebooks saved the model after a stage and re-loaded it for the next. A stage fixes
the training resolution, batch size, number of epochs and steps per epoch ("epoch" is a fixed
number of batches, as in the papers' code, not necessarily a pass over the data), the
augmentation recipe and batch transform (mixup), and its training set-up: one learning-rate
policy (``Stage.lr``, see ``tinynet.training.lr``), optionally a new optimizer (otherwise the
previous stage's, state included), the layers it keeps frozen, and the loss. A stage may also
start from the best-val_accuracy weights of the stage before (``restart_from_best``, as
DenseNet Model 2's phases did).

Everything derived (global epoch numbers, where in the data stream an epoch starts, which
optimizer a stage trains with and its iteration count, relative cost for the ETA) is computed
here from the stages, never typed.
"""
import dataclasses
import hashlib
import json
import math

from tinynet.augment.recipes import get_recipe
from tinynet.errors import TinynetError
from tinynet.training.lr import Constant, Cyclic, LRPolicy, Plateau, policy_from_dict  # noqa: F401

LOSSES = ("crossentropy",)
NORMALIZATIONS = (None, "mean", "mean_std")


def _explicit_statistics(value):
    """Whether ``value`` is ``{"mean": [3 numbers], "std": [3 positive numbers]}``."""
    try:
        return (isinstance(value, dict) and set(value) == {"mean", "std"}
                and len(value["mean"]) == 3 and len(value["std"]) == 3
                and all(float(m) == float(m) for m in value["mean"])
                and all(float(v) > 0 for v in value["std"]))
    except (TypeError, ValueError):
        return False


@dataclasses.dataclass(frozen=True)
class Mixup:
    """Mixup as a batch transform (``tinynet.augment.mixup``): ``alpha`` of Beta(alpha, alpha),
    one lambda per ``"batch"`` (NYU's code, seed 004) or per ``"sample"`` (Zhang et al.)."""

    alpha: float = 1.0
    per: str = "batch"


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    resolution: int
    batch_size: int
    epochs: int
    steps_per_epoch: int | None = None  # None: one pass over the training set per epoch
    augment: str | None = None  # recipe name from tinynet.augment, or None
    lr: LRPolicy = Constant()  # the stage's one learning-rate policy (Constant(): carry)
    restart_from_best: bool = False  # load the previous stage's best-val_accuracy weights
    optimizer: dict | None = None  # a new optimizer from this stage on; None: carry the last
    freeze: tuple = ()  # names (prefixes) of layers kept frozen, BN in inference mode
    mixup: Mixup | None = None
    loss: str = "crossentropy"  # against the label format the stage's data produces


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
    optimizer: dict  # the first stage's: {"name": "adam", "learning_rate": 1e-3, ...}
    val_resolution: int = 64
    eval_batch_size: int = 128
    # None: x / 255; "mean": minus the training set's per-channel mean (seed 001);
    # "mean_std": (x / 255 - mean) / std with the dataset's published statistics (CIFAR);
    # {"mean": [r, g, b], "std": [r, g, b]} (on the [0, 1] scale): the protocol's own statistics
    normalize: str | dict | None = None

    def __post_init__(self):
        if not self.stages:
            raise TinynetError(f"protocol {self.name!r} has no stages")
        for s in self.stages:
            if s.epochs < 1 or s.batch_size < 1 or s.resolution < 1 or (
                    s.steps_per_epoch is not None and s.steps_per_epoch < 1):
                raise TinynetError(f"stage {s.name!r}: epochs, batch size, resolution and steps "
                                   f"per epoch must be positive, got {s}")
            if not isinstance(s.lr, LRPolicy):
                raise TinynetError(f"stage {s.name!r}: lr must be one learning-rate policy "
                                   f"(tinynet.training.lr), got {s.lr!r}; each policy sets the "
                                   f"learning rate, so a stage has exactly one")
            if s.loss not in LOSSES:
                raise TinynetError(f"stage {s.name!r}: unknown loss {s.loss!r}; known: "
                                   f"{', '.join(LOSSES)}")
            if not isinstance(s.freeze, tuple) or not all(isinstance(f, str) for f in s.freeze):
                raise TinynetError(f"stage {s.name!r}: freeze must be a tuple of layer names, "
                                   f"got {s.freeze!r}")
            if s.augment is not None:
                size = get_recipe(s.augment).input_size  # an unknown recipe fails here
                if size is not None and size != s.resolution:
                    raise TinynetError(f"stage {s.name!r}: recipe {s.augment!r} takes {size} px "
                                       f"images, the stage trains at {s.resolution} px")
            if s.mixup is not None and not (
                    isinstance(s.mixup.alpha, (int, float)) and 0 <= s.mixup.alpha < float("inf")
                    and s.mixup.per in ("batch", "sample")):
                raise TinynetError(f"stage {s.name!r}: mixup needs a finite alpha >= 0 and per "
                                   f"'batch' or 'sample', got {s.mixup}")
        if not (self.normalize in NORMALIZATIONS or _explicit_statistics(self.normalize)):
            raise TinynetError(f"protocol {self.name!r}: normalize must be one of "
                               f"{NORMALIZATIONS} or {{'mean': [3 numbers], 'std': [3 positive "
                               f"numbers]}}, not {self.normalize!r}")
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

    def optimizer_stage(self, index):
        """The index of the stage that created the optimizer stage ``index`` trains with."""
        return max([0] + [i for i in range(1, index + 1) if self.stages[i].optimizer])

    def optimizer_spec(self, index):
        owner = self.optimizer_stage(index)
        return self.stages[owner].optimizer if owner else (self.stages[0].optimizer or
                                                          self.optimizer)

    def optimizer_iterations_before(self, index, num_train):
        """The optimizer's iteration count when stage ``index`` starts (it counts from the
        stage that created it)."""
        return (self.iterations_before(self.stage_start(index), num_train)
                - self.iterations_before(self.stage_start(self.optimizer_stage(index)), num_train))

    # -- command-line overrides ------------------------------------------------------------
    def scaled(self, epochs_scale):
        """Every stage's epochs (and its lr policy) times ``epochs_scale``, at least 1 epoch."""
        if not epochs_scale > 0:
            raise TinynetError(f"--epochs-scale must be > 0, got {epochs_scale}")
        if epochs_scale == 1:
            return self
        stages = []
        for s in self.stages:
            epochs = max(1, round(s.epochs * epochs_scale))
            stages.append(dataclasses.replace(s, epochs=epochs, lr=s.lr.scaled(s.epochs, epochs)))
        return dataclasses.replace(self, stages=tuple(stages))

    def with_steps(self, steps_per_epoch):
        if steps_per_epoch is None:
            return self
        if steps_per_epoch < 1:
            raise TinynetError(f"--steps-per-epoch must be >= 1, got {steps_per_epoch}")
        return dataclasses.replace(self, stages=tuple(
            dataclasses.replace(s, steps_per_epoch=steps_per_epoch) for s in self.stages))

    def _with_optimizers(self, change):
        """The protocol with ``change(spec)`` applied to every optimizer spec it trains with:
        ``optimizer`` (unless the first stage names its own, which replaces it) and each
        stage's own ``optimizer``."""
        stages = tuple(dataclasses.replace(s, optimizer=change(s.optimizer)) if s.optimizer
                       else s for s in self.stages)
        optimizer = self.optimizer if self.stages[0].optimizer else change(self.optimizer)
        return dataclasses.replace(self, optimizer=optimizer, stages=stages)

    def with_lr_scale(self, factor):
        """``--lr-scale``: every learning rate the protocol sets times ``factor``: each
        optimizer spec's ``learning_rate`` and the rates of every stage's lr policy
        (``LRPolicy.lr_scaled``). ``None`` or 1: unchanged. A spec without a
        ``learning_rate`` (Keras' default) is refused: its rate is not the protocol's to scale."""
        if factor is None or factor == 1:
            return self
        if not (isinstance(factor, (int, float)) and math.isfinite(factor) and factor > 0):
            raise TinynetError(f"--lr-scale must be a finite number > 0, got {factor!r}")

        def change(spec):
            if not isinstance(spec.get("learning_rate"), (int, float)):
                raise TinynetError(f"--lr-scale: optimizer {spec} of protocol {self.name!r} "
                                   f"has no numeric \"learning_rate\" to scale")
            return dict(spec, learning_rate=spec["learning_rate"] * factor)

        scaled = self._with_optimizers(change)
        return dataclasses.replace(scaled, stages=tuple(
            dataclasses.replace(s, lr=s.lr.lr_scaled(factor)) for s in scaled.stages))

    def with_weight_decay(self, weight_decay):
        """``--weight-decay``: every optimizer spec's ``weight_decay`` set to ``weight_decay``
        in the spec's own convention (its ``weight_decay_mode``, coupled or decoupled, and its
        exclusions are kept; see ``tinynet.training.optimizers``). ``None``: unchanged. An
        ``adamw`` spec without one gets a decoupled decay (AdamW's by definition); any other
        spec without a ``weight_decay`` is refused: the protocol has no decay there whose
        convention it states (a protocol's decay may sit in the model as a kernel L2
        regulariser instead, which this flag does not reach)."""
        if weight_decay is None:
            return self
        if isinstance(weight_decay, bool) or not (
                isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay)
                and weight_decay >= 0):
            raise TinynetError(f"--weight-decay must be a finite number >= 0, got "
                               f"{weight_decay!r}")

        def change(spec):
            if spec.get("weight_decay") is not None:
                return dict(spec, weight_decay=weight_decay)
            if str(spec.get("name", "")).lower() == "adamw":
                return dict(spec, weight_decay=weight_decay, weight_decay_mode="decoupled")
            raise TinynetError(f"--weight-decay: optimizer {spec} of protocol {self.name!r} "
                               f"has no weight decay to set (a decay in the model, as a kernel "
                               f"regulariser, is not the optimizer's)")

        return self._with_optimizers(change)

    def with_batch_size(self, batch_size):
        """``--batch-size``: every stage's batch size. A stage with its own ``steps_per_epoch``
        keeps it (its epochs then see more or fewer images); one without derives its steps
        from the new batch size. The evaluation batch size is unchanged. ``None``: unchanged."""
        if batch_size is None:
            return self
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise TinynetError(f"--batch-size must be an integer >= 1, got {batch_size!r}")
        return dataclasses.replace(self, stages=tuple(
            dataclasses.replace(s, batch_size=batch_size) for s in self.stages))

    def select(self, names):
        """The sub-protocol of the named stages, in protocol order."""
        unknown = set(names) - {s.name for s in self.stages}
        if unknown:
            raise TinynetError(f"unknown stage(s) {sorted(unknown)}; this protocol has "
                               f"{[s.name for s in self.stages]}")
        return dataclasses.replace(self, stages=tuple(s for s in self.stages if s.name in names))

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self):
        d = dataclasses.asdict(self)
        for stage, sd in zip(self.stages, d["stages"]):
            sd["lr"] = stage.lr.to_dict()
            sd["freeze"] = list(stage.freeze)
        return d

    @classmethod
    def from_dict(cls, d):
        stages = tuple(Stage(**{**s, "lr": policy_from_dict(s["lr"]),
                                "freeze": tuple(s.get("freeze", ())),
                                "mixup": Mixup(**s["mixup"]) if s.get("mixup") else None})
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
        steps = protocol.steps_of(s, num_train)
        extras = [f"augment {s.augment}"] if s.augment else []
        if s.mixup:
            extras.append(f"mixup alpha {s.mixup.alpha:g} per {s.mixup.per}")
        extras.append(s.lr.describe(steps))
        if s.optimizer or i == 1:
            spec = protocol.optimizer_spec(i - 1)
            extras.append("optimizer " + ", ".join(f"{k}={v}" for k, v in spec.items()))
        if s.freeze:
            extras.append(f"frozen: {', '.join(s.freeze)}")
        if s.restart_from_best:
            extras.append("from the best of the stage before")
        lines.append(f"  stage {i} {s.name}: {s.resolution}px, batch {s.batch_size}, "
                     f"{s.epochs} epochs x {steps} steps, " + ", ".join(extras))
    return "\n".join(lines)
