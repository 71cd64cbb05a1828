"""exp, log and x ** float on secret tensors.

exp (default): range reduction with exact powers of two. Buckets of width 6 ln 2 start
at c_j = 6 j ln 2; all bucket edges are compared in ONE batched msb call (7 edges at 16
fractional bits), a b2a round turns the one-hot into r = x - c_j in [0, 6 ln 2), a
degree-8 Chebyshev fit of e^r (relative error 8e-6) takes 3 rounds, and one product
round multiplies by e^(c_j) = 2^(6j) (an integer factor for j >= 0, exact; see
_buckets.scale_mul). 13 rounds (11 with 2-party local truncation), relative error
about 2e-4 (the fixed-point noise of the polynomial on [1, 64]). Saturation is part of
the design: below the lowest bucket, c_lo = 6 floor(-(F+1)/6) ln 2 (-12.5 at 16 bits,
where e^x < 2^-18, a quarter ulp), no one-hot row is set and the result is 0; from
ln(bound) = 10.4 up the top row selects the fixed-point bound.
SecretFlow-SPU's exp_pade also reduces by powers of two, but finds the integer part by
bit decomposition (17 rounds); CrypTen's (1 + x/2^8)^(2^8) is 8 rounds, inaccurate
(relative error 1e-2) and wrong below -512.

exp ``approx="square"``: exp(x) = exp(x/8)^8, a degree-8 seed fitted on [-21.6, 10.4]
(3 rounds) and three squarings (3 rounds): 6 rounds, no comparison, relative error
4e-4, but no saturation: below about -37 the seed polynomial leaves its range and the
result is meaningless (docs/functions.md shows where). Use it when inputs are known to
be in range.

log: x = x_n 2^(4j) with x_n in [1/4, 4) (one batched msb, see _buckets), then
log x = P(x_n) + 4 j ln 2 with a degree-14 Chebyshev fit of log on [1/4, 4): 14 rounds
(12 with 2-party local truncation).

pow_float: x ** e = exp(e log x) for x > 0 (sqrt, rsqrt and reciprocal for e = 1/2, -1/2,
-1, integer e through repeated multiplication).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from ..context import current
from ..errors import ProtocolUsageError
from ..tensor.dispatch import register_torch
from . import _buckets as B
from . import _kern as K
from . import cheb
from .approx import choose
from .grad_rules import register_grad

STEP = 6                              # octaves per exp bucket: e^(c_j) = 2^(6j)
EXP_DEGREE = 8
SEED_LO, SEED_HI = -21.6, 10.4        # "square" variant: seed range, half-width 16
SQUARINGS = 3
LOG_DEGREE = 14
LN2 = math.log(2.0)


def _exp_np(x):
    return np.exp(x)


def _seed_np(x):
    return np.exp(x / 2 ** SQUARINGS)


def exp_range(upper: bool = True) -> tuple[int, int, float | None]:
    """(j_lo, j_hi, top): bucket indices and the saturation point at this config."""
    cfg = current().config
    j_lo = math.floor(-(cfg.frac_bits + 1) / STEP)
    if not upper:
        return j_lo, -1, None
    top = math.log2(cfg.safe_bound) * LN2              # saturate at the safe bound
    return j_lo, math.floor(top / (STEP * LN2)), top


def exp_parts(x: torch.Tensor, upper: bool = True):
    """exp by range reduction, as (exact part or None, part still to truncate, its bits).

    The result is ``exact + trunc(pending, bits)``; softmax sums ``pending`` over a row
    before truncating, so the per-entry rounding does not add up. ``upper=False`` is for
    inputs known to be <= 0 (no buckets above 0, no saturation edge).
    """
    f = K.F()
    w = STEP * LN2
    j_lo, j_hi, top = exp_range(upper)
    js = list(range(j_lo, j_hi + 1))
    edges = [j * w for j in js] + ([top] if upper else [])
    rows = K.onehot(K.ge_many(x, edges))             # below, bucket j_lo.., (above)
    ints = K.b2a(rows[1:])                           # 0/1 at scale 0
    r = x - sum(a * K.enc(j * w) for a, j in zip(ints, js))
    (p,) = cheb.evaluate(r, [cheb.fit(_exp_np, 0.0, w, EXP_DEGREE, f, relative=True)])
    bk = B.Buckets(rows[1:1 + len(js)], tuple(js), (1,) * len(js), STEP)
    ((exact, pending, bits),) = B.scale_mul(bk, ints[:len(js)], [p], 1.0, untruncated=True)
    if upper:   # saturate: the bound minus one ulp, selected by the top row (local)
        sat = ints[-1] * K.enc(2.0 ** (top / LN2) - 2.0 ** -f)
        exact = sat if exact is None else exact + sat
    return exact, pending, bits          # exact is None where every bucket is below 0


def exp_buckets(x: torch.Tensor, upper: bool = True) -> torch.Tensor:
    exact, pending, bits = exp_parts(x, upper)
    if pending is None:
        return torch.zeros_like(x) if exact is None else exact
    done = K.trunc([pending], bits)[0]
    return done if exact is None else exact + done


def exp_square(x: torch.Tensor) -> torch.Tensor:
    """exp(x/8)^8 with a polynomial seed: 6 rounds, valid for x in [-37, 10.4]."""
    f = K.F()
    # each square's truncation opens the next square's factor (K.trunc_once)
    opened: dict | None = {} if K.reuses_openings() else None
    (y,) = cheb.evaluate(x, [cheb.fit(_seed_np, SEED_LO, SEED_HI, EXP_DEGREE, f)],
                         opened=opened)
    top = math.exp(SEED_HI)
    for i in range(SQUARINGS):
        # At high frac_bits the last square (up to e^10.4 at scale 2F) needs headroom.
        drop = max(0, math.ceil(2 * f + math.log2(top) + 1 - 61)) if i == SQUARINGS - 1 \
            else 0
        y_lo = K.trunc([y], drop)[0] if drop else y
        (y,) = K.mul_once([(y, y_lo)], opened, f - drop)
    return y


def exp(x, *, approx: str | None = None):
    """Elementwise e^x (torch.exp), saturating like torch's float32 at the range ends.

    Relative error about 2e-4 from the lowest representable output up to e^10.4 (the
    fixed-point bound at default settings); 0 below, the bound above. 13 rounds (11 with
    2-party local truncation; ``approx="square"``: 7 / 6 rounds, only for x >= -37).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([-100.0, -2.0, 0.0, 3.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.exp().reveal()
    >>> [round(v, 2) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [0.0, 0.14, 1.0, 20.09]
    """
    x = K.float_input(x, "exp")
    if choose("exp", approx) == "square":
        return K.wrap(x, exp_square(x.share))
    return K.wrap(x, exp_buckets(x.share))


@register_grad("exp")
def _exp_grad(grad_out, out, x, *, approx=None):
    return (grad_out * out,)


# -- log ------------------------------------------------------------------------------
def _log_poly():
    return cheb.fit(np.log, 0.25, 4.0, LOG_DEGREE, K.F())


def log_shares(x: torch.Tensor) -> torch.Tensor:
    bk = B.find(x, 4)
    a = B.arith(bk)
    x_n, u = B.normalise_for(bk, a, x, _log_poly(), with_sign=False)
    (p,) = cheb.evaluate(x_n, [_log_poly()], u=u)
    # + 4 j ln 2 for the element's bucket j: 0/1 integers times public constants (local).
    return p + sum(row * K.enc(bk.s * j * LN2) for row, j in zip(a, bk.js))


def log(x):
    """Natural logarithm of a positive secret tensor (torch.log).

    Absolute error below 2e-4 from 2^-14 up to the fixed-point bound (default settings,
    plus the input's own rounding: d log x = dx / x). Non-positive inputs give
    meaningless values; the range is not checked (that would reveal it). 17 rounds (12 with
    local truncation).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([0.5, 2.0, 100.0]) if veil.rank() == 0 else None,
    ...                     owner=0)
    ...     return x.log().reveal()
    >>> [round(v, 3) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [-0.693, 0.693, 4.605]
    """
    x = K.float_input(x, "log")
    return K.wrap(x, log_shares(x.share))


@register_grad("log")
def _log_grad(grad_out, out, x):
    return (grad_out * x.reciprocal(positive=True),)


# -- pow --------------------------------------------------------------------------------
def pow_float(x, exponent: float):
    """x ** exponent for a public real exponent and positive x (torch.pow semantics).

    Integer exponents multiply (Tensor.pow handles them before calling this); 0.5, -0.5
    and -1 use sqrt, rsqrt and reciprocal; other exponents compute exp(e * log x).

    >>> import torch, veil
    >>> def f():
    ...     x = veil.tensor(torch.tensor([4.0, 9.0]) if veil.rank() == 0 else None, owner=0)
    ...     return (x ** 1.5).reveal()
    >>> [round(v, 2) for v in veil.run(f, parties=2, seed=0)[0].tolist()]
    [8.0, 27.0]
    """
    if isinstance(exponent, torch.Tensor) and exponent.numel() == 1:
        exponent = exponent.item()
    if not isinstance(exponent, (int, float)) or isinstance(exponent, bool):
        raise ProtocolUsageError(
            f"pow with a {type(exponent).__name__} exponent is not supported on a "
            f"SecretTensor; use a public real (or int) exponent")
    e = float(exponent)
    if not math.isfinite(e):
        raise ProtocolUsageError("pow: the exponent must be finite")
    x = K.float_input(x, "pow")
    if e.is_integer():
        return x.pow(int(e))
    if e == 0.5:
        return x.sqrt()
    if e == -0.5:
        return x.rsqrt()
    if e == 1.5:
        return x * x.sqrt()
    return K.wrap(x, exp_buckets(K.lincomb([(e, log_shares(x.share))])))


@register_grad("pow_float")
def _pow_float_grad(grad_out, out, x, exponent):
    if exponent == 1:
        return (grad_out,)
    return (grad_out * x.pow_float(exponent - 1) * exponent,)


T = torch.Tensor
register_torch([torch.exp, T.exp], lambda x, **kw: x.exp(**kw))
register_torch([torch.log, T.log], lambda x: x.log())

__all__ = ["exp", "log", "pow_float", "exp_parts", "exp_buckets", "exp_square", "log_shares"]
