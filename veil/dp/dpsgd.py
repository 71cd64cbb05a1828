"""Sample-level DP-SGD for one client's local training, on Opacus.

Where client-level DP (:mod:`veil.dp.mechanisms` in secure aggregation) protects whole
clients, DP-SGD protects each *record* of a client — even from the client's own released
model updates. Opacus clips every per-example gradient to ``max_grad_norm``, adds
Gaussian noise of std ``noise_multiplier * max_grad_norm`` to each batch's sum and
samples batches by Poisson sampling (rate ``batch / n``); the accountant (veil's RDP on
``dp-accounting``, the same method as Opacus's default) composes all steps the client has
taken so far.

>>> import torch
>>> from veil.dp.dpsgd import train_dp_sgd
>>> x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
>>> net = torch.nn.Linear(4, 2)
>>> r = train_dp_sgd(net, (x, y), epochs=1, lr=0.1, batch=16, noise_multiplier=1.0,
...                  max_grad_norm=1.0, delta=1e-5, seed=0)
>>> r.steps, round(r.sample_rate, 2), r.epsilon > 0
(4, 0.25, True)
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import torch

from .accountant import epsilon as rdp_epsilon


@dataclass
class DPSGDResult:
    examples: int
    steps: int              # optimizer steps in this call
    sample_rate: float      # Poisson rate of each batch
    epsilon: float          # sample-level ε after ``prior_steps + steps`` at ``delta``
    opacus_epsilon: float   # Opacus's own RDP accountant for this call's steps


def train_dp_sgd(net: torch.nn.Module, data, *, epochs: int, lr: float, batch: int,
                 noise_multiplier: float, max_grad_norm: float, delta: float, seed: int,
                 prior_steps: int = 0) -> DPSGDResult:
    """Train ``net`` in place with Opacus DP-SGD on ``data = (x, y)`` (classification)."""
    from opacus import PrivacyEngine
    x, y = data
    n = len(y)
    if n < 1 or batch < 1:
        raise ValueError("DP-SGD needs at least one example and batch >= 1")
    q = min(1.0, batch / n)
    torch.manual_seed(seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y),
                                         batch_size=min(batch, n))
    opt = torch.optim.SGD(net.parameters(), lr=lr)
    engine = PrivacyEngine(accountant="rdp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")     # Opacus warns about secure_mode=False (see docs)
        model, opt, loader = engine.make_private(
            module=net, optimizer=opt, data_loader=loader, noise_multiplier=noise_multiplier,
            max_grad_norm=max_grad_norm, poisson_sampling=True)
    steps = 0
    for _ in range(epochs):
        for xb, yb in loader:
            if len(yb) == 0:                # Poisson sampling can draw an empty batch
                continue
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(xb), yb).backward()
            opt.step()
            steps += 1
    # Every batch draw is a step of the mechanism, empty ones included.
    drawn = epochs * len(loader)
    return DPSGDResult(examples=n, steps=drawn, sample_rate=q,
                       epsilon=rdp_epsilon(noise_multiplier, q, prior_steps + drawn, delta),
                       opacus_epsilon=float(engine.get_epsilon(delta)))
