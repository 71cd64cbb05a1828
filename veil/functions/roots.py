"""reciprocal, sqrt and rsqrt (and the gradient of division) on secret tensors.

All three normalise first (see _buckets: x = x_n 2^(s j), one batched msb for all bucket
edges), work on x_n, and scale back by a power of two chosen by the bucket one-hot:

* reciprocal: buckets of s = 6 octaves (x_n in [1/8, 8); 4 edges per sign at 16
  fractional bits), a degree-12 Chebyshev seed fitted for relative error (0.13), then
  three Newton-Raphson steps y <- y (2 - x y) (the error squares: 1.8e-2, 3e-4, 1e-7).
  Moving in and out is one b2a round and one product round each way. 25 rounds at 2
  parties (19 with local truncation; counts here are 2-party, exact / local). Wider
  buckets trade comparisons (the expensive part: 0.3 us per element and edge here) for
  one Newton step: measured 1.8x faster than s = 4 with 2 steps (16 rounds). CrypTen
  seeds with 3 exp(0.5 - x) + 0.003 and needs 10 steps on an unnormalised input (Knott
  et al. 2021). Negative inputs get mirrored buckets in the same msb call (so division
  works for any sign); ``positive=True`` skips them (4 edges instead of 9) when the
  caller knows x > 0.
* sqrt: s = 4 (x_n in [1/4, 4)), a degree-12 relative fit of sqrt (4.3e-5), no
  iteration, moves by select: 15 / 12 rounds.
* rsqrt: s = 4, a degree-16 relative fit of 1/sqrt (8.9e-5), moves by b2a + products
  (16 / 13 rounds, fewer bytes than selects: Adam runs it on every parameter).

Inputs below 2^-14 share the lowest bucket and are extrapolated (see docs/functions.md);
the fixed-point range caps outputs at 32768 anyway. Zero or negative inputs to sqrt and
rsqrt give meaningless values (checking would reveal them).
"""

from __future__ import annotations

import numpy as np
import torch

from ..tensor.dispatch import register_torch
from . import _buckets as B
from . import _kern as K
from . import cheb
from .grad_rules import register_grad

RECIP_STEP = 6                 # octaves per bucket: x_n in [1/8, 8)
RECIP_SEED_DEGREE = 12
NEWTON_STEPS = 3
SQRT_DEGREE = 12
RSQRT_DEGREE = 16


def _inv(x):
    return 1.0 / x


def _rsqrt(x):
    return 1.0 / np.sqrt(x)


def _recip_seed():
    half = 2.0 ** (RECIP_STEP / 2)
    return cheb.fit(_inv, 1 / half, half, RECIP_SEED_DEGREE, K.F(), relative=True)


def reciprocal_core(x_n: torch.Tensor, steps: int = NEWTON_STEPS,
                    u: torch.Tensor | None = None) -> torch.Tensor:
    """1/x_n for x_n in [1/8, 8): seed polynomial + Newton-Raphson (``u``: the seed's
    argument, if already computed by `_buckets.normalise_for`)."""
    (y,) = cheb.evaluate(x_n, [_recip_seed()], u=u)
    for _ in range(steps):
        y = K.newton_reciprocal(x_n, y)
    return y


def reciprocal_shares(x: torch.Tensor, positive: bool = False) -> torch.Tensor:
    bk = B.find(x, RECIP_STEP, signed=not positive)
    a = B.arith(bk)
    x_n, u = B.normalise_for(bk, a, x, _recip_seed(), keep=True)
    (y,) = B.scale_mul(bk, a, [reciprocal_core(x_n, u=u)], -1.0)
    return y


def div_shares(num: torch.Tensor, den: torch.Tensor, positive: bool = False) -> torch.Tensor:
    """num / den with the bucket scale applied last, so the quotient keeps its precision.

    num * reciprocal(den) rounds 1/den to an ulp first: for den = 1000 that is 1.5% of
    1/den, and the quotient inherits it. Here num is multiplied by 1/den_n (in (1/8, 8],
    relative error 1e-5) and only then scaled by 2^(-6j): same rounds, error ~1 ulp of
    the quotient.
    """
    bk = B.find(den, RECIP_STEP, signed=not positive)
    a = B.arith(bk)
    d_n, u = B.normalise_for(bk, a, den, _recip_seed(), keep=True)
    (q,) = K.mul([(num, reciprocal_core(d_n, u=u))])
    return B.scale_mul(bk, a, [q], -1.0)[0]


def div(x, y):
    """x / y for secret y (Tensor.div / ``/``): one fused division, 27 rounds (20 with local
    truncation).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([1.0, 300.0]) if veil.rank() == 0 else None, owner=0)
    ...     y = veil.tensor(torch.tensor([-3.0, 1200.0]) if veil.rank() == 1 else None, owner=1)
    ...     return (x / y).reveal()
    >>> [round(v, 4) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [-0.3333, 0.25]
    """
    y = K.float_input(y, "div")
    if K.is_secret(x):
        x = K.float_input(x, "div")
        num = x.share
        dtype = torch.promote_types(x.dtype, y.dtype)
    else:
        c = torch.as_tensor(x, dtype=torch.float64)
        shape = torch.broadcast_shapes(c.shape, y.shape)
        # A public numerator larger than y (ones(3, 2) / y): y's share is broadcast first.
        num = K.lift(c, y.share.expand(shape))
        dtype = y.dtype
        return y._wrap(div_shares(num, y.share.expand(shape).contiguous()), dtype)
    return y._wrap(div_shares(num, y.share), dtype)


def reciprocal(x, *, positive: bool = False):
    """Elementwise 1/x (torch.reciprocal); ``x / y`` for secret y calls this.

    Relative error about 1e-5 from 2^-14 to 32768 in magnitude, before the output's own
    rounding (1 ulp = 1.5e-5 absolute at default settings). 25 rounds at 2 parties (19 with local
    truncation), with 9 comparisons per element (4 with ``positive=True`` when x > 0 is known).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-4.0, 0.5, 3.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.reciprocal().reveal()
    >>> [round(v, 4) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [-0.25, 2.0, 0.3333]
    """
    x = K.float_input(x, "reciprocal")
    return K.wrap(x, reciprocal_shares(x.share, positive))


@register_grad("reciprocal")
def _reciprocal_grad(grad_out, out, x, *, positive=False):
    return (-(grad_out * out * out),)


def _needs(t) -> bool:
    return K.is_secret(t) and t.requires_grad


@register_grad("div")
def _div_grad(grad_out, out, x, y, rounding_mode=None):
    g = grad_out / y
    return (g if _needs(x) else None, -(g * out) if _needs(y) else None)


@register_grad("rdiv")
def _rdiv_grad(grad_out, out, y, x):
    """x / y via y.__rtruediv__(x): d/dy = -out / y; d/dx = 1 / y when x is secret too
    (torch.div(x, y) with a secret x can arrive here through Tensor.__rtruediv__)."""
    g = grad_out / y
    return (-(g * out) if _needs(y) else None, g if _needs(x) else None)


_ROOTS = {"sqrt": (np.sqrt, SQRT_DEGREE, 0.5), "rsqrt": (_rsqrt, RSQRT_DEGREE, -0.5)}


def root_shares(x: torch.Tensor, name: str) -> torch.Tensor:
    """sqrt or rsqrt of positive shares: buckets, a relative fit on [1/4, 4), rescale.

    sqrt moves with selects (15 rounds; 12, its target, with local truncation); rsqrt
    with b2a + products (16 / 13 rounds, far fewer bytes: it runs on every parameter in Adam).
    """
    f, degree, power = _ROOTS[name]
    bk = B.find(x, 4)
    poly = cheb.fit(f, 0.25, 4.0, degree, K.F(), relative=True)
    if name == "sqrt":
        x_n, _ = B.normalise(bk, x)
        (p,) = cheb.evaluate(x_n, [poly])
        return B.rescale(bk, p, power, with_sign=False)
    a = B.arith(bk)
    x_n, u = B.normalise_for(bk, a, x, poly, with_sign=False)
    ((p_raw, _),) = cheb.evaluate(x_n, [poly], u=u, raw=True)
    # |p| = 1/sqrt(x_n) <= 2.1: the bucket factor multiplies p untruncated, one truncation
    out = B.scale_mul_raw(bk, a, p_raw, power, 2, with_sign=False)
    if out is None:
        (p,) = K.trunc([p_raw], K.F())
        out = B.scale_mul(bk, a, [p], power, with_sign=False)[0]
    return out


def _root(x, name: str):
    x = K.float_input(x, name)
    return K.wrap(x, root_shares(x.share, name))


def sqrt(x):
    """Elementwise square root of a non-negative secret tensor (torch.sqrt). 15 rounds (12
    with local truncation).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([0.25, 2.0, 900.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.sqrt().reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [0.5, 1.414, 30.0]
    """
    return _root(x, "sqrt")


def rsqrt(x):
    """Elementwise 1/sqrt(x) of a positive secret tensor (torch.rsqrt). 16 rounds (13 with
    local truncation).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([0.25, 4.0, 100.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.rsqrt().reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [2.0, 0.5, 0.1]
    """
    return _root(x, "rsqrt")


@register_grad("sqrt")
def _sqrt_grad(grad_out, out, x):
    return (grad_out * x.rsqrt() * 0.5,)


@register_grad("rsqrt")
def _rsqrt_grad(grad_out, out, x):
    return (-(grad_out * out * out * out) * 0.5,)


T = torch.Tensor
register_torch([torch.reciprocal, T.reciprocal], lambda x, **kw: x.reciprocal(**kw))
register_torch([torch.sqrt, T.sqrt], lambda x: x.sqrt())
register_torch([torch.rsqrt, T.rsqrt], lambda x: x.rsqrt())

__all__ = ["reciprocal", "div", "div_shares", "sqrt", "rsqrt", "reciprocal_shares", "reciprocal_core", "root_shares"]
