"""`release`: reveal a secret aggregate with differential privacy, noise added inside MPC.

The caller states the aggregate's sensitivity (how much one person's record can move it:
L2 for the Gaussian mechanism, L1 for Laplace) and the budget; the noise is calibrated
(`veil.dp.noise.gaussian_sigma`: the exact analytic Gaussian mechanism; Laplace b =
Δ1 / ε), generated jointly (`veil.dp.noise`: no t colluding parties know it), added on
shares, and only the noisy value is revealed. Integer aggregates (COUNT, integer SUM) get
integer noise.

What each party learns: the noisy value (at ``to``, or everyone), and the public
parameters (mechanism, sensitivity, ε, δ, noise std). The guarantee is (ε, δ)-DP for one
release with respect to adding or removing one record whose influence is bounded by
``sensitivity``; bounding it (clipping each record's contribution) is the caller's job,
e.g. COUNT has sensitivity 1, a SUM of values clipped to [0, U] has sensitivity U.
Several releases compose: account for them (`veil.dp.Accountant` for repeated Gaussian
releases, or ε adds up).

>>> import torch, veil
>>> def f():
...     x = veil.tensor(torch.tensor([512]) if veil.rank() == 0 else None, owner=0)
...     return release(x, sensitivity=1, epsilon=1.0, delta=1e-5, to=1)  # to party 1 only
>>> out = veil.run(f, parties=2)
>>> out[0] is None and abs(out[1].item() - 512) < 40 and out[1].dtype == torch.int64
True
"""

from __future__ import annotations

import torch

from ..errors import ProtocolUsageError
from ..tensor import SecretTensor
from .noise import gaussian_sigma, joint_gaussian, joint_laplace, laplace_scale

MECHANISMS = ("gaussian", "laplace")


def noise_scale(mechanism: str, sensitivity: float, epsilon: float,
                delta: float | None) -> float:
    """Gaussian: the std; Laplace: b. Public: the party counts' collusion factor aside."""
    if mechanism == "gaussian":
        if delta is None:
            raise ProtocolUsageError("the Gaussian mechanism needs delta (e.g. 1e-5); "
                                     "mechanism='laplace' gives pure ε-DP")
        return gaussian_sigma(epsilon, delta, sensitivity)
    if mechanism == "laplace":
        if delta not in (None, 0):
            raise ProtocolUsageError("the Laplace mechanism is pure ε-DP: pass delta=None")
        return laplace_scale(epsilon, sensitivity)
    raise ProtocolUsageError(f"mechanism must be one of {MECHANISMS}, got {mechanism!r}")


def privatize(x: SecretTensor, *, sensitivity: float, epsilon: float,
              delta: float | None = None, mechanism: str = "gaussian",
              colluders: int | None = None) -> SecretTensor:
    """``x`` plus jointly generated noise, still secret (reveal it, or compute on)."""
    if not isinstance(x, SecretTensor):
        raise ProtocolUsageError(f"release takes a SecretTensor, got {type(x).__name__}; a "
                                 f"public value needs no secure noise")
    if x.dtype == torch.bool:
        raise ProtocolUsageError("release of a bool tensor: convert it first (x.long(), or "
                                 "sum it into a count)")
    scale = noise_scale(mechanism, sensitivity, epsilon, delta)
    integer = not x.dtype.is_floating_point
    if mechanism == "gaussian":
        noise = joint_gaussian(x.shape, scale, colluders=colluders, integer=integer)
    else:
        noise = joint_laplace(x.shape, scale, integer=integer)
    return x.detach() + noise


def release(x: SecretTensor, *, sensitivity: float, epsilon: float, delta: float | None = None,
            mechanism: str = "gaussian", to: int | None = None, colluders: int | None = None):
    """Reveal ``x + noise`` to party ``to`` (None: every party); None at the others."""
    noisy = privatize(x, sensitivity=sensitivity, epsilon=epsilon, delta=delta,
                      mechanism=mechanism, colluders=colluders)
    # Discloses x + noise (calibrated to the stated sensitivity, ε, δ) to ``to``: the
    # differentially private output; the un-noised x never leaves the shares.
    return noisy.reveal(to=to)
