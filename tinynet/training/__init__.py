"""Protocols of stages, the resumable runner, checkpoints and training-time callbacks."""
from tinynet.training.protocol import Plateau, Protocol, Stage

__all__ = ["Plateau", "Protocol", "Stage"]
