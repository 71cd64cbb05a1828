"""Noise generated jointly inside MPC, and the calibration of one DP release.

Nobody may know the noise that protects a released value: whoever knows it can subtract
it. So every party samples its own noise share from a cryptographic PRG keyed by
``os.urandom`` (`veil.dp.gaussian`, `veil.dp.laplace`), secret-shares it in (the shape
is public, so semi2k's share kernel costs no traffic), and the shares are summed on
shares. The sum is never opened on its own: it is added to the secret value first.

Collusion model (``colluders`` = t): any t parties that pool their own noise shares and
subtract them must still face noise of the full standard deviation. For Gaussian noise
each party adds ``N(0, std^2 / (n - t))``: the n - t honest shares alone sum to
``N(0, std^2)``; the total variance is ``n / (n - t)`` times the target, the accuracy
price of not trusting t parties. The default t is the protocol's own corruption
threshold: n - 1 for semi2k (dishonest majority: every party adds the full std, total
variance n std^2), 1 for rep3 (honest majority: each of the 3 adds std^2 / 2). Laplace
noise is not divisible this simply (a sum of Laplaces is not Laplace), so every party
adds the full Laplace whatever t is.

>>> import torch, veil
>>> def f():
...     x = veil.tensor(torch.tensor([100.0]) if veil.rank() == 0 else None, owner=0)
...     noisy = x + joint_gaussian((1,), std=1.0)     # nobody knows the noise
...     return noisy.reveal()                          # discloses x + noise to every party
>>> out = veil.run(f, parties=2)
>>> out[0].tolist() == out[1].tolist() and 90 < out[0].item() < 110
True
"""

from __future__ import annotations

import math

import torch

from ..context import current
from ..errors import ProtocolUsageError
from ..ring import encode
from ..tensor import SecretTensor
from .mechanisms import gaussian, laplace

#: the number of colluding parties each protocol's threat model tolerates (n: parties)
PROTOCOL_COLLUDERS = {"semi2k": lambda n: n - 1, "rep3": lambda n: 1}


def default_colluders() -> int:
    """The protocol's corruption threshold (n - 1 for an unknown protocol: conservative)."""
    ctx = current()
    return PROTOCOL_COLLUDERS.get(ctx.protocol.name, lambda n: n - 1)(ctx.world_size)


def _check_colluders(colluders: int | None) -> int:
    n = current().world_size
    t = default_colluders() if colluders is None else colluders
    if not isinstance(t, int) or not 1 <= t <= max(n - 1, 1):
        raise ProtocolUsageError(f"colluders must be an integer in 1..{n - 1} (how many "
                                 f"parties may pool their noise shares), got {colluders!r}")
    return t


def share_std(std: float, colluders: int | None = None) -> float:
    """Each party's Gaussian share so that any n - t honest shares sum to std."""
    n = current().world_size
    return std / math.sqrt(max(n - _check_colluders(colluders), 1))


def joint_gaussian(shape, std: float, *, colluders: int | None = None,
                   integer: bool = False) -> SecretTensor:
    """Secret Gaussian noise of (at least) ``std`` that no t colluding parties know.

    Every party samples ``N(0, std^2 / (n - t))`` from ``os.urandom``-keyed AES-CTR and
    shares it in. ``integer=True`` rounds each share to an integer (for integer
    aggregates: adding rounded noise to an integer is post-processing of the real-valued
    sum, so the guarantee is unchanged) and returns an int64 secret.
    """
    if not std >= 0 or not math.isfinite(std):
        raise ProtocolUsageError(f"noise std must be a finite number >= 0, got {std!r}")
    return _joint(tuple(shape), lambda n: gaussian(n, share_std(std, colluders)), integer)


def joint_laplace(shape, scale: float, *, integer: bool = False) -> SecretTensor:
    """Secret noise that is Laplace(scale) or more after any n - 1 parties subtract their
    own: every party adds a full Laplace(scale) share (total variance n * 2 scale^2)."""
    if not scale >= 0 or not math.isfinite(scale):
        raise ProtocolUsageError(f"Laplace scale must be a finite number >= 0, got {scale!r}")
    return _joint(tuple(shape), lambda n: laplace(n, scale), integer)


def _joint(shape: tuple, sample, integer: bool) -> SecretTensor:
    ctx = current()
    cfg = ctx.config
    numel = math.prod(shape)
    dtype, frac = (torch.int64, 0) if integer else (torch.float32, cfg.frac_bits)
    total = None
    for p in range(ctx.world_size):
        value = None
        if ctx.rank == p:
            noise = sample(numel).reshape(shape)
            value = encode(torch.round(noise).long() if integer else noise, cfg.frac_bits,
                           cfg.safe_bound)
        # Party p's noise share enters as a secret; the shape is public (the caller's),
        # so no announcement: semi2k's share is pairwise-PRG only, no traffic.
        share = ctx.protocol.share(value, p, shape)
        total = share if total is None else total + share
    return SecretTensor(total, dtype=dtype, frac=frac)


# -- calibration of one release ------------------------------------------------------------
def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def gaussian_delta(sigma: float, epsilon: float, sensitivity: float = 1.0) -> float:
    """The exact δ of the Gaussian mechanism at ε (Balle & Wang 2018, Theorem 8)."""
    a, b = sensitivity / (2 * sigma), epsilon * sigma / sensitivity
    return _phi(a - b) - math.exp(epsilon) * _phi(-a - b)


def gaussian_sigma(epsilon: float, delta: float, sensitivity: float = 1.0) -> float:
    """The smallest std for which one Gaussian release of L2 ``sensitivity`` is
    (ε, δ)-DP: the analytic Gaussian mechanism (Balle & Wang 2018), by bisection.

    >>> round(gaussian_sigma(1.0, 1e-5), 3)       # the classic bound says 4.845
    3.731
    """
    if not epsilon > 0 or not 0 < delta < 1 or not sensitivity > 0:
        raise ProtocolUsageError("a Gaussian release needs epsilon > 0, 0 < delta < 1 and "
                                 "sensitivity > 0")
    lo, hi = 1e-6 * sensitivity, sensitivity
    while gaussian_delta(hi, epsilon, sensitivity) > delta:
        lo, hi = hi, 2 * hi
    for _ in range(100):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if gaussian_delta(mid, epsilon, sensitivity) > delta else (lo, mid)
    return hi


def laplace_scale(epsilon: float, sensitivity: float = 1.0) -> float:
    """Laplace(b) with b = L1 sensitivity / ε is ε-DP (δ = 0)."""
    if not epsilon > 0 or not sensitivity > 0:
        raise ProtocolUsageError("a Laplace release needs epsilon > 0 and sensitivity > 0")
    return sensitivity / epsilon
