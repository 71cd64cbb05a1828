"""Client-level DP mechanisms: clipping and Gaussian noise from a cryptographic PRG.

Distributed noise: with secure aggregation nobody sees an individual update, so the
Gaussian noise of DP-FedAvg need not be added by a trusted server. Each client adds
``N(0, (z C)^2 / m)`` to its own clipped update, where ``m`` is the minimum number of
clients whose inputs the aggregate must contain (the protocol skips the round when fewer
survive). The aggregate then carries noise of variance at least ``(z C)^2`` — the sum of
m independent Gaussians — which no single party knows: a client knows only its own
share, the server sees only the noisy sum. If ``k`` clients collude with the server
(pooling their known noise), the noise protecting the others drops to variance
``(z C)^2 (m - k) / m``: the guarantee is stated for a semi-honest server and honest
clients, and degrades gracefully with colluders.

>>> import torch
>>> v, n = clip_update(torch.tensor([3.0, 4.0]), clip_norm=1.0)
>>> v.tolist(), n
([0.6000000000000001, 0.8], 5.0)
"""

from __future__ import annotations

import math
import os

import torch

from ..offline.prg import PRG, SEED_BYTES


def clip_update(update: torch.Tensor, clip_norm: float) -> tuple[torch.Tensor, float]:
    """Scale ``update`` so its L2 norm is at most ``clip_norm``; returns (clipped, norm)."""
    if not clip_norm > 0:
        raise ValueError("clip_norm must be > 0")
    u = torch.as_tensor(update, dtype=torch.float64).flatten()
    if not bool(torch.isfinite(u).all()):
        raise ValueError("update contains NaN or inf: clipping cannot bound it")
    norm = float(torch.linalg.vector_norm(u))
    return (u * (clip_norm / norm) if norm > clip_norm else u), norm


def uniform53(prg: PRG, n: int) -> torch.Tensor:
    """``n`` uniforms in (0, 1) with 53 random bits each (float64)."""
    raw = prg.bytes(8 * n).view(torch.int64)
    return ((raw >> 11) & ((1 << 53) - 1)).double().add_(0.5) / float(1 << 53)


def gaussian(n: int, std: float, seed: bytes | None = None) -> torch.Tensor:
    """``n`` samples of N(0, std^2), float64, from AES-CTR keyed by ``os.urandom``.

    Box–Muller on 53-bit uniforms. Floating-point Gaussians are not exactly the
    continuous distribution the accountant assumes (Mironov 2012 describes attacks on
    naive float Laplace); the fixed-point rounding of the aggregate (2^-24 steps against
    noise std of order 1e-2 and above) is far coarser than the float artefacts. A
    discrete Gaussian (Canonne et al. 2020) would make the guarantee exact.
    """
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    if std < 0:
        raise ValueError("std must be >= 0")
    prg = PRG(seed if seed is not None else os.urandom(SEED_BYTES))
    m = (n + 1) // 2
    u = uniform53(prg, 2 * m).reshape(2, m)
    r = torch.sqrt(-2.0 * torch.log(u[0]))
    z = torch.cat([r * torch.cos(2 * math.pi * u[1]), r * torch.sin(2 * math.pi * u[1])])
    return z[:n] * std


def laplace(n: int, scale: float, seed: bytes | None = None) -> torch.Tensor:
    """``n`` samples of Laplace(0, scale), float64, from AES-CTR keyed by ``os.urandom``
    (inverse CDF on 53-bit uniforms; the float caveat of `gaussian` applies).

    >>> x = laplace(20000, 2.0)
    >>> 1.9 < float(x.abs().mean()) < 2.1          # E|X| = scale
    True
    """
    if scale < 0:
        raise ValueError("scale must be >= 0")
    if n == 0:
        return torch.zeros(0, dtype=torch.float64)
    u = uniform53(PRG(seed if seed is not None else os.urandom(SEED_BYTES)), n) - 0.5
    return -scale * torch.sign(u) * torch.log1p(-2.0 * u.abs())


def noise_share_std(noise_multiplier: float, clip_norm: float, min_clients: int) -> float:
    """Standard deviation of each client's noise share so that any ``min_clients`` shares
    sum to noise of std ``noise_multiplier * clip_norm``."""
    if min_clients < 1:
        raise ValueError("min_clients must be >= 1")
    return noise_multiplier * clip_norm / math.sqrt(min_clients)
