"""Protocols of stages, learning-rate policies, the resumable runner, checkpoints, callbacks."""
from tinynet.training.lr import (Constant, Cosine, CosineWarmRestarts, Cyclic, NYURule, Plateau,
                                 StepDecay)
from tinynet.training.protocol import Mixup, Protocol, Stage

__all__ = ["Constant", "Cosine", "CosineWarmRestarts", "Cyclic", "Mixup", "NYURule", "Plateau",
           "Protocol", "Stage", "StepDecay"]
