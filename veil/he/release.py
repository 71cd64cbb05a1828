"""Sharing a decrypted CKKS result safely (Li & Micciancio, EUROCRYPT 2021).

A CKKS decryption is the message *plus the noise*, and the noise is a linear function of
the secret key: whoever sees decrypted values together with the ciphertexts they came
from can recover the key. veil's client never sends decrypted values anywhere. If an
application must pass a result on (to the model owner, a regulator), it should send
``flood(values, sigma)``: Gaussian noise far above the CKKS noise (default 1e-3, about
2^10 times the noise at ``n8192``; the precision lost is stated by sigma) so the noise
carries no usable information about the key.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..offline import PRG, fresh_seed


def flood(values: torch.Tensor, sigma: float = 1e-3) -> torch.Tensor:
    """``values`` + Gaussian noise of standard deviation ``sigma`` from an os.urandom-seeded
    PRG (noise flooding), then rounded to a grid of ``sigma / 16``.

    >>> import torch, veil.he as he
    >>> y = he.flood(torch.tensor([0.25]), sigma=1e-3)
    >>> abs(y.item() - 0.25) < 0.01
    True
    """
    if not sigma > 0:
        raise ValueError("sigma must be positive")
    v = values.detach().to(torch.float64)
    n = v.numel()
    raw = np.frombuffer(PRG(fresh_seed()).bytes(16 * n).numpy().tobytes(), dtype=np.uint64)
    u = (raw.reshape(2, n) >> np.uint64(11)).astype(np.float64) / float(1 << 53)
    u1 = np.maximum(u[0], 2.0 ** -53)
    z = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u[1])     # Box-Muller
    noisy = v.reshape(-1).numpy() + sigma * z
    grid = sigma / 16
    return torch.from_numpy(np.round(noisy / grid) * grid).reshape(v.shape)
