"""The distributed discrete Gaussian (Kairouz, Liu & Steinke, ICML 2021) for secure sums.

Secure aggregation adds integers, so the noise should be integers too: each client maps
its clipped update to an integer grid of step ``γ`` (randomised rounding, re-drawn until
the rounded vector's norm is at most ``Δ₂`` — "conditional rounding"), adds discrete
Gaussian noise ``N_Z(0, σ²)`` per coordinate, and the secure sum of ``n`` such vectors is
revealed. No floating-point noise ever enters the released value, so the floating-point
attacks on naive samplers (Mironov 2012) do not apply to the aggregate.

Guarantee (Kairouz et al., Theorem 1): the sum of ``n`` clients' vectors, each with
L2 norm ``<= Δ₂`` (grid units) and noise ``N_Z(0, σ²)^d``, is ``ε²/2``-concentrated DP with
``ε = min(sqrt(Δ₂²/(nσ²) + τd/2), Δ₂/(sqrt(n)σ) + τ sqrt(d))`` and
``τ = 10 Σ_{k=1}^{n-1} exp(-2π²σ² k/(k+1))``. :func:`ddg_noise_multiplier` returns the
equivalent Gaussian noise multiplier ``1/ε`` (``sqrt(n)σ/Δ₂`` when ``τ`` is negligible,
which it is for σ of a few grid steps or more), which the sampled-Gaussian accountant
then uses — the amplification-by-sampling step treats the sum as the continuous Gaussian
of that multiplier, the approximation Kairouz et al. also make in their experiments.

Modular clipping (their small-ring step) is not needed: veil's secure aggregation works
in Z_2^64 with a checked per-client bound, so the sum never wraps and no random rotation
is needed to flatten it. The price is 8 bytes per coordinate on the wire.

>>> x = discrete_gaussian(100_000, 3.0, seed=bytes(16))
>>> bool((x == x.round()).all()), round(float(x.std()), 1)
(True, 3.0)
"""

from __future__ import annotations

import math
import os

import torch

from ..offline.prg import PRG, SEED_BYTES
from .mechanisms import uniform53

# Kairouz et al. use β = exp(-1/2) for the conditional-rounding norm bound.
BETA = math.exp(-0.5)


def discrete_gaussian(n: int, sigma: float, seed: bytes | None = None) -> torch.Tensor:
    """``n`` samples of the discrete Gaussian ``N_Z(0, σ²)`` (float64 holding integers).

    Canonne, Kamath & Steinke (2020), Algorithm 3: discrete Laplace proposals of scale
    ``t = floor(σ) + 1``, accepted with probability ``exp(-(|Y| - σ²/t)² / (2σ²))``.
    Vectorised in float64 from AES-CTR keyed by ``os.urandom`` (their exact-arithmetic
    version is far slower; the float acceptance test errs by ~1e-16 relative).
    """
    if not sigma >= 0 or not math.isfinite(sigma):
        raise ValueError("sigma must be finite and >= 0")
    if n == 0 or sigma == 0:
        return torch.zeros(n, dtype=torch.float64)
    prg = PRG(seed if seed is not None else os.urandom(SEED_BYTES))
    t = math.floor(sigma) + 1
    p = 1 - math.exp(-1 / t)              # geometric success probability
    out = torch.empty(0, dtype=torch.float64)
    while out.numel() < n:
        m = 2 * (n - out.numel()) + 64    # acceptance rate >= ~0.5 (their analysis)
        u = uniform53(prg, 3 * m).reshape(3, m)
        # Discrete Laplace as the difference of two geometrics on {0, 1, ...}.
        g1 = torch.floor(torch.log(u[0]) / math.log1p(-p))
        g2 = torch.floor(torch.log(u[1]) / math.log1p(-p))
        y = g1 - g2
        accept = u[2] < torch.exp(-(y.abs() - sigma ** 2 / t) ** 2 / (2 * sigma ** 2))
        out = torch.cat([out, y[accept]])
    return out[:n]


def l2_bound(clip: float, gamma: float, dim: int, beta: float = BETA) -> float:
    """``Δ₂``: the norm bound (grid units) conditional rounding enforces for a vector of
    norm ``<= clip`` on grid ``γ`` (Kairouz et al., eq. after Lemma 5)."""
    c = clip / gamma
    a = c * c + dim / 4 + math.sqrt(2 * math.log(1 / beta)) * (c + math.sqrt(dim) / 2)
    return min(math.sqrt(a), c + math.sqrt(dim))


def conditional_round(x: torch.Tensor, gamma: float, bound: float, seed: bytes | None = None,
                      max_tries: int = 1000) -> torch.Tensor:
    """Randomised rounding of ``x / γ`` to integers, unbiased per coordinate, re-drawn
    until the L2 norm is ``<= bound``. Expected tries ``<= 1/(1 - β)`` for ``bound`` from
    :func:`l2_bound`; gives up with a clear error after ``max_tries``."""
    prg = PRG(seed if seed is not None else os.urandom(SEED_BYTES))
    s = torch.as_tensor(x, dtype=torch.float64) / gamma
    lo = torch.floor(s)
    frac = s - lo
    for _ in range(max_tries):
        r = lo + (uniform53(prg, s.numel()).reshape(s.shape) < frac).double()
        if float(torch.linalg.vector_norm(r)) <= bound:
            return r
    raise ValueError(f"conditional rounding found no rounding of norm <= {bound:.4g} in "
                     f"{max_tries} tries: was the update clipped to the stated norm?")


def tau(sigma: float, n: int) -> float:
    """Kairouz et al.'s ``τ``: how far a sum of ``n`` discrete Gaussians of variance σ² is
    from one discrete Gaussian of variance nσ² (0 to double precision for σ >= 2)."""
    return 10 * sum(math.exp(-2 * math.pi ** 2 * sigma ** 2 * k / (k + 1)) for k in range(1, n))


def ddg_noise_multiplier(sigma: float, n: int, bound: float, dim: int) -> float:
    """The Gaussian noise multiplier equivalent (same zCDP) to the sum of ``n`` clients'
    vectors of norm ``<= bound`` each carrying ``N_Z(0, σ²)^dim`` (Theorem 1 above)."""
    tv = tau(sigma, n)
    eps = min(math.sqrt(bound ** 2 / (n * sigma ** 2) + tv * dim / 2),
              bound / (math.sqrt(n) * sigma) + tv * math.sqrt(dim))
    return 1 / eps


def client_sigma(noise_multiplier: float, n: int, bound: float) -> float:
    """Per-client σ (grid units) so the sum of ``n`` shares has the zCDP of a Gaussian of
    multiplier ``noise_multiplier`` at sensitivity ``bound`` (τ is then ~0; checked)."""
    sigma = noise_multiplier * bound / math.sqrt(n)
    if tau(sigma, n) > 1e-12:
        raise ValueError(f"per-client discrete Gaussian σ = {sigma:.3g} grid steps is too "
                         "small for the sum to act as one Gaussian: refine the grid "
                         "(smaller γ)")
    return sigma
