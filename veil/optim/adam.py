"""Adam on secret parameters, rearranged so fixed point can hold its state.

torch's Adam keeps ``v = EMA(g^2)`` and divides by ``sqrt(v) + eps``. In 16-bit fixed
point that fails three ways: ``(1 - beta2) g^2`` is below one ulp for most gradients
(1e-3 squared is 1e-6; an ulp is 1.5e-5), ``eps = 1e-8`` is zero, and ``1/eps`` is far
out of range. veil computes the same update from rescaled state:

* gradients are multiplied by ``grad_scale`` S (a public power of two: exact, free);
  Adam's update does not depend on the gradients' scale (eps aside);
* ``v' = beta2 v' + (S g)^2``, i.e. torch's v times S^2 / (1 - beta2): each step adds a
  full-precision square, not a thousandth of one;
* the division is ``m' * rsqrt(v' + e^2)`` (eps inside the root, where it keeps rsqrt in
  its accurate range 2^-14 .. 2^15), with every public factor (bias corrections, S,
  1 - beta2, lr) folded into one public multiplier per step.

So ``update = lr / ((1 - beta1^t) k_t) * m' * rsqrt(v' + e_t^2)`` with
``k_t = sqrt((1 - beta2) / (1 - beta2^t))`` and ``e_t = eps S / k_t``, floored at 2^-7
(the rsqrt range's lower end). Equal to torch's update up to that eps change. v' stays
in range while |S g| < 5.7 (v' < 32768 at 16 fractional bits); the default S = 8 covers
gradients up to 0.7 in magnitude and resolves ones down to ~1e-3. For larger gradients,
clip (``veil.nn.fit(..., clip_value=...)``) or lower ``grad_scale``.

Cost per step (all parameters at once): two secret products and one rsqrt.
"""

from __future__ import annotations

import math

from ..errors import ProtocolUsageError
from ..tensor import SecretTensor
from .optimizer import Optimizer

RSQRT_FLOOR = 2.0 ** -14       # rsqrt is accurate from here up (veil.functions, 16 frac bits)


class Adam(Optimizer):
    """torch.optim.Adam (weight decay as L2, like torch's Adam; no amsgrad).

    >>> import torch, veil
    >>> def f():
    ...     w = veil.tensor(torch.tensor([1.0, -2.0]) if veil.rank() == 0 else None, owner=0)
    ...     w.requires_grad_()
    ...     opt = veil.optim.Adam([w], lr=0.1)
    ...     (w * w).sum().backward()
    ...     opt.step()                      # first Adam step moves each weight by ~lr
    ...     return w.reveal()               # discloses the new weights to every party
    >>> [round(v, 2) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [0.9, -1.9]
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 grad_scale: int = 8) -> None:
        if amsgrad:
            raise ProtocolUsageError("Adam(amsgrad=True) is not supported")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ProtocolUsageError(f"betas must be in [0, 1), got {betas}")
        if not isinstance(grad_scale, int) or grad_scale < 1 or grad_scale & (grad_scale - 1):
            raise ProtocolUsageError(f"grad_scale must be a power of two >= 1 (so scaling is "
                                     f"exact), got {grad_scale!r}")
        super().__init__(params, dict(lr=lr, betas=(float(b1), float(b2)), eps=float(eps),
                                      weight_decay=float(weight_decay), grad_scale=grad_scale))

    def _update(self, p, g, state, group):
        b1, b2 = group["betas"]
        s = group["grad_scale"]
        if group["weight_decay"]:
            g = g + p * group["weight_decay"]
        gs = g * s                                       # integer factor: no truncation
        t = state["step"] + 1
        m, v = state.get("m"), state.get("v")
        # b1 m + (1 - b1) gs, written with one public product (one truncation, which is a
        # round with more than 2 parties) instead of two
        m = gs * (1 - b1) if m is None else m + (gs - m) * (1 - b1)
        sq = gs * gs                                     # one product
        v = sq if v is None else v * b2 + sq
        state.update(step=t, m=m, v=v)
        k_t = math.sqrt((1 - b2) / (1 - b2 ** t))
        e_t = max(group["eps"] * s / k_t, math.sqrt(RSQRT_FLOOR))
        r = (v + e_t * e_t).rsqrt()                      # veil.functions: 2^-14 .. 2^15
        step = m * r                                     # one product
        factor = 1.0 / ((1 - b1 ** t) * k_t)
        lr = group["lr"]
        if isinstance(lr, SecretTensor):
            return p - step * (lr * factor)
        return p - step * (float(lr) * factor)


__all__ = ["Adam"]
