"""Secure aggregation by pairwise masking (SecAgg), independent of Flower.

>>> import torch
>>> cfg = SecAggConfig(vector_len=2, threshold=2)
>>> r = simulate_round(cfg, {1: torch.tensor([1., 2.]), 2: torch.tensor([3., 4.]),
...                         3: torch.tensor([5., 6.])}, drop_after_shares=[3])
>>> r.sum.tolist(), r.dropped_before_input
([4.0, 6.0], [3])
"""

from .client import SecAggClient
from .config import InsufficientClientsError, SecAggConfig
from .encoding import FixedPoint
from .server import AggregateResult, SecAggServer
from .simulate import simulate_round

__all__ = ["AggregateResult", "FixedPoint", "InsufficientClientsError", "SecAggClient",
           "SecAggConfig", "SecAggServer", "simulate_round"]
