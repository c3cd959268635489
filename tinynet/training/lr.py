"""Learning-rate policies: one object per stage (``Stage.lr``) that knows its value at any
position, its Keras callback, how it scales under ``--epochs-scale`` (``scaled``) and
``--lr-scale`` (``lr_scaled``: the fields listed in ``rate_fields``), a one-line description and
its serialisation into the protocol fingerprint.

A stage's position is ``(stage_epoch, stage_iteration)``: epochs and training iterations since
the stage started (0-based). Policies that are pure functions of that position (constant, step
milestones, cosine, SGDR, cyclic, the NYU rule) share one callback, ``callbacks.ScheduleCallback``, which
reads the optimizer's iteration count once per ``fit`` and counts batches, so a resumed run
(whose checkpoint holds the iteration count) continues exactly; their only state *is* the
position. ``Plateau`` depends on the monitored metric and checkpoints its wait/best/cooldown
(``callbacks.PlateauWindow``).

Stepping follows the originals: per epoch (PyTorch schedulers stepped once per epoch, as the NYU
code of seed 004 did; Keras' ReduceLROnPlateau) or per iteration (keras-contrib's CyclicLR;
SGDR's ``T_cur`` "updated at each batch iteration").

    Constant(lr)                     lr (None: keep the lr the optimizer has: "carry")
    Plateau(factor, patience, ...)   Keras ReduceLROnPlateau on a window of the stage's epochs
    Cyclic(base, max, step, mode)    Smith 2017 / keras-contrib (schedules.cyclic_lr)
    StepDecay(lr, milestones, gamma) lr * gamma ** (milestones passed): PyTorch MultiStepLR
    Cosine(lr, t_max, eta_min)       eta_min + (lr - eta_min)(1 + cos(pi T_cur / T_max)) / 2
    CosineWarmRestarts(lr, t_0, t_mult, eta_min)
                                     SGDR (Loshchilov & Hutter 2017, eq. 5): the cosine over
                                     T_i = t_0 * t_mult ** i epochs, restarting at lr
    NYURule(lr, first, second, factor)
                                     seed 004's code: after every epoch e >= first the lr is
                                     divided by factor, after e >= second once more; 0.1 for
                                     epochs 1-101, then tenfold smaller every epoch
                                     (docs/protocols.md, section CIFAR ResNet design space
                                     (seed 004))
"""
import dataclasses
import math
from typing import ClassVar

from tinynet.errors import TinynetError
from tinynet.training.schedules import cyclic_lr, mode_scale


def _positive(name, value, zero_ok=False):
    if not (isinstance(value, (int, float)) and math.isfinite(value)
            and (value >= 0 if zero_ok else value > 0)):
        bound = ">= 0" if zero_ok else "> 0"
        raise TinynetError(f"learning-rate policy argument {name} must be a finite number "
                           f"{bound}, got {value!r}")


class LRPolicy:
    """Base of the policies. Subclasses are frozen dataclasses with a ``kind``."""

    kind: ClassVar[str] = ""
    per_iteration: ClassVar[bool] = False
    # the fields that are learning rates (``lr_scaled`` multiplies them); None: not declared
    rate_fields: ClassVar[tuple | None] = None

    def value(self, stage_epoch, stage_iteration, steps_per_epoch):
        """The lr of the batch at this position, or None when it is not a function of the
        position (carry, plateau)."""
        return None

    def sets_lr(self):
        return self.value(0, 0, 1) is not None

    def scaled(self, old_epochs, new_epochs):
        """The policy for the stage stretched from ``old_epochs`` to ``new_epochs``."""
        return self

    def lr_scaled(self, factor):
        """The policy with every learning rate it sets times ``factor`` (``--lr-scale``): the
        fields named in ``rate_fields``; a ``None`` rate (carry the optimizer's lr) stays None.
        A policy that does not declare its ``rate_fields`` is refused rather than left
        unscaled."""
        _positive("lr scale factor", factor)
        if self.rate_fields is None:
            raise TinynetError(f"learning-rate policy {self.kind or type(self).__name__!r} does "
                               f"not declare which of its fields are learning rates "
                               f"(rate_fields), so it cannot be scaled")
        if factor == 1:
            return self
        return dataclasses.replace(self, **{
            f: getattr(self, f) * factor for f in self.rate_fields
            if getattr(self, f) is not None})

    def describe(self, steps_per_epoch):
        return self.kind

    def to_dict(self):
        return {"kind": self.kind, **dataclasses.asdict(self)}

    def callback(self, stage_start_epoch, stage_start_iteration, steps_per_epoch):
        """The Keras callback that applies this policy in a ``fit`` (None: nothing to do).
        ``stage_start_iteration`` is the optimizer's iteration count at the stage start."""
        if not self.sets_lr():
            return None
        from tinynet.training.callbacks import ScheduleCallback
        return ScheduleCallback(self, stage_start_epoch, stage_start_iteration, steps_per_epoch)


def _scale_epochs(n, old, new):
    return n * new / old


def _annealed(lr, eta_min, t, period):
    """The cosine from ``lr`` down to ``eta_min`` over ``period``, at ``t``."""
    return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * t / period)) / 2


@dataclasses.dataclass(frozen=True)
class Constant(LRPolicy):
    """A constant lr set when each epoch starts; ``lr=None`` keeps the optimizer's lr."""

    lr: float | None = None
    kind: ClassVar[str] = "constant"
    rate_fields: ClassVar[tuple] = ("lr",)

    def __post_init__(self):
        if self.lr is not None:
            _positive("lr", self.lr)

    def value(self, stage_epoch, stage_iteration, steps_per_epoch):
        return self.lr

    def describe(self, steps_per_epoch):
        return "lr carried over" if self.lr is None else f"lr {self.lr:g}"


@dataclasses.dataclass(frozen=True)
class Plateau(LRPolicy):
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
    kind: ClassVar[str] = "plateau"
    rate_fields: ClassVar[tuple] = ("min_lr",)

    def __post_init__(self):
        if not 0 < self.factor < 1:
            raise TinynetError(f"ReduceLROnPlateau factor must be in (0, 1), got {self.factor!r}")
        if not (isinstance(self.patience, int) and self.patience >= 0):
            raise TinynetError(f"ReduceLROnPlateau patience must be an integer >= 0, got "
                               f"{self.patience!r}")

    def active(self, stage_epoch):
        return self.first_epoch <= stage_epoch and (
            self.last_epoch is None or stage_epoch < self.last_epoch)

    def sets_lr(self):
        return True

    def scaled(self, old_epochs, new_epochs):
        if new_epochs == old_epochs:
            return self
        factor = new_epochs / old_epochs

        def scale(n):
            return min(new_epochs, max(0, round(n * factor)))

        first = min(scale(self.first_epoch), new_epochs - 1)
        # a window that was not empty stays at least one epoch long
        last = None if self.last_epoch is None else max(first + 1, scale(self.last_epoch))
        return dataclasses.replace(self, first_epoch=first, last_epoch=last)

    def describe(self, steps_per_epoch):
        last = "end" if self.last_epoch is None else self.last_epoch
        return (f"ReduceLROnPlateau({self.monitor}, x{self.factor:.3g}, patience "
                f"{self.patience}) epochs {self.first_epoch + 1}-{last}")

    def callback(self, stage_start_epoch, stage_start_iteration, steps_per_epoch):
        from tinynet.training.callbacks import PlateauWindow
        return PlateauWindow(self, stage_start_epoch)


@dataclasses.dataclass(frozen=True)
class Cyclic(LRPolicy):
    """CyclicLR for one stage (``tinynet.training.schedules``); the cycle starts at the stage.

    ``step_size_epochs`` is the half-cycle in epochs of this stage, turned into iterations with
    the stage's steps per epoch, so it follows the dataset size instead of being typed.
    """

    base_lr: float
    max_lr: float
    step_size_epochs: float
    mode: str = "triangular2"
    gamma: float = 1.0
    kind: ClassVar[str] = "cyclic"
    rate_fields: ClassVar[tuple] = ("base_lr", "max_lr")
    per_iteration: ClassVar[bool] = True

    def __post_init__(self):
        mode_scale(self.mode, self.gamma)
        if not 0 < self.base_lr <= self.max_lr:
            raise TinynetError(f"CyclicLR needs 0 < base_lr <= max_lr, got {self.base_lr}, "
                               f"{self.max_lr}")

    def step_size(self, steps_per_epoch):
        """The half-cycle in iterations."""
        return max(1, round(self.step_size_epochs * steps_per_epoch))

    def value(self, stage_epoch, stage_iteration, steps_per_epoch):
        return cyclic_lr(stage_iteration, self.base_lr, self.max_lr,
                         self.step_size(steps_per_epoch), self.mode, self.gamma)

    def scaled(self, old_epochs, new_epochs):  # keep the number of cycles per stage
        return dataclasses.replace(
            self, step_size_epochs=_scale_epochs(self.step_size_epochs, old_epochs, new_epochs))

    def describe(self, steps_per_epoch):
        return (f"CyclicLR {self.mode} {self.base_lr:g}-{self.max_lr:g} step "
                f"{self.step_size(steps_per_epoch)}")


@dataclasses.dataclass(frozen=True)
class StepDecay(LRPolicy):
    """``lr * gamma ** k`` where k milestones (stage epochs) have passed (PyTorch MultiStepLR
    stepped once per epoch: epoch ``e`` trains with ``gamma ** #{m <= e}``)."""

    lr: float
    milestones: tuple = ()
    gamma: float = 0.1
    kind: ClassVar[str] = "step"
    rate_fields: ClassVar[tuple] = ("lr",)

    def __post_init__(self):
        _positive("lr", self.lr)
        _positive("gamma", self.gamma)
        object.__setattr__(self, "milestones", tuple(int(m) for m in self.milestones))
        if list(self.milestones) != sorted(self.milestones) or any(m < 1 for m in self.milestones):
            raise TinynetError(f"step milestones must be increasing epochs >= 1, got "
                               f"{self.milestones}")

    def value(self, stage_epoch, stage_iteration, steps_per_epoch):
        return self.lr * self.gamma ** sum(1 for m in self.milestones if m <= stage_epoch)

    def scaled(self, old_epochs, new_epochs):
        return dataclasses.replace(self, milestones=tuple(
            max(1, round(_scale_epochs(m, old_epochs, new_epochs))) for m in self.milestones))

    def describe(self, steps_per_epoch):
        return f"lr {self.lr:g} x{self.gamma:g} at epochs {', '.join(map(str, self.milestones))}"


@dataclasses.dataclass(frozen=True)
class Cosine(LRPolicy):
    """Cosine annealing (PyTorch ``CosineAnnealingLR``'s closed form) over ``t_max`` epochs:
    ``eta_min + (lr - eta_min)(1 + cos(pi T_cur / t_max)) / 2``; ``T_cur`` counts epochs, or
    fractional epochs with ``per_iteration``."""

    lr: float
    t_max: float
    eta_min: float = 0.0
    per_iteration: bool = False
    kind: ClassVar[str] = "cosine"
    rate_fields: ClassVar[tuple] = ("lr", "eta_min")

    def __post_init__(self):
        _positive("lr", self.lr)
        _positive("t_max", self.t_max)
        _positive("eta_min", self.eta_min, zero_ok=True)

    def value(self, stage_epoch, stage_iteration, steps_per_epoch):
        t = stage_iteration / steps_per_epoch if self.per_iteration else stage_epoch
        return _annealed(self.lr, self.eta_min, t, self.t_max)

    def scaled(self, old_epochs, new_epochs):
        return dataclasses.replace(self, t_max=_scale_epochs(self.t_max, old_epochs, new_epochs))

    def describe(self, steps_per_epoch):
        return (f"cosine {self.lr:g} -> {self.eta_min:g} over {self.t_max:g} epochs"
                f"{' (per iteration)' if self.per_iteration else ''}")


@dataclasses.dataclass(frozen=True)
class CosineWarmRestarts(LRPolicy):
    """SGDR (Loshchilov & Hutter 2017, eq. 5): ``eta_min + (lr - eta_min)(1 + cos(pi T_cur /
    T_i)) / 2`` with ``T_i = t_0 * t_mult ** i`` epochs in the i-th run; ``T_cur`` counts
    (fractional, per iteration, as the paper) epochs since the last restart."""

    lr: float
    t_0: float = 10
    t_mult: float = 2
    eta_min: float = 0.0
    per_iteration: bool = True
    kind: ClassVar[str] = "sgdr"
    rate_fields: ClassVar[tuple] = ("lr", "eta_min")

    def __post_init__(self):
        _positive("lr", self.lr)
        _positive("t_0", self.t_0)
        _positive("eta_min", self.eta_min, zero_ok=True)
        if not self.t_mult >= 1:
            raise TinynetError(f"SGDR t_mult must be >= 1, got {self.t_mult!r}")

    def position(self, epochs):
        """``(T_cur, T_i)`` at ``epochs`` (fractional) since the stage start."""
        t_i, start = self.t_0, 0.0
        while epochs >= start + t_i:
            start += t_i
            t_i *= self.t_mult
        return epochs - start, t_i

    def value(self, stage_epoch, stage_iteration, steps_per_epoch):
        t = stage_iteration / steps_per_epoch if self.per_iteration else stage_epoch
        return _annealed(self.lr, self.eta_min, *self.position(t))

    def scaled(self, old_epochs, new_epochs):
        return dataclasses.replace(self, t_0=_scale_epochs(self.t_0, old_epochs, new_epochs))

    def describe(self, steps_per_epoch):
        return (f"SGDR {self.lr:g} -> {self.eta_min:g}, T_0 {self.t_0:g} epochs, "
                f"T_mult {self.t_mult:g}")


@dataclasses.dataclass(frozen=True)
class NYURule(LRPolicy):
    """Seed 004's code (NYU-ResNet-On-Steroids ``resnet.py`` with ``-sc``): after epoch ``e``
    (0-based) ``if e >= first: lr /= factor; if e >= second: lr /= factor``, applied to a
    running value every epoch. Its ``CosineAnnealingLR(T_max=200)`` (``-an``) stepped just
    before and was overwritten by this rule every epoch, so it had no effect."""

    lr: float = 0.1
    first: int = 100
    second: int = 150
    factor: float = 10.0
    kind: ClassVar[str] = "nyu"
    rate_fields: ClassVar[tuple] = ("lr",)

    def __post_init__(self):
        _positive("lr", self.lr)
        _positive("factor", self.factor)

    def value(self, stage_epoch, stage_iteration, steps_per_epoch):
        lr = self.lr
        for e in range(stage_epoch):  # the original's running division, float for float
            if e >= self.first:
                lr /= self.factor
            if e >= self.second:
                lr /= self.factor
        return lr

    def scaled(self, old_epochs, new_epochs):
        return dataclasses.replace(
            self, first=round(_scale_epochs(self.first, old_epochs, new_epochs)),
            second=round(_scale_epochs(self.second, old_epochs, new_epochs)))

    def describe(self, steps_per_epoch):
        return (f"NYU rule: lr {self.lr:g}, /{self.factor:g} after every epoch from "
                f"{self.first + 1}, again from {self.second + 1}")


POLICIES = {cls.kind: cls for cls in (Constant, Plateau, Cyclic, StepDecay, Cosine,
                                      CosineWarmRestarts, NYURule)}


def policy_from_dict(d):
    d = dict(d)
    kind = d.pop("kind", None)
    if kind not in POLICIES:
        raise TinynetError(f"unknown learning-rate policy {kind!r}; known: {', '.join(POLICIES)}")
    if "milestones" in d:
        d["milestones"] = tuple(d["milestones"])
    return POLICIES[kind](**d)
