"""Optimizers for secret parameters: `SGD` and `Adam`, torch's constructors and update
rules (see docs/training.md for the fixed-point choices)."""

from .adam import Adam
from .optimizer import SGD, Optimizer

__all__ = ["Optimizer", "SGD", "Adam"]
