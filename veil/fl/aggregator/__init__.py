"""Aggregator-MPC secure aggregation: clients secret-share their clipped updates to 2–3
aggregation servers that run veil (semi2k); the servers sum the shares, add DP noise
inside MPC and reveal only the noisy aggregate.

>>> import torch
>>> from veil.fl.aggregator import ClientSharer, aggregate
>>> servers = [AggregatorKeys() for _ in range(2)]
>>> pubs = [s.public for s in servers]
>>> sealed = [ClientSharer(pubs).seal(torch.tensor([1.0, 2.0]), client_id=c) for c in range(3)]
>>> out = aggregate(servers, sealed, noise_std=0.0, seed=0)
>>> out.tolist()
[3.0, 6.0]
"""

from .mpc import AggregatorKeys, ClientSharer, aggregate

__all__ = ["AggregatorKeys", "ClientSharer", "aggregate"]
